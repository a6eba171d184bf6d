"""scd-bench: Scheduled Checkpoint Distillation (+ Adaptive Weighting) and the baselines it is compared with."""

__version__ = "0.1.0"
