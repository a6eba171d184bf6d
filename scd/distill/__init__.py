"""Distillation as a composition: a teacher schedule (which teacher checkpoint, stage by stage), a divergence
(token-level, teacher vs student) and a sample weighting (how divergence and CE mix per sample).

The parts live in registries that baseline modules fill (`baselines/`, or installed packages through the
`scd_bench.baselines` entry point group); `scd.distill.plugins.load_plugins()` imports them once.
"""
