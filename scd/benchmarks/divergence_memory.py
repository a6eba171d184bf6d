"""Peak memory of the distillation loss over a large vocabulary: in chunks (the default) against one piece.

    python -m scd.benchmarks.divergence_memory                       # V = 49152 (SmolLM2), N = 512, 2048, 4096
    python -m scd.benchmarks.divergence_memory --tokens 8192 --divergences fkl jsd --chunk 256

One measurement = `Method.loss` (divergence + CE, alpha 0.5) and its backward pass on N response tokens of
student and teacher logits [N, V] (float32, or --dtype bfloat16 as under bf16 autocast), run in a fresh
subprocess so that no allocator cache carries over. Reported: the peak resident memory above the process's
memory with its inputs allocated (ru_maxrss against /proc/self/statm just before the loss), and the wall time.
Both forms also hold the gradient of the student logits, one [N, V] float32 tensor: listed apart as `grad MB`,
the floor of any form. N here is the response tokens of one micro-batch (8 rows of 256 answer tokens = 2048).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

from scd.distill.methods import method_from_config

MB = 2 ** 20


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(divergence: str, tokens: int, vocab: int, chunk: int | None, dtype: str) -> dict:
    """In this process: one loss + backward, its peak memory above the inputs and its time."""
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    student = (torch.randn(1, tokens, vocab, generator=g) * 2).to(getattr(torch, dtype)).requires_grad_(True)
    teacher = (torch.randn(1, tokens, vocab, generator=g) * 2).to(getattr(torch, dtype))
    labels = torch.randint(0, vocab, (1, tokens), generator=g)
    method = method_from_config(divergence, {"divergence": divergence, "alpha": 0.5})
    method.chunk_tokens = chunk
    base = rss_bytes()
    start = time.perf_counter()
    loss, _ = method.loss(student, teacher, labels, torch.ones(1) * 0.5)
    loss.backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    return {"peak_above_inputs_mb": max(peak - base, 0) / MB, "seconds": seconds, "loss": float(loss),
            "grad_mb": tokens * vocab * 4 / MB}


def run_child(divergence: str, tokens: int, vocab: int, chunk: int | None, dtype: str) -> dict:
    cmd = [sys.executable, "-m", "scd.benchmarks.divergence_memory", "--child", "--divergences", divergence,
           "--tokens", str(tokens), "--vocab", str(vocab), "--dtype", dtype,
           "--chunk", str(chunk) if chunk is not None else "none"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--divergences", nargs="+", default=["fkl", "skew_kl"])
    ap.add_argument("--tokens", nargs="+", type=int, default=[512, 2048, 4096])
    ap.add_argument("--vocab", type=int, default=49152)
    ap.add_argument("--chunk", default="512", help="tokens per chunk, or `none` for one piece")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="dtype of the logits")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    chunk = None if args.chunk == "none" else int(args.chunk)
    if args.child:
        print(json.dumps(measure(args.divergences[0], args.tokens[0], args.vocab, chunk, args.dtype)))
        return

    print(f"V = {args.vocab}, logits {args.dtype}, chunk = {chunk} tokens; peak resident memory above the inputs "
          f"(MB) of loss + backward, one subprocess each")
    print(f"{'divergence':<10} {'N':>6} {'grad MB':>8} {'naive MB':>9} {'chunked MB':>11} {'ratio':>6} "
          f"{'naive s':>8} {'chunked s':>10} {'|loss diff|':>11}")
    for div in args.divergences:
        for n in args.tokens:
            naive = run_child(div, n, args.vocab, None, args.dtype)
            chunked = run_child(div, n, args.vocab, chunk, args.dtype)
            ratio = naive["peak_above_inputs_mb"] / max(chunked["peak_above_inputs_mb"], 1e-9)
            print(f"{div:<10} {n:>6} {naive['grad_mb']:>8.0f} {naive['peak_above_inputs_mb']:>9.0f} "
                  f"{chunked['peak_above_inputs_mb']:>11.0f} {ratio:>5.1f}x {naive['seconds']:>8.2f} "
                  f"{chunked['seconds']:>10.2f} {abs(naive['loss'] - chunked['loss']):>11.2e}", flush=True)


if __name__ == "__main__":
    main()
