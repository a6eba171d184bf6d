"""The TFS/SFS decomposition of the method doc, measured per sample.

Partition the test samples by which SFT model has the lower gold-answer loss: the teacher-favoured part (TFS,
l_T < l_S) and the student-favoured part (SFS, the rest). For any model m, exactly,
    R(m) - R(T) = P(TFS) * E_TFS[l_m - l_T]  -  P(SFS) * E_SFS[l_T - l_m]
i.e. (its deficit on TFS, weighted) - (its advantage on SFS, weighted), with R the mean gold NLL.
"""
from __future__ import annotations


def decompose(teacher: list[dict], student: list[dict], model: list[dict]) -> dict:
    """Per-sample records (scd/evaluate.py) of the teacher SFT, student SFT and one model, on the same rows."""
    lt = {r["id"]: r["gold_nll"] for r in teacher}
    ls = {r["id"]: r["gold_nll"] for r in student}
    lm = {r["id"]: r["gold_nll"] for r in model}
    correct = {r["id"]: bool(r["correct"]) for r in model}
    if not (set(lt) == set(ls) == set(lm)):
        raise ValueError("decomposition needs the three models' records on the same test rows")
    n = len(lt)
    tfs = [i for i in lt if lt[i] < ls[i]]
    sfs = [i for i in lt if not lt[i] < ls[i]]

    def mean(xs):
        return sum(xs) / len(xs) if xs else 0.0

    out = {"n": n, "p_tfs": len(tfs) / n if n else 0.0, "p_sfs": len(sfs) / n if n else 0.0,
           "tfs_deficit": mean([lm[i] - lt[i] for i in tfs]), "sfs_advantage": mean([lt[i] - lm[i] for i in sfs]),
           "risk_gap": mean([lm[i] - lt[i] for i in lt]),
           "tfs_accuracy": mean([correct[i] for i in tfs]), "sfs_accuracy": mean([correct[i] for i in sfs])}
    return out
