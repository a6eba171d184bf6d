"""bf16 against fp32 matrix products on this machine, at the shapes the profiles' models multiply.

    python -m scd.benchmarks.precision [--seconds 0.5] [--repeats 3] [--threads 1]

Whether bf16 pays depends on the hardware: a GPU with bf16 or a CPU with AVX512-BF16 / AMX multiplies bf16
matrices natively and faster than fp32; a CPU without them (AVX2 only) goes through a slow fallback. `precision:
auto` (scd/runtime.py) picks bf16 only where the device says it is native; this benchmark shows what that choice
is worth here. Per shape (rows x inner x columns: a default-profile layer, SmolLM2-135M's MLP and output head),
fp32 and bf16 products alternate, each timed for `--seconds`, and the medians of `--repeats` and their ratio
(bf16 time / fp32 time: above 1, bf16 is slower) are printed.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from scd.benchmarks.record import add_save_argument, figure, save
from scd.runtime import native_bf16

SHAPES = {"default-profile layer": (768, 128, 512), "SmolLM2 MLP": (512, 576, 1536),
          "SmolLM2 output head": (128, 576, 49152)}


def _time(a: torch.Tensor, b: torch.Tensor, seconds: float) -> float:
    a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n < 2:
        a @ b
        n += 1
    return (time.perf_counter() - start) / n


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    add_save_argument(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    native = native_bf16("cpu")
    print(f"native bf16 on this CPU: {native} (precision: auto -> {'bf16' if native else 'fp32'}); "
          f"torch threads {args.threads}")
    print(f"{'shape':24s} {'m x k x n':>18s} {'fp32 ms':>9s} {'bf16 ms':>9s} {'bf16/fp32':>10s}")
    figures = {}
    for name, (m, k, n) in SHAPES.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        times: dict[torch.dtype, list[float]] = {torch.float32: [], torch.bfloat16: []}
        for _ in range(args.repeats):
            for dtype in times:
                times[dtype].append(_time(a.to(dtype), b.to(dtype), args.seconds))
        fp32, bf16 = statistics.median(times[torch.float32]), statistics.median(times[torch.bfloat16])
        print(f"{name:24s} {f'{m} x {k} x {n}':>18s} {fp32 * 1e3:9.2f} {bf16 * 1e3:9.2f} {bf16 / fp32:9.1f}x")
        figures[name] = figure(round(bf16 / fp32, 1), "x", f"bf16 / fp32 matmul time, {name} ({m}x{k}x{n})")
    save(args.save, "precision", "scd.benchmarks.precision", argv, figures,
         notes=f"native bf16 on the measuring CPU: {native}.")


if __name__ == "__main__":
    main()
