"""DSKD: Dual-Space Knowledge Distillation (Zhang et al., EMNLP 2024; songmzhang/DSKD), with and without
cross-model attention (CMA).

Two trained projectors map between the hidden spaces: t2s: Linear(Ht -> Hs) and s2t: Linear(Hs -> Ht) (the
reference's `projector_config.json`: structures "t-s" and "s-t", PyTorch's default init), built in `bind()`; CMA adds
query: Linear(2 Hs -> 2 Ht) ("2s-2t"). Per response token (labels pre-shifted: logits[:, t] predict labels[:, t]):

    D = CE(y, t2s_logits)                         student space, trains t2s (and CMA's query)
      + KL(softmax(t2s_logits / tau) || q^tau)    student space, trains the student
      + KL(p^tau || softmax(s2t_logits / tau))    teacher space, trains the student (through s2t) and s2t

    dskd:      t2s_logits = t2s(h_T) @ W_S^T,   s2t_logits = s2t(h_S) @ W_T^T   (W = output head [V, H])

Pinned choices (checked against the reference's criterions/dual_space_kd*.py):
- Detached, as in the reference: the teacher's hidden states, logits, heads and embeddings (no gradient ever
  reaches a teacher tensor); the student head inside t2s_logits (`lm_head.weight.detach()`), so the head learns
  only through the student's own logits; t2s_logits inside the student-space KL (`t2s_logits.detach()`), so t2s
  learns from the CE term alone. Not detached: the student hidden states into s2t (the teacher-space KL trains the
  student through s2t); CMA's attention scores in both directions (its query projector learns from all terms).
- Temperature: the student-space KL divides both the student logits and t2s_logits by tau, the teacher-space KL
  both s2t_logits and the teacher logits (the reference's `kd_temperature` in both KL terms); the t2s CE term is
  at temperature 1 (the reference's plain `compute_cross_entropy_loss`). The reference's extra
  `teacher_temperature` (default 1) is not exposed. The method's `tau_squared` switch would scale all of D,
  the CE term included; the reference has no tau^2.
- The student-space KL is the forward KL (the reference's `dist_func` with its scripts' `--kd-objective
  forward_kl`); the teacher-space one is always the forward KL, as in the reference. True-KL form
  sum a (log a - log b) (scd.distill.losses.kl_from_log_probs), float32 with autocast off, computed only at the
  valid positions and scattered into [B, T]: exactly 0 elsewhere, finite (empty) on all-masked or empty batches.
- Mixing: the reference's (1 - kd_rate) CE + kd_rate * (sum of the three terms), kd_rate 0.5, is the method's
  w * D + (1 - w) * CE with the default alpha 0.5. Normalisation is the benchmark's (per valid token, see
  Method.loss). The projectors join the student's optimizer at the student's learning rate (the reference gives
  them their own, `--projector-lr 1e-3`); the reference's scripts use tau = 2, the preset keeps the benchmark
  default (set `temperature:` in the config to match).

dskd_cma (different tokenizers: the aligned states come from attention, `cross_model_attention`):
    q_i = query([E_S(x_i); E_S(y_i)]),  k_j = [E_T(x_j); E_T(y_j)] / std,  v_j = t2s(h_T,j / std + E_T(y_j) / std)
    a_ij = q_i . k_j / sqrt(2 Ht), over the valid pairs (student response token i, teacher response token j of the
    same row); t2s_hidden_i = softmax_j(a_ij) v_j; s2t_hidden_j = softmax_i(a_ij) s2t(h_S,i) (the reference's
    teacher-space term, followed: attention transposed, values from the student).
    Student-space terms at the student's response tokens, the teacher-space KL at the teacher's response tokens.
- As in the reference: input/target embeddings detached, masked ids read as 0; the std's are global over the batch
  (one scalar each for the key embeddings, the target embeddings and the hidden states; unbiased). Deviation: the
  std's are taken over the teacher's valid (response) tokens only (the reference takes them over the whole padded
  tensors, prompt and padding included), so the result does not depend on the teacher side's padding length; a
  std of 0 (or fewer than 2 values) counts as 1.
- Restriction: attention runs over the teacher's RESPONSE tokens of the same row only (the reference masks keys
  with the teacher's label mask too; our teacher cache holds response positions only). In the workflow the
  teacher side is the shared-tokenizer batch itself (teacher ids = input_ids, targets = labels, mask = response
  positions, where teacher_hidden is defined); the objective also accepts `teacher_input_ids` / `teacher_labels`
  for a teacher sequence of its own length and vocabulary.
- As in the reference, the student-space KL counts only at tokens where t2s_logits' argmax is the target
  (`t2s_correct_only`, default True; its t2s_acc_mask). Masked logits use the dtype's minimum, not -1e5.
- The teacher-space KL lives at teacher positions [B, Tt]. When the teacher mask equals the student mask (shared
  tokenizer) it is added at the same positions; otherwise each row's sum is spread evenly over that row's student
  response tokens (per-row sums, and so the weighted loss, are unchanged). Rows without any valid student or
  teacher token contribute 0 (the reference would attend uniformly over padding there).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scd.data import IGNORE
from scd.distill.losses import kl_from_log_probs, log_probs
from scd.distill.parts import Objective, register_divergence, register_method

REFERENCE = ("Zhang et al., Dual-Space Knowledge Distillation for Large Language Models, EMNLP 2024; "
             "github.com/songmzhang/DSKD")


def _no_autocast(x: torch.Tensor):
    return torch.autocast(x.device.type, enabled=False)


def _need(name: str, value, who: str):
    if value is None:
        raise ValueError(f"{who} needs `{name}` (uses_hidden objectives get it from the training loop)")
    return value


def student_space_terms(t2s_logits: torch.Tensor, student_logits: torch.Tensor, targets: torch.Tensor,
                        temperature: float = 1.0, correct_only: bool = False):
    """Per token [N]: CE(y, t2s_logits) (trains t2s), KL(softmax(stopgrad(t2s_logits)/tau) || q^tau) (trains the
    student), and whether t2s_logits' argmax is the target. With `correct_only` the KL is 0 where it is not."""
    ce = F.cross_entropy(t2s_logits, targets, reduction="none")
    target = t2s_logits.detach()
    kl = kl_from_log_probs(log_probs(target, temperature), log_probs(student_logits, temperature))
    correct = target.argmax(-1) == targets
    if correct_only:
        kl = torch.where(correct, kl, torch.zeros_like(kl))
    return ce, kl, correct


def teacher_space_kl(s2t_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0):
    """Per token [N]: KL(p^tau || softmax(s2t_logits / tau)), the teacher detached."""
    return kl_from_log_probs(log_probs(teacher_logits.detach(), temperature), log_probs(s2t_logits, temperature))


class _Stats:
    """Means of the loss terms over the last optimizer step (micro-batches summed, weighted by tokens)."""

    def __init__(self, prefix: str):
        self.prefix, self.sums, self.count, self.last = prefix, {}, 0, {}

    def add(self, n: int, **terms: torch.Tensor) -> None:
        if n == 0:
            return
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v.detach().float().sum())
        self.count += n

    def close(self) -> None:
        if self.count:
            self.last = {f"{self.prefix}/{k}": v / self.count for k, v in self.sums.items()}
        self.sums, self.count = {}, 0


@register_divergence("dskd", reference=REFERENCE)
class DSKD(Objective):
    """Dual-space KD with a shared vocabulary: CE(y, t2s) + KL(t2s || q) + KL(p || s2t), trained projectors."""

    uses_hidden = True
    prefix = "dskd"

    def __init__(self):
        super().__init__()
        self.register_module("t2s", None)
        self.register_module("s2t", None)
        self._stats = _Stats(self.prefix)

    def bind(self, student_hidden_size: int, teacher_hidden_size: int) -> None:
        self.t2s = torch.nn.Linear(teacher_hidden_size, student_hidden_size)
        self.s2t = torch.nn.Linear(student_hidden_size, teacher_hidden_size)

    def _check_bound(self) -> None:
        if self.t2s is None or self.s2t is None:
            raise RuntimeError(f"{type(self).__name__}: call bind(student_hidden_size, teacher_hidden_size) first")

    def forward(self, student_logits, teacher_logits, mask, temperature: float = 1.0, *, student_hidden=None,
                teacher_hidden=None, student_head=None, teacher_head=None, labels=None, **_unused) -> torch.Tensor:
        self._check_bound()
        who = "dskd"
        _need("student_hidden", student_hidden, who), _need("teacher_hidden", teacher_hidden, who)
        ws, wt = _need("student_head", student_head, who), _need("teacher_head", teacher_head, who)
        labels = _need("labels", labels, who)
        if ws.shape[0] != student_logits.shape[-1] or wt.shape[0] != teacher_logits.shape[-1]:
            raise ValueError(f"dskd: head rows (student {ws.shape[0]}, teacher {wt.shape[0]}) must match the logits' "
                             f"vocabularies ({student_logits.shape[-1]}, {teacher_logits.shape[-1]})")
        with _no_autocast(student_logits):
            b, t = mask.nonzero(as_tuple=True)
            zs = student_logits[b, t].float()
            zt = teacher_logits[b, t].detach().float()
            y = labels[b, t]
            # student space: the teacher's states in the student's head (head detached, as in the reference)
            t2s_logits = self.t2s(teacher_hidden[b, t].detach().float()) @ ws.detach().float().T
            ce, kl_s, correct = student_space_terms(t2s_logits, zs, y, temperature)
            # teacher space: the student's states in the frozen teacher head
            s2t_logits = self.s2t(student_hidden[b, t].float()) @ wt.detach().float().T
            kl_t = teacher_space_kl(s2t_logits, zt, temperature)
            out = torch.zeros(mask.shape, device=zs.device, dtype=torch.float32).index_put((b, t), ce + kl_s + kl_t)
        if self.training:
            self._stats.add(len(b), t2s_ce=ce, t2s_kl=kl_s, s2t_kl=kl_t, t2s_acc=correct.float())
        return out

    def after_step(self, loss: float, step: int, total_steps: int) -> None:
        self._stats.close()

    def log_values(self) -> dict[str, float]:
        return dict(self._stats.last)


# ---- cross-model attention ---------------------------------------------------------------------------------------

@dataclass
class Alignment:
    """What `cross_model_attention` returns. Weights are exactly 0 off the valid pairs (other rows, non-response or
    padding tokens); rows of a side without any valid partner token are all 0, and so are their states."""
    t2s_hidden: torch.Tensor    # [B, Ts, Hs] teacher states aligned to each student token (through t2s)
    s2t_hidden: torch.Tensor    # [B, Tt, Ht] student states aligned to each teacher token (through s2t)
    t2s_weights: torch.Tensor   # [B, Ts, Tt] attention of each student token over the teacher tokens
    s2t_weights: torch.Tensor   # [B, Tt, Ts] attention of each teacher token over the student tokens
    student_mask: torch.Tensor  # [B, Ts] student response tokens whose row has at least one teacher token
    teacher_mask: torch.Tensor  # [B, Tt] teacher response tokens whose row has at least one student token


def _global_std(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The (unbiased) std of all entries of x [B, T, D] at the valid positions [B, T]; 1 if undefined or 0."""
    v = x[valid]
    if v.numel() < 2:
        return x.new_ones(())
    s = v.std()
    return torch.where(s > 0, s, torch.ones_like(s))


def _safe_ids(ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return torch.where(valid, ids, torch.zeros_like(ids))


def cross_model_attention(*, query: torch.nn.Module, t2s: torch.nn.Module, s2t: torch.nn.Module,
                          student_ids: torch.Tensor, student_targets: torch.Tensor, student_mask: torch.Tensor,
                          student_hidden: torch.Tensor, student_embed: torch.Tensor,
                          teacher_ids: torch.Tensor, teacher_targets: torch.Tensor, teacher_mask: torch.Tensor,
                          teacher_hidden: torch.Tensor, teacher_embed: torch.Tensor) -> Alignment:
    """DSKD's cross-model attention between a student row and the SAME row of the teacher, each with its own
    length and vocabulary: student ids / targets / mask [B, Ts], hidden [B, Ts, Hs], input embeddings [Vs, Hs];
    teacher ids / targets / mask [B, Tt], hidden [B, Tt, Ht], input embeddings [Vt, Ht]. Masks select the response
    tokens; ids elsewhere may be anything (read as 0). Float32, autocast off; the teacher side is detached."""
    B, Ts = student_mask.shape
    if teacher_mask.shape[0] != B:
        raise ValueError(f"cross_model_attention: batch sizes differ (student {B}, teacher {teacher_mask.shape[0]})")
    ht_size = teacher_hidden.shape[-1]
    if teacher_embed.shape[-1] != ht_size:
        raise ValueError(f"cross_model_attention: teacher embeddings ({teacher_embed.shape[-1]}) and hidden states "
                         f"({ht_size}) differ in size; the values add them")
    with _no_autocast(student_hidden):
        s_has = student_mask.any(-1, keepdim=True)
        t_has = teacher_mask.any(-1, keepdim=True)
        s_valid, t_valid = student_mask & t_has, teacher_mask & s_has
        es, et = student_embed.detach().float(), teacher_embed.detach().float()
        s_index = torch.cat([es[_safe_ids(student_ids, s_valid)], es[_safe_ids(student_targets, s_valid)]], -1)
        t_target = et[_safe_ids(teacher_targets, t_valid)]
        t_index = torch.cat([et[_safe_ids(teacher_ids, t_valid)], t_target], -1)
        h_t = teacher_hidden.detach().float()
        keys = t_index / _global_std(t_index, t_valid)
        values_t = t2s(h_t / _global_std(h_t, t_valid) + t_target / _global_std(t_target, t_valid))  # [B, Tt, Hs]
        values_s = s2t(student_hidden.float())                                                     # [B, Ts, Ht]
        scores = query(s_index) @ keys.transpose(-1, -2) / math.sqrt(2 * ht_size)                 # [B, Ts, Tt]
        pair = s_valid.unsqueeze(-1) & t_valid.unsqueeze(1)
        low = torch.finfo(scores.dtype).min
        # masked entries get weight exp(min - max) = 0 exactly; all-masked rows (uniform) are zeroed by `* pair`
        w_t2s = torch.softmax(scores.masked_fill(~pair, low), -1) * pair
        w_s2t = torch.softmax(scores.transpose(-1, -2).masked_fill(~pair.transpose(-1, -2), low), -1) \
            * pair.transpose(-1, -2)
        return Alignment(w_t2s @ values_t, w_s2t @ values_s, w_t2s, w_s2t, s_valid, t_valid)


def to_student_positions(teacher_tok: torch.Tensor, teacher_mask: torch.Tensor,
                         student_mask: torch.Tensor) -> torch.Tensor:
    """A per-teacher-token loss [B, Tt] as a per-student-token one [B, Ts]: at the same positions when the masks are
    equal (shared tokenizer), else each row's sum spread evenly over the row's student tokens."""
    if teacher_mask.shape == student_mask.shape and torch.equal(teacher_mask, student_mask):
        return torch.where(student_mask, teacher_tok, torch.zeros_like(teacher_tok))
    share = teacher_tok.sum(-1, keepdim=True) / student_mask.sum(-1, keepdim=True).clamp(min=1)
    return torch.where(student_mask, share.expand(student_mask.shape), torch.zeros(student_mask.shape,
                                                                                     device=teacher_tok.device))


@register_divergence("dskd_cma", reference=REFERENCE + " (DSKD with cross-model attention)")
class DSKDCMA(DSKD):
    """Dual-space KD through cross-model attention (teacher and student may tokenize differently)."""

    prefix = "dskd_cma"
    same_vocab = False  # student and teacher distributions are never compared over one vocabulary

    def __init__(self, t2s_correct_only: bool = True):
        super().__init__()
        self.t2s_correct_only = t2s_correct_only
        self.register_module("query", None)

    def bind(self, student_hidden_size: int, teacher_hidden_size: int) -> None:
        super().bind(student_hidden_size, teacher_hidden_size)
        self.query = torch.nn.Linear(2 * student_hidden_size, 2 * teacher_hidden_size)

    def _check_bound(self) -> None:
        super()._check_bound()
        if self.query is None:
            raise RuntimeError("dskd_cma: call bind(student_hidden_size, teacher_hidden_size) first")

    def forward(self, student_logits, teacher_logits, mask, temperature: float = 1.0, *, student_hidden=None,
                teacher_hidden=None, student_head=None, teacher_head=None, student_embed=None, teacher_embed=None,
                input_ids=None, labels=None, teacher_input_ids=None, teacher_labels=None,
                **_unused) -> torch.Tensor:
        """Teacher-side tensors (teacher_logits, teacher_hidden, teacher_input_ids / teacher_labels, which default
        to input_ids / labels) may have their own length Tt and vocabulary."""
        self._check_bound()
        who = "dskd_cma"
        for name, value in (("student_hidden", student_hidden), ("teacher_hidden", teacher_hidden),
                            ("student_head", student_head), ("teacher_head", teacher_head),
                            ("student_embed", student_embed), ("teacher_embed", teacher_embed),
                            ("input_ids", input_ids), ("labels", labels)):
            _need(name, value, who)
        t_ids = input_ids if teacher_input_ids is None else teacher_input_ids
        t_labels = labels if teacher_labels is None else teacher_labels
        if student_head.shape[0] != student_logits.shape[-1] or teacher_head.shape[0] != teacher_logits.shape[-1]:
            raise ValueError(f"dskd_cma: head rows (student {student_head.shape[0]}, teacher {teacher_head.shape[0]}) "
                             f"must match the logits' vocabularies ({student_logits.shape[-1]}, "
                             f"{teacher_logits.shape[-1]})")
        with _no_autocast(student_logits):
            al = cross_model_attention(
                query=self.query, t2s=self.t2s, s2t=self.s2t, student_ids=input_ids, student_targets=labels,
                student_mask=mask, student_hidden=student_hidden, student_embed=student_embed, teacher_ids=t_ids,
                teacher_targets=t_labels, teacher_mask=t_labels != IGNORE, teacher_hidden=teacher_hidden,
                teacher_embed=teacher_embed)
            b, t = al.student_mask.nonzero(as_tuple=True)
            t2s_logits = al.t2s_hidden[b, t] @ student_head.detach().float().T
            ce, kl_s, correct = student_space_terms(t2s_logits, student_logits[b, t].float(), labels[b, t],
                                                    temperature, self.t2s_correct_only)
            bt, tt = al.teacher_mask.nonzero(as_tuple=True)
            s2t_logits = al.s2t_hidden[bt, tt] @ teacher_head.detach().float().T
            kl_t = teacher_space_kl(s2t_logits, teacher_logits[bt, tt].detach().float(), temperature)
            zeros_s = torch.zeros(mask.shape, device=student_logits.device, dtype=torch.float32)
            zeros_t = torch.zeros(al.teacher_mask.shape, device=student_logits.device, dtype=torch.float32)
            out = zeros_s.index_put((b, t), ce + kl_s) + to_student_positions(
                zeros_t.index_put((bt, tt), kl_t), al.teacher_mask, al.student_mask)
        if self.training:
            self._stats.add(len(b), t2s_ce=ce, t2s_kl=kl_s, t2s_acc=correct.float())
            if len(b):  # per student token, as the loss counts it
                self._stats.sums["s2t_kl"] = self._stats.sums.get("s2t_kl", 0.0) + float(kl_t.detach().sum())
        return out


register_method("dskd", reference=REFERENCE, divergence="dskd")
register_method("dskd_cma", reference=REFERENCE + " (cross-model attention)", divergence="dskd_cma")
