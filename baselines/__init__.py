"""Baseline distillers, one module each. A module registers its parts with the decorators in
`scd.distill.parts` (a divergence, a schedule or a weighting); every module here is imported automatically, and
installed packages can add theirs through the `scd_bench.baselines` entry point group."""
