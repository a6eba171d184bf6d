"""The stage commands: one module per `scd` subcommand that a Snakemake rule runs (prepare, sft, teacher_outputs,
distill, evaluate, aggregate). Each reads its job configuration, does its work, and writes its outputs atomically."""
