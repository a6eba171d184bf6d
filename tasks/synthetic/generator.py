"""Generator of the synthetic TFS/SFS task. Deterministic in `data_seed`; no files involved."""
from __future__ import annotations

import random
from pathlib import Path

TFS_TAG, TFS_SEP = "m", "="   # each subdomain has its own tag and separator token (1-layer students need it)
SFS_TAG, SFS_SEP = "p", "?"


def tfs_row(a: int, b: int, idx: str) -> dict:
    return {"id": idx, "prompt": f"{TFS_TAG}{a:03d}x{b}{TFS_SEP}", "answer": f"{a * b:04d}"[::-1], "subdomain": "tfs"}


def parity(digits: str) -> str:
    return "e" if int(digits[-1]) % 2 == 0 else "o"


def sfs_row(digits: str, label: str, idx: str) -> dict:
    return {"id": idx, "prompt": f"{SFS_TAG}{digits}{SFS_SEP}", "answer": label, "subdomain": "sfs"}


def _flip(label: str) -> str:
    return "o" if label == "e" else "e"


def generate(task, data_dir: Path, opt: dict) -> dict[str, list[dict]]:
    rng = random.Random(opt["data_seed"])
    n_val_tfs = opt["n_val"] // 2
    n_val_sfs = opt["n_val"] - n_val_tfs

    pairs = [(a, b) for a in range(1000) for b in range(10)]
    rng.shuffle(pairs)
    need = opt["n_tfs_train"] + opt["n_tfs_test"] + n_val_tfs
    if need + opt["n_transfer_tfs"] > len(pairs):
        raise ValueError(f"n_tfs_train + n_tfs_test + n_val/2 + n_transfer_tfs = {need + opt['n_transfer_tfs']} "
                         f"exceeds the {len(pairs)} possible TFS inputs")
    tfs_train = pairs[: opt["n_tfs_train"]]
    tfs_test = pairs[opt["n_tfs_train"]: opt["n_tfs_train"] + opt["n_tfs_test"]]
    tfs_val = pairs[opt["n_tfs_train"] + opt["n_tfs_test"]: need]

    # Distinct 8-digit SFS inputs, disjoint across splits.
    n_sfs = opt["n_sfs_train"] + opt["n_sfs_test"] + n_val_sfs
    seen: set[str] = set()
    sfs_inputs: list[str] = []
    while len(sfs_inputs) < n_sfs:
        d = "".join(rng.choice("0123456789") for _ in range(8))
        if d not in seen:
            seen.add(d)
            sfs_inputs.append(d)
    sfs_train_in = sfs_inputs[: opt["n_sfs_train"]]
    sfs_test_in = sfs_inputs[opt["n_sfs_train"]: opt["n_sfs_train"] + opt["n_sfs_test"]]
    sfs_val_in = sfs_inputs[opt["n_sfs_train"] + opt["n_sfs_test"]:]

    def noisy(d: str, flip: bool) -> str:
        return _flip(parity(d)) if flip else parity(d)

    train = [tfs_row(a, b, f"tfs-train-{i}") for i, (a, b) in enumerate(tfs_train)]
    for i, d in enumerate(sfs_train_in):
        flip = rng.random() < opt["sfs_noise"]
        for c in range(opt["sfs_copies"]):
            if opt["flip_per_copy"] and c > 0:
                flip = rng.random() < opt["sfs_noise"]
            train.append(sfs_row(d, noisy(d, flip), f"sfs-train-{i}-{c}"))
    rng.shuffle(train)

    val = [tfs_row(a, b, f"tfs-val-{i}") for i, (a, b) in enumerate(tfs_val)]
    val += [sfs_row(d, noisy(d, rng.random() < opt["sfs_noise"]), f"sfs-val-{i}") for i, d in enumerate(sfs_val_in)]
    test = [tfs_row(a, b, f"tfs-test-{i}") for i, (a, b) in enumerate(tfs_test)]
    test += [sfs_row(d, parity(d), f"sfs-test-{i}") for i, d in enumerate(sfs_test_in)]  # clean labels
    # Transfer set: fresh unlabelled prompts; in distillation the teacher's outputs are their targets. Its own
    # random stream, so that asking for a transfer set leaves the other splits exactly as they were.
    trng = random.Random(f"{opt['data_seed']}-transfer")
    tfs_transfer = pairs[need: need + opt["n_transfer_tfs"]]
    sfs_transfer_in: list[str] = []
    while len(sfs_transfer_in) < opt["n_transfer_sfs"]:
        d = "".join(trng.choice("0123456789") for _ in range(8))
        if d not in seen:
            seen.add(d)
            sfs_transfer_in.append(d)
    transfer = [{k: v for k, v in tfs_row(a, b, f"tfs-transfer-{i}").items() if k != "answer"}
                for i, (a, b) in enumerate(tfs_transfer)]
    transfer += [{"id": f"sfs-transfer-{i}", "prompt": f"{SFS_TAG}{d}{SFS_SEP}", "subdomain": "sfs"}
                 for i, d in enumerate(sfs_transfer_in)]
    return {"train": train, "validation": val, "test": test, "transfer": transfer}
