"""Teacher outputs for distillation, from one place: one pass of each frozen teacher checkpoint.

Per checkpoint, distillation needs the teacher's logits at the response positions of every training row and, for
the task's transfer set, the teacher's greedy outputs (the rows' targets) with its logits on them. `scd
teacher-outputs` computes these once per task and seed for all checkpoints (a Snakemake job of its own), so six
methods over eight checkpoints cost eight teacher passes, not forty-eight epochs of teacher forwards. Everything
schedules and weightings read (probe distributions for SCD, per-row gold losses for AW) derives from these logits:
no schedule or weighting runs a teacher model itself.

Two objects share the work. `LiveTeacher` is the checkpoints as models: it loads them, computes a checkpoint's
outputs, runs a forward pass on a batch, generates greedily and hands out the embedding matrices. `TeacherCache` is
read-only: a run's view of the outputs, from the cache directory (`TeacherCache.on_disk`) or, without one, computed
in memory by the live teacher on first use (`TeacherCache.in_memory`); it answers logits by rows or by batch, the
transfer set's rows, per-row gold losses and the probe's logits.

Logits are stored in float32 over the shared real vocabulary (embedding rows past it are padding), in row order,
response positions only: row i owns `len(answer_ids)` consecutive rows of the [positions, vocab] matrix; the last
layer's hidden states at the same positions beside them (DSKD's projectors read them). For T* the job also keeps
its greedy responses to the training prompts (sequence-level KD's targets); other checkpoints' are generated in the
distillation job when a method asks for them. Methods that need the teacher on sequences known only during
training (on-policy samples) run the checkpoint itself (`LiveTeacher.forward`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from scd.data import Encoded, encode
from scd.distill.trajectory import evenly_spaced, require_distinct, require_in_order
from scd.evaluate import generate, response_logits
from scd.models import load_trained, logits_at
from scd.prepared import Prepared
from scd.runtime import autocast
from scd.tokens import response_mask


def _pack(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor([len(t) for t in seqs], dtype=torch.long),
            torch.tensor([i for t in seqs for i in t], dtype=torch.long))


def _unpack(lengths: torch.Tensor, flat: torch.Tensor) -> list[list[int]]:
    ids, out, start = flat.tolist(), [], 0
    for n in lengths.tolist():
        out.append(ids[start: start + n])
        start += n
    return out


@dataclass
class CheckpointOutputs:
    train_logits: torch.Tensor          # [response positions of all training rows, vocab], float32
    transfer_targets: list[list[int]]   # per transfer row: the teacher's greedy answer ids + EOS
    transfer_logits: torch.Tensor       # [response positions of all transfer rows, vocab], float32
    train_hidden: torch.Tensor          # [response positions of all training rows, hidden], float32
    transfer_hidden: torch.Tensor       # [response positions of all transfer rows, hidden], float32
    train_generated: list[list[int]] | None = None  # greedy answer ids + EOS per training prompt (T* only)

    def save(self, path: Path) -> None:
        tensors = {"train_logits": self.train_logits, "transfer_logits": self.transfer_logits,
                   "train_hidden": self.train_hidden, "transfer_hidden": self.transfer_hidden}
        tensors["transfer_lengths"], tensors["transfer_ids"] = _pack(self.transfer_targets)
        if self.train_generated is not None:
            tensors["generated_lengths"], tensors["generated_ids"] = _pack(self.train_generated)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))

    @classmethod
    def load(cls, path: Path) -> "CheckpointOutputs":
        t = load_file(str(path))  # safetensors: no code runs on load
        missing = {"train_logits", "transfer_logits", "train_hidden", "transfer_hidden", "transfer_ids"} - set(t)
        if missing:
            raise ValueError(f"{path} lacks {', '.join(sorted(missing))}: the cache is stale (an older format), "
                             f"re-run `scd teacher-outputs`")
        generated = _unpack(t["generated_lengths"], t["generated_ids"]) if "generated_ids" in t else None
        return cls(t["train_logits"], _unpack(t["transfer_lengths"], t["transfer_ids"]), t["transfer_logits"],
                   t["train_hidden"], t["transfer_hidden"], generated)


def greedy_targets(model, tokenizer, prompts: list[Encoded], max_new_tokens: int, batch_size: int,
                   device) -> list[list[int]]:
    """The model's greedy answers to the prompts as token ids, EOS appended (the form of a training target)."""
    texts = generate(model, tokenizer, prompts, max_new_tokens, batch_size, device) if prompts else []
    return [tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in texts]


def compute_outputs(model, train_rows: list[Encoded], transfer_prompts: list[Encoded], tokenizer, vocab: int,
                    max_new_tokens: int, batch_size: int, device, precision: str = "fp32",
                    generate_train: bool = False) -> CheckpointOutputs:
    pad = tokenizer.pad_token_id
    with autocast(precision, device):
        targets = greedy_targets(model, tokenizer, transfer_prompts, max_new_tokens, batch_size, device)
    transfer_rows = [Encoded(p.prompt_ids, t, labelled=False) for p, t in zip(transfer_prompts, targets)]
    train_logits, train_hidden = response_logits(model, train_rows, pad, vocab, batch_size, device, precision, True)
    transfer_logits, transfer_hidden = response_logits(model, transfer_rows, pad, vocab, batch_size, device,
                                                       precision, True)
    with autocast(precision, device):
        generated = greedy_targets(model, tokenizer, train_rows, max_new_tokens, batch_size, device) \
            if generate_train else None
    return CheckpointOutputs(train_logits, targets, transfer_logits, train_hidden, transfer_hidden, generated)


def _offsets(lengths) -> torch.Tensor:
    return torch.tensor([0] + list(lengths), dtype=torch.long).cumsum(0)


def saved_checkpoints(teacher_dir: Path) -> list[str]:
    """The teacher's trajectory: its N saved checkpoints in training order, the last of them (the end of training)
    stood in for by `best` (T*). So N = 1 leaves only T*, and SCD and CD reduce to TD exactly."""
    names = sorted((p.name for p in (Path(teacher_dir) / "checkpoints").glob("ckpt-*")),
                   key=lambda n: int(n.split("-")[1]))
    return names[:-1] + ["best"]


def trajectory_steps(teacher_dir: Path, names: list[str] | None = None) -> dict[str, int] | None:
    """The optimizer step of each saved checkpoint's weights and of T*'s (`best`), from the teacher SFT's
    summary.json (only `names`' when given); None when the teacher directory has no summary."""
    path = Path(teacher_dir) / "summary.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    ckpts = data.get("checkpoints") if isinstance(data, dict) else None
    best = data.get("best_step") if isinstance(data, dict) else None
    if not isinstance(ckpts, dict) or not all(type(v) is int for v in ckpts.values()) or type(best) is not int:
        raise ValueError(f"{path} does not record the teacher's checkpoint steps (`checkpoints`: name -> step, and "
                         f"`best_step`): it is damaged or from an older version; re-run the teacher SFT")
    steps = ckpts | {"best": best}
    return steps if names is None else {n: steps[n] for n in names if n in steps}


def weights_digest(model_dir: Path) -> str:
    """sha256 over a saved model's weight files, in name order."""
    h = hashlib.sha256()
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


class LiveTeacher:
    """The teacher's saved checkpoints as frozen models: the trajectory, a checkpoint's outputs on the run's rows,
    its forward pass on a batch, its greedy answers and its embedding matrices."""

    def __init__(self, teacher_dir: Path, tokenizer, vocab_size: int, device, precision: str = "fp32",
                 batch_size: int = 256, max_new_tokens: int = 16):
        self.dir = Path(teacher_dir)
        self.tokenizer, self.vocab_size = tokenizer, vocab_size
        self.device, self.precision = device, precision
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self._in_use: tuple[str | None, object] = (None, None)
        self._heads: dict[tuple[str, str], torch.Tensor] = {}

    def checkpoints(self, n: int | None = None) -> list[str]:
        return evenly_spaced(saved_checkpoints(self.dir), n)

    def check_trajectory(self, names: list[str]) -> list[str]:
        """The trajectory `names` (training order, T* last) if its checkpoints are distinct and in training order,
        by the steps in the teacher's summary.json (by a digest of the weights where there is no summary); else a
        one-line TrajectoryError."""
        steps = trajectory_steps(self.dir)
        if steps is None:
            require_distinct(names, {n: weights_digest(self.path(n)) for n in names})
            return names
        unknown = [n for n in names if n not in steps]
        if unknown:
            raise ValueError(f"{self.dir / 'summary.json'} records no step for checkpoint(s) {', '.join(unknown)} "
                             f"of {self.dir / 'checkpoints'}: the directory mixes two teacher runs; re-run the "
                             f"teacher SFT")
        require_in_order(names, steps, str(self.dir / "summary.json"))
        return names

    def path(self, name: str) -> Path:
        return self.dir / "best" if name == "best" else self.dir / "checkpoints" / name

    def load(self, name: str):
        """A frozen teacher checkpoint, loaded from disk."""
        path = self.path(name)
        if not path.is_dir():
            raise FileNotFoundError(f"teacher checkpoint {name!r} not found at {path}")
        model = load_trained(path).to(self.device).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return model

    def model(self, name: str):
        """The checkpoint's model, kept while it is the one in use (on-policy methods query it every step)."""
        if self._in_use[0] != name:
            self._in_use = (name, self.load(name))
        return self._in_use[1]

    def outputs(self, name: str, train_rows: list[Encoded], transfer_prompts: list[Encoded],
                generate_train: bool = False) -> CheckpointOutputs:
        """The checkpoint's outputs on the rows, what `scd teacher-outputs` caches."""
        return compute_outputs(self.model(name), train_rows, transfer_prompts, self.tokenizer, self.vocab_size,
                               self.max_new_tokens, self.batch_size, self.device, self.precision, generate_train)

    def generate(self, name: str, prompts: list[Encoded]) -> list[list[int]]:
        """The checkpoint's greedy answers to the prompts, EOS appended."""
        return greedy_targets(self.model(name), self.tokenizer, prompts, self.max_new_tokens, self.batch_size,
                              self.device)

    def response_logits(self, name: str, rows: list[Encoded]) -> torch.Tensor:
        """Response-position logits of a few rows, by a forward pass of a fresh load of the checkpoint."""
        return response_logits(self.load(name), rows, self.tokenizer.pad_token_id, self.vocab_size,
                               self.batch_size, self.device, self.precision)

    @torch.no_grad()
    def forward(self, name: str, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [B, T, vocab] and last hidden states [B, T, H] of the checkpoint on the batch (for sequences not
        in the cache, e.g. on-policy samples)."""
        with autocast(self.precision, self.device):
            out = self.model(name)(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                   output_hidden_states=True)
        return out.logits[..., :self.vocab_size].float(), out.hidden_states[-1].float()

    @torch.no_grad()
    def logits_at(self, name: str, batch: dict, keep: torch.Tensor) -> torch.Tensor:
        """The checkpoint's float32 logits [B, K, vocab] at the kept columns of the batch, computed only where a loss
        reads them (scd.models.logits_at: the prompt's logits are never used)."""
        with autocast(self.precision, self.device):
            return logits_at(self.model(name), batch, keep, self.vocab_size).float()

    def head(self, name: str, kind: str = "output") -> torch.Tensor:
        """The checkpoint's output (or `kind="input"`) embedding matrix over the real vocabulary, [vocab, hidden],
        frozen."""
        if (name, kind) not in self._heads:  # one load of the checkpoint serves both matrices
            model = load_trained(self.path(name))
            for k, emb in (("output", model.get_output_embeddings()), ("input", model.get_input_embeddings())):
                self._heads[name, k] = emb.weight.detach()[:self.vocab_size].float().to(self.device)
        return self._heads[name, kind]


class TeacherCache:
    """Read-only: every checkpoint's outputs on a run's training rows and transfer prompts, from a cache directory
    that `scd teacher-outputs` wrote (`on_disk`), or computed in memory by the live teacher on first use
    (`in_memory`). Indices past the training rows are transfer rows (as in a stage's `train + transfer` data)."""

    def __init__(self, train_rows: list[Encoded], transfer_prompts: list[Encoded], vocab_size: int,
                 cache_dir: Path | None = None, live: LiveTeacher | None = None):
        if (cache_dir is None) == (live is None):
            raise ValueError("teacher outputs come from a cache directory or from a live teacher, one of the two")
        self.train_rows, self.transfer_prompts, self.vocab_size = train_rows, transfer_prompts, vocab_size
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._live = live
        self._outputs: dict[str, CheckpointOutputs] = {}
        self._train_offsets = _offsets(len(r.answer_ids) for r in train_rows)
        self._starts = self._train_offsets.tolist()  # python ints: per-row slicing in the training loop
        self._transfer_starts: dict[str, list[int]] = {}

    @classmethod
    def on_disk(cls, cache_dir: Path, train_rows: list[Encoded], transfer_prompts: list[Encoded],
                vocab_size: int) -> "TeacherCache":
        return cls(train_rows, transfer_prompts, vocab_size, cache_dir=cache_dir)

    @classmethod
    def in_memory(cls, live: LiveTeacher, train_rows: list[Encoded],
                  transfer_prompts: list[Encoded]) -> "TeacherCache":
        return cls(train_rows, transfer_prompts, live.vocab_size, live=live)

    def outputs(self, name: str) -> CheckpointOutputs:
        """The checkpoint's outputs, read (or computed) once and checked against the run's rows."""
        if name not in self._outputs:
            if self.cache_dir is not None:
                cached = self.cache_dir / f"{name}.safetensors"
                if not cached.exists():
                    held = sorted(p.stem for p in self.cache_dir.glob("*.safetensors"))
                    raise FileNotFoundError(f"no cached teacher outputs for {name!r} in {self.cache_dir} (it holds "
                                            f"{', '.join(held) or 'none'}: the checkpoints the configured methods' "
                                            f"trajectories read); re-run `scd teacher-outputs` with a configuration "
                                            f"whose methods read {name!r}")
                out = CheckpointOutputs.load(cached)
            else:
                out = self._live.outputs(name, self.train_rows, self.transfer_prompts)
            expected = int(self._train_offsets[-1])
            if out.train_logits.shape != (expected, self.vocab_size) or len(out.transfer_targets) != len(
                    self.transfer_prompts):
                raise ValueError(f"teacher outputs for {name!r} do not match the prepared data "
                                 f"(logits {tuple(out.train_logits.shape)}, expected ({expected}, {self.vocab_size}); "
                                 f"{len(out.transfer_targets)} transfer rows, expected {len(self.transfer_prompts)}): "
                                 f"the cache is stale, re-run `scd teacher-outputs`")
            self._outputs[name] = out
        return self._outputs[name]

    def generated(self, name: str) -> list[list[int]] | None:
        """The checkpoint's greedy responses to the training prompts where the cache holds them (T*'s), else None."""
        return self.outputs(name).train_generated

    def transfer_rows(self, name: str) -> list[Encoded]:
        """The transfer set labelled by checkpoint `name`: its greedy outputs are the rows' targets."""
        return [Encoded(p.prompt_ids, t, labelled=False)
                for p, t in zip(self.transfer_prompts, self.outputs(name).transfer_targets)]

    def probe_logits(self, name: str, indices: list[int]) -> torch.Tensor:
        """Response-position logits of a few training rows (SCD's probe). From the outputs when they are cached
        or already computed; otherwise from the live teacher's forward pass over these rows alone, so that
        scoring every checkpoint does not cost every checkpoint's full outputs."""
        if name in self._outputs or self._live is None:
            return self.rows_logits(name, indices)
        return self._live.response_logits(name, [self.train_rows[i] for i in indices])

    def rows_logits(self, name: str, indices: list[int], kind: str = "logits") -> torch.Tensor:
        """Response-position logits (or `kind="hidden"` states) of the given rows, concatenated in order."""
        out, n_train = self.outputs(name), len(self.train_rows)
        train, transfer = getattr(out, f"train_{kind}"), getattr(out, f"transfer_{kind}")
        if name not in self._transfer_starts:
            self._transfer_starts[name] = _offsets(map(len, out.transfer_targets)).tolist()
        parts = []
        for i in indices:
            if i < n_train:
                parts.append(train[self._starts[i]: self._starts[i + 1]])
            else:
                j, off = i - n_train, self._transfer_starts[name]
                parts.append(transfer[off[j]: off[j + 1]])
        return torch.cat(parts) if parts else train[:0]

    def logits(self, name: str, batch: dict, kind: str = "logits") -> torch.Tensor:
        """Checkpoint `name`'s logits (or hidden states) [B, T, *] for a training batch (its `index` and `labels`),
        zero off the response positions, which every loss masks out."""
        mask = response_mask(batch["labels"])
        flat = self.rows_logits(name, batch["index"].tolist(), kind)
        if flat.shape[0] != int(mask.sum()):
            raise ValueError("cached teacher logits do not line up with the batch's response tokens; "
                             "re-run `scd teacher-outputs`")
        out = torch.zeros(*mask.shape, flat.shape[-1], device=mask.device)
        out[mask] = flat.to(mask.device)
        return out

    def gold_losses(self, name: str) -> torch.Tensor:
        """Per training row: the checkpoint's gold-answer NLL, mean over the row's response tokens."""
        logits = self.outputs(name).train_logits
        gold = torch.tensor([t for r in self.train_rows for t in r.answer_ids], dtype=torch.long)
        nll = F.cross_entropy(logits, gold, reduction="none")
        row = torch.repeat_interleave(torch.arange(len(self.train_rows)), self._train_offsets.diff())
        sums = torch.zeros(len(self.train_rows)).index_add_(0, row, nll)
        return sums / self._train_offsets.diff().clamp(min=1)


def transfer_prompts(prep: Prepared, transfer: bool = True) -> list[Encoded]:
    """The task's transfer prompts (none when `transfer` is off or the task has no transfer set); their targets
    are what a teacher checkpoint generates."""
    if not transfer or not (prep.dir / "transfer.jsonl").exists():
        return []
    prompts = encode([dict(r, answer="") for r in prep.rows("transfer")], prep.tokenizer, prep.task.max_length)
    for p in prompts:  # only the prompt is used
        p.answer_ids = []
    return prompts


def live_teacher(prep: Prepared, teacher_dir: Path, device, precision: str = "fp32",
                 batch_size: int = 256) -> LiveTeacher:
    """The teacher's checkpoints over a task's shared vocabulary, generating up to the task's max_new_tokens."""
    return LiveTeacher(teacher_dir, prep.tokenizer, len(prep.tokenizer), device, precision, batch_size,
                       prep.task.evaluation.get("max_new_tokens", 16))


def open_cache(prep: Prepared, live: LiveTeacher, transfer: bool = True,
               cache_dir: Path | None = None) -> TeacherCache:
    """The teacher outputs of a run on a task's prepared data (training rows, and the transfer set unless
    `transfer` is off): read from `cache_dir`, or without one computed in memory by `live` on first use."""
    prompts = transfer_prompts(prep, transfer)
    rows = prep.encoded("train")
    if cache_dir:
        return TeacherCache.on_disk(cache_dir, rows, prompts, live.vocab_size)
    return TeacherCache.in_memory(live, rows, prompts)
