"""Teacher schedules (TD, CD, SCD) on constructed distributions, SCD's options (term scale, KL directions,
per-subdomain terms), the trajectory guard, and adaptive weighting on known losses."""
import math
from types import SimpleNamespace

import pytest
import torch

from scd.data import Encoded
from scd.distill.methods import method_from_config
from scd.distill.parts import SCHEDULES
from scd.distill.probe import ProbeSet, mean_kl
from scd.distill.schedules import BestTeacher, FixedCheckpoint, FixedOrder, ReversedOrder, ScheduledCheckpoint
from scd.distill.trajectory import TrajectoryError, require_distinct, require_in_order
from scd.distill.weighting import AdaptiveWeight, adaptive_weights

# A teacher trajectory over a 3-token vocabulary: from nearly uniform (early) to peaked (T* = best).
TRAJECTORY = {"ckpt-1": [0.40, 0.30, 0.30], "ckpt-2": [0.60, 0.20, 0.20], "ckpt-3": [0.80, 0.10, 0.10],
              "best": [0.95, 0.025, 0.025]}
NAMES = list(TRAJECTORY)


def logp(probs):
    return torch.tensor([probs]).log()


def ctx(student, stage=0, n_stages=4, history=()):
    return SimpleNamespace(checkpoints=NAMES, stage=stage, n_stages=n_stages, history=list(history),
                           teacher_logprobs=lambda c: logp(TRAJECTORY[c]), student_logprobs=lambda: logp(student))


def test_mean_kl_hand_value():
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert mean_kl(logp([0.5, 0.5]), logp([0.25, 0.75])) == pytest.approx(expected, rel=1e-6)
    assert mean_kl(logp([0.5, 0.5]), logp([0.5, 0.5])) == pytest.approx(0.0, abs=1e-7)


def test_scd_picks_early_checkpoint_for_a_distant_student_and_reaches_best_as_it_approaches():
    scd = ScheduledCheckpoint(lam=1.0)
    far = scd.choose(ctx([0.34, 0.33, 0.33]))
    assert far in ("ckpt-1", "ckpt-2")
    picks = [scd.choose(ctx(s)) for s in ([0.34, 0.33, 0.33], [0.6, 0.2, 0.2], [0.8, 0.1, 0.1], [0.95, 0.025, 0.025])]
    order = [NAMES.index(p) for p in picks]
    assert order == sorted(order) and picks[-1] == "best" and picks[0] != "best"
    # the recorded terms are the definitions: performance = KL(T* || c), learnability = KL(S || c)
    terms = scd.scores[-1]["ckpt-2"]
    assert terms["performance"] == pytest.approx(mean_kl(logp(TRAJECTORY["best"]), logp(TRAJECTORY["ckpt-2"])))
    assert terms["score"] == pytest.approx(terms["performance"] + terms["learnability"])


def test_scd_with_lambda_zero_always_picks_the_checkpoint_nearest_best():
    scd = ScheduledCheckpoint(lam=0.0)
    for student in ([0.34, 0.33, 0.33], [0.6, 0.2, 0.2], [0.1, 0.8, 0.1]):
        assert scd.choose(ctx(student)) == "best"


def test_scd_monotone_never_goes_back_but_free_choice_may():
    near_best, uniform = [0.95, 0.025, 0.025], [0.34, 0.33, 0.33]
    free = ScheduledCheckpoint(lam=5.0)
    assert free.choose(ctx(uniform, history=["best"])) != "best"
    mono = ScheduledCheckpoint(lam=5.0, monotone=True)
    assert mono.choose(ctx(uniform, history=["ckpt-3"])) in ("ckpt-3", "best")
    assert mono.choose(ctx(near_best, history=["ckpt-2"])) == "best"


def test_scd_teacher_terms_are_computed_once():
    calls = []
    c = ctx([0.34, 0.33, 0.33])
    inner = c.teacher_logprobs
    c.teacher_logprobs = lambda name: calls.append(name) or inner(name)
    scd = ScheduledCheckpoint()
    scd.choose(c)
    first = len(calls)
    scd.choose(c)
    # the performance term is cached: the second stage only looks each checkpoint up for the learnability term
    assert len(calls) - first == len(NAMES)


def test_cd_visits_checkpoints_in_order_and_td_always_best():
    assert [FixedOrder().choose(ctx(None, stage=k, n_stages=4)) for k in range(4)] == NAMES
    assert [FixedOrder().choose(ctx(None, stage=k, n_stages=2)) for k in range(2)] == ["ckpt-2", "best"]
    assert {BestTeacher().choose(ctx(None, stage=k)) for k in range(4)} == {"best"}


# Each registered schedule's choice per stage, over the 4-checkpoint trajectory in 4 and in 2 stages, with a
# student equal to T* (SCD then has nothing to gain from an earlier checkpoint). Hand-written from each schedule's
# definition; a schedule registered without a case here fails the test below.
CHOICES = {
    ("best", ()): (["best"] * 4, ["best"] * 2),
    ("fixed_order", ()): (NAMES, ["ckpt-2", "best"]),
    ("reversed_order", ()): (NAMES[::-1], ["best", "ckpt-2"]),
    ("fixed", (("checkpoint", 1),)): (["ckpt-1"] * 4, ["ckpt-1"] * 2),
    ("fixed", (("checkpoint", 3),)): (["ckpt-3"] * 4, ["ckpt-3"] * 2),
    ("fixed", (("checkpoint", 4),)): (["best"] * 4, ["best"] * 2),
    ("scd", ()): (["best"] * 4, ["best"] * 2),
}


def test_every_registered_schedule_chooses_its_checkpoint_per_stage():
    assert {name for name, _ in CHOICES} == set(SCHEDULES)
    for (name, options), (four, two) in CHOICES.items():
        for n_stages, expected in ((4, four), (2, two)):
            schedule = method_from_config("m", {"schedule": name, "divergence": "fkl",
                                                "schedule_options": dict(options)}).schedule
            got = [schedule.choose(ctx(TRAJECTORY["best"], stage=k, n_stages=n_stages)) for k in range(n_stages)]
            assert got == expected, (name, options, n_stages)


def test_fixed_and_reversed_schedules_refuse_bad_options_in_one_line():
    for bad in (0, -1, None, True, 1.5):
        with pytest.raises(ValueError, match=r"schedule 'fixed': schedule_options.checkpoint must be an integer >= 1"):
            FixedCheckpoint(checkpoint=bad)
    with pytest.raises(ValueError, match=r"schedule 'fixed': checkpoint 5 is past the trajectory's 4 checkpoints "
                                         r"\(ckpt-1, ckpt-2, ckpt-3, best\); set schedule_options.checkpoint to 1..4"):
        FixedCheckpoint(checkpoint=5).choose(ctx(None))
    with pytest.raises(ValueError, match=r"schedule 'reversed_order' takes no options, got \['checkpoint'\]"):
        ReversedOrder(checkpoint=1)
    assert SCHEDULES.meta("fixed")["reference"] and SCHEDULES.meta("reversed_order")["reference"]


def test_schedule_options_are_checked():
    with pytest.raises(ValueError, match="schedule ScheduledCheckpoint: .*lamda.*its options: lam, monotone"):
        method_from_config("m", {"schedule": "scd", "divergence": "fkl", "weighting": "none",
                                 "schedule_options": {"lamda": 1}})
    m = method_from_config("m", {"schedule": "scd", "divergence": "fkl", "weighting": "aw",
                                 "schedule_options": {"lam": 0.5}})
    assert m.schedule.lam == 0.5


def test_aw_formula_limits_and_no_gradient():
    s = torch.tensor([1.0, 2.0, 10.0, 0.01, 0.0], requires_grad=True)
    t = torch.tensor([1.0, 6.0, 0.01, 10.0, 0.0], requires_grad=True)
    w = adaptive_weights(s, t)
    assert w.tolist()[:2] == pytest.approx([0.5, 0.25])
    assert w[2] > 0.99 and w[3] < 0.01    # teacher far better -> imitate it; student-SFT far better -> gold label
    assert w[4] == 0.5 and torch.isfinite(w).all()
    assert not w.requires_grad
    # sigmoid form of the method doc
    assert w[1] == pytest.approx(torch.sigmoid(torch.log(torch.tensor(2.0 / 6.0))).item())


def test_aw_weights_follow_row_indices():
    aw = AdaptiveWeight()
    losses = {"sft": torch.tensor([1.0, 3.0, 1.0]), "best": torch.tensor([3.0, 1.0, 1.0])}
    c = SimpleNamespace(student_sft_losses=lambda: losses["sft"], teacher_losses=lambda name: losses[name])
    aw.begin_stage(c, "best")
    w = aw.weights({"index": torch.tensor([1, 0])}, alpha=0.5)
    assert w.tolist() == pytest.approx([0.75, 0.25])


# ---- SCD's open choices: term scale, learnability direction, per-subdomain terms, the trajectory guard ----------

def multi_ctx(trajectory: dict, student: list, probe=None, names=None):
    """A context over probes of several tokens: trajectory[c] and student are [tokens, vocab] probabilities."""
    return SimpleNamespace(checkpoints=names or list(trajectory), stage=0, n_stages=1, history=[], probe=probe,
                           teacher_logprobs=lambda c: torch.tensor(trajectory[c]).log(),
                           student_logprobs=lambda: torch.tensor(student).log())


# A near-uniform student, a peaked T*, ckpt-1 10% and ckpt-2 90% of the way from one to the other. Learnability
# spans 0.01-0.91 nats over the checkpoints, performance 0-0.56: in raw units the larger term decides (ckpt-1,
# the student's neighbour, 0.57 against 0.66); scaled to its spread each term counts alike and ckpt-2 wins
# (0.72 against 1.0 for either end).
UNEVEN = {"ckpt-1": [[0.396, 0.302, 0.302]], "ckpt-2": [[0.844, 0.078, 0.078]], "best": [[0.9, 0.05, 0.05]]}
UNEVEN_STUDENT = [[0.34, 0.33, 0.33]]


def test_normalized_scale_changes_the_choice_where_one_term_dominates_by_its_units():
    raw = ScheduledCheckpoint(lam=1.0)
    assert raw.choose(multi_ctx(UNEVEN, UNEVEN_STUDENT)) == "ckpt-1"
    terms = raw.scores[-1]
    # the example is what it claims: learnability's spread dwarfs performance's
    spread = {t: max(s[t] for s in terms.values()) - min(s[t] for s in terms.values())
              for t in ("performance", "learnability")}
    assert spread["learnability"] > 1.5 * spread["performance"] > 0
    norm = ScheduledCheckpoint(lam=1.0, scale="normalized")
    assert norm.choose(multi_ctx(UNEVEN, UNEVEN_STUDENT)) == "ckpt-2"
    scaled = norm.scores[-1]
    for t in ("performance", "learnability"):  # min-max over the candidates: 0 at the best, 1 at the worst
        values = [s[f"{t}_normalized"] for s in scaled.values()]
        assert min(values) == 0.0 and max(values) == pytest.approx(1.0)
        for c, s in scaled.items():
            assert s[t] == pytest.approx(terms[c][t])  # the raw terms are logged either way
            lo = min(x[t] for x in terms.values())
            assert s[f"{t}_normalized"] == pytest.approx((s[t] - lo) / spread[t])
    assert all(s["score"] == pytest.approx(s["performance_normalized"] + s["learnability_normalized"])
               for s in scaled.values())


def test_normalized_scale_with_equal_terms_scores_zero_and_picks_the_earliest():
    same = {"ckpt-1": [[0.5, 0.5]], "best": [[0.5, 0.5]]}
    scd = ScheduledCheckpoint(scale="normalized")
    assert scd.choose(multi_ctx(same, [[0.5, 0.5]])) == "ckpt-1"
    assert {s["score"] for s in scd.scores[-1].values()} == {0.0}


def test_learnability_direction_option_is_the_kl_it_names():
    forward = ScheduledCheckpoint(learnability_kl="student_to_ckpt")
    reverse = ScheduledCheckpoint(learnability_kl="ckpt_to_student")
    c = ctx([0.34, 0.33, 0.33])
    forward.choose(c)
    reverse.choose(c)
    student = logp([0.34, 0.33, 0.33])
    for name in NAMES:
        t = logp(TRAJECTORY[name])
        assert forward.scores[-1][name]["learnability"] == pytest.approx(mean_kl(student, t))
        assert reverse.scores[-1][name]["learnability"] == pytest.approx(mean_kl(t, student))
    # the two directions differ on this trajectory (the student is near uniform, the checkpoints peaked)
    assert reverse.scores[-1]["best"]["learnability"] != pytest.approx(forward.scores[-1]["best"]["learnability"])


def test_per_subdomain_terms_average_to_the_whole_probe_terms():
    g = torch.Generator().manual_seed(0)
    rows = [Encoded([1], [5] * n) for n in (1, 4, 2)]  # 7 response tokens: 1 of tfs, 4 of sfs, 2 of tfs
    probe = ProbeSet(rows, [4, 9, 11], 0, 4, source="validation", groups=["tfs", "sfs", "tfs"])
    traj = {c: torch.softmax(torch.randn(7, 4, generator=g) * k, -1).tolist()
            for c, k in (("ckpt-1", 0.5), ("ckpt-2", 1.0), ("best", 2.0))}
    student = torch.softmax(torch.randn(7, 4, generator=g), -1).tolist()
    scd = ScheduledCheckpoint()
    scd.choose(multi_ctx(traj, student, probe))
    tokens = probe.subdomain_tokens()
    assert tokens == {"sfs": 4, "tfs": 3} and probe.describe()["tokens"] == 7
    for c, s in scd.scores[-1].items():
        assert set(s["subdomains"]) == {"tfs", "sfs"}
        for t in ("performance", "learnability"):
            weighted = sum(tokens[k] * s["subdomains"][k][t] for k in tokens) / sum(tokens.values())
            assert weighted == pytest.approx(s[t], rel=1e-5)
        # tfs is tokens 0, 5, 6 (rows 1 and 3): its learnability is their mean KL(p_S || p_c)
        logs, logc = torch.tensor(student).log(), torch.tensor(traj[c]).log()
        tfs = [0, 5, 6]
        assert s["subdomains"]["tfs"]["learnability"] == pytest.approx(mean_kl(logs[tfs], logc[tfs]), rel=1e-5)


def test_bad_scd_options_are_refused_in_one_line():
    for options, match in (({"probe_source": "test"}, "probe_source must be one of train, validation, transfer"),
                           ({"scale": "zscore"}, "scale must be one of raw, normalized")):
        with pytest.raises(ValueError, match=match):
            method_from_config("m", {"schedule": "scd", "divergence": "fkl", "schedule_options": options})
    m = method_from_config("m", {"schedule": "scd", "divergence": "fkl",
                                 "schedule_options": {"probe_source": "validation", "scale": "normalized"}})
    assert (m.schedule.probe_source, m.schedule.scale) == ("validation", "normalized")
    assert (ScheduledCheckpoint().probe_source, ScheduledCheckpoint().scale) == ("train", "raw")  # today's


def test_trajectory_guard_refuses_duplicated_or_out_of_order_checkpoints():
    names = ["ckpt-1", "ckpt-2", "best"]
    require_in_order(names, {"ckpt-1": 10, "ckpt-2": 20, "ckpt-3": 30, "best": 27}, "summary.json")
    with pytest.raises(TrajectoryError, match=r"not distinct: 'best' is the same weights as 'ckpt-2' \(both step 20"):
        require_in_order(names, {"ckpt-1": 10, "ckpt-2": 20, "best": 20}, "summary.json")
    with pytest.raises(TrajectoryError, match=r"not in training order: 'best' \(step 15\) comes before 'ckpt-2'"):
        require_in_order(names, {"ckpt-1": 10, "ckpt-2": 20, "best": 15}, "summary.json")
    require_distinct(names, {"ckpt-1": "a", "ckpt-2": "b", "best": "c"})
    with pytest.raises(TrajectoryError, match="'best' holds the same weights as 'ckpt-1'"):
        require_distinct(names, {"ckpt-1": "a", "ckpt-2": "b", "best": "a"})
