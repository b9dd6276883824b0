"""Ownership tests (verify/ownership.py) on small hand-built records, against independent arithmetic.

A wrong null turns an honest model into an accused one, so every p-value here is compared with
one computed from first principles (exact binomial sums with ``math.comb``, brute-force rank-sum
enumeration, a bisected Clopper-Pearson bound) with ``abs=0``: ``pytest.approx``'s default
absolute tolerance of 1e-12 would accept any p-value below 1e-12, i.e. every one that matters.
"""

from __future__ import annotations

import datetime
import itertools
import math
import time
import numpy as np
import pytest

from extractguard.errors import ConfigurationError
from extractguard.oracle.schema import InputSchema
from extractguard.oracle.targets import CallableTarget
from extractguard.verify import verify_suspect, watermark_test
from extractguard.verify.ownership import (
    DEFAULT_BETA,
    TINY_P,
    TestResult as OwnershipResult,
    Verdict,
    binomial_tail,
    clopper_pearson_upper,
    graded,
    keyed_label_ranks,
    rank_test_p,
    uniform_rank_sum_cdf,
)
from extractguard.watermark.record import AccountRecord


def exact_tail(k: int, n: int, p: float) -> float:
    """P(X >= k), X ~ Binomial(n, p), summed exactly in rationals-as-floats."""
    return math.fsum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))


def cp_upper(k: int, n: int, miss: float) -> float:
    """Clopper-Pearson upper bound by bisection: the rate u at which P(X <= k | n, u) = miss."""
    lo, hi = k / n, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if math.fsum(math.comb(n, j) * mid**j * (1 - mid) ** (n - j) for j in range(k + 1)) > miss:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def brute_rank_cdf(s: int, n: int, m: int) -> float:
    sums = [sum(r) for r in itertools.product(range(1, m + 1), repeat=n)]
    return sum(x <= s for x in sums) / len(sums)


def lookup_suspect(table: np.ndarray) -> CallableTarget:
    """A suspect whose answer to row ``[i]`` is ``table[i]`` (rows are their own index)."""
    schema = InputSchema((1,), table.shape[1], 0.0, float(len(table)))
    return CallableTarget(lambda X: table[np.asarray(X[:, 0], dtype=int)], schema)


def record(n_marked: int, served: list[int], owner: list[int], control_owner: list[int], account: str = "a") -> AccountRecord:
    """Marked rows are 0..n_marked-1, control rows follow them."""
    idx = np.arange(n_marked + len(control_owner), dtype=np.float64)[:, None]
    return AccountRecord(account, idx[:n_marked], np.array(served), np.array(owner), idx[n_marked:],
                         np.array(control_owner, dtype=np.int64), None, None)


def one_hot(labels: list[int], c: int) -> np.ndarray:
    return np.eye(c)[labels]


# -- the conditional test: Binomial(n, 1/(C-1)) -----------------------------------------------------
COND_SERVED = [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]
COND_OWNER = [0] * 12
# 5 rows carry the keyed label, 3 another wrong label, 4 the owner's label: k = 5 of n = 8.
COND_ANSWERS = [1, 2, 3, 1, 2, 1, 2, 3, 0, 0, 0, 0]


def test_conditional_test_null_is_binomial_with_rate_one_over_c_minus_1() -> None:
    rec = record(12, COND_SERVED, COND_OWNER, [0, 0])
    suspect = lookup_suspect(one_hot(COND_ANSWERS + [0, 3], 4))
    t = watermark_test(suspect, rec, 4)  # one-hot answers are not graded: the conditional test
    assert t.extra["method"] == "conditional"
    assert (t.k, t.n) == (5, 8) and t.p0 == 1 / 3
    assert t.p_value == pytest.approx(exact_tail(5, 8, 1 / 3), rel=1e-12, abs=0)
    assert t.p_value != pytest.approx(exact_tail(5, 8, 1 / 4), rel=1e-3, abs=0)  # the 1/C null is wrong
    assert "Binomial(n, 1/3)" in t.null and "uniform over the 3 classes other than the owner's label" in t.null
    assert t.extra["marked_rows"] == 12 and t.extra["marked_rows_disagreeing"] == 8
    assert t.extra["control_rows"] == 2 and t.extra["control_rows_disagreeing"] == 1
    assert t.answers.tolist() == COND_ANSWERS and t.expected.tolist() == COND_SERVED
    assert t.extra["n_classes"] == 4 and t.extra["owner_labels"].tolist() == COND_OWNER
    assert t.extra["control_answers"].tolist() == [0, 3] and t.extra["control_expected"].tolist() == [0, 0]
    assert t.extra["control_inputs"].tolist() == [[12.0], [13.0]] and t.inputs.tolist() == [[float(i)] for i in range(12)]
    stamp = datetime.datetime.fromisoformat(t.extra["answered_at"])
    assert stamp.utcoffset() == datetime.timedelta(0) and abs(time.time() - stamp.timestamp()) < 60
    forced = watermark_test(suspect, rec, 4, method="conditional")
    assert (forced.k, forced.n, forced.p_value) == (t.k, t.n, t.p_value)
    # The same case with every label mirrored (l -> 3 - l): the owner's label is now the highest class.
    mirrored = watermark_test(lookup_suspect(one_hot([3 - a for a in COND_ANSWERS] + [3, 0], 4)),
                              record(12, [3 - x for x in COND_SERVED], [3] * 12, [3, 3]), 4)
    assert (mirrored.k, mirrored.n, mirrored.p_value) == (t.k, t.n, t.p_value)
    assert mirrored.extra["control_rows_disagreeing"] == 1


def test_conditional_p_value_is_exact_in_the_far_tail() -> None:
    """60 of 60 disagreeing rows carry the keyed label, C = 10: p = 9**-60 ~ 5e-58, not 'below 1e-12'."""
    c, n = 10, 60
    served = [1 + i % 9 for i in range(n)]
    rec = record(n, served, [0] * n, [])
    t = watermark_test(lookup_suspect(one_hot(served, c)), rec, c, method="conditional")
    assert (t.k, t.n) == (n, n) and t.extra["control_rows"] == 0
    assert t.p_value == pytest.approx(9.0**-n, rel=1e-9, abs=0)
    assert math.log(t.p_value) == pytest.approx(-n * math.log(9), rel=1e-9)


# -- the rank test ---------------------------------------------------------------------------------
def test_rank_test_p_value_is_the_exact_rank_sum_tail() -> None:
    # C = 4, owner label 0; the keyed label's rank among classes 1..3 is set row by row.
    served = [1, 2, 3, 1, 2]
    scores = np.array([
        [0.40, 0.30, 0.20, 0.10],  # keyed 1 first among wrong: rank 1
        [0.40, 0.10, 0.30, 0.20],  # keyed 2 first: rank 1
        [0.40, 0.30, 0.20, 0.10],  # keyed 3 last: rank 3
        [0.10, 0.20, 0.30, 0.40],  # keyed 1 last: rank 3
        [0.40, 0.25, 0.20, 0.15],  # keyed 2 second: rank 2
    ])
    rec = record(5, served, [0] * 5, [])
    t = watermark_test(lookup_suspect(scores), rec, 4)
    assert t.extra["method"] == "rank" and t.extra["ranks"].tolist() == [1, 1, 3, 3, 2]
    assert t.extra["rank_sum"] == 10 and (t.k, t.n) == (2, 5) and t.p0 == 1 / 3
    assert t.p_value == pytest.approx(brute_rank_cdf(10, 5, 3), rel=1e-12, abs=0)
    assert rank_test_p(np.array([1, 1, 3, 3, 2]), 4) == t.p_value
    forced = watermark_test(lookup_suspect(scores), rec, 4, method="rank")
    assert forced.extra["method"] == "rank" and forced.p_value == t.p_value
    # Method names read from a config or a command line are not interned: compared by value.
    built = watermark_test(lookup_suspect(scores), rec, 4, method="".join(["au", "to"]))
    assert built.extra["method"] == "rank"
    with pytest.raises(ConfigurationError, match="at least 3 classes"):
        watermark_test(lookup_suspect(one_hot([1] * 6, 2)), record(5, [1] * 5, [0] * 5, [0]), 2, method="".join(["ra", "nk"]))
    labels_only = watermark_test(lookup_suspect(one_hot(scores.argmax(1).tolist(), 4)), rec, 4, method="".join(["ra", "nk"]))
    assert labels_only.extra["method"] == "rank"  # asked for by name, even on one-hot answers
    # The stated null is part of the evidence: it names the right class counts and the observed sum.
    assert "uniform over the 3 classes other than the owner's label" in t.null and "uniform on 1..3," in t.null
    assert "sum to at most the observed 10 (k = 2 of n = 5 cells" in t.null and "account 'a'" in t.null
    # Three classes is the smallest task the rank test is defined for.
    three = watermark_test(lookup_suspect(scores[:, :3] / scores[:, :3].sum(1, keepdims=True)),
                           record(5, [1, 2, 2, 1, 2], [0] * 5, []), 3, method="rank")
    assert three.extra["method"] == "rank" and three.p0 == 0.5
    # Graded scores, but the label-only test asked for: the conditional test, on 3 classes too.
    cond = watermark_test(lookup_suspect(scores), rec, 4, method="conditional")
    assert cond.extra["method"] == "conditional" and (cond.k, cond.n) == (0, 1)  # only row 3 leaves our label
    cond3 = watermark_test(lookup_suspect(scores[:, :3] / scores[:, :3].sum(1, keepdims=True)),
                           record(5, [1, 2, 2, 1, 2], [0] * 5, []), 3, method="conditional")
    assert cond3.extra["method"] == "conditional" and cond3.p0 == 0.5 and "Binomial(n, 1/2)" in cond3.null
    with pytest.raises(ConfigurationError, match="at least 3 classes"):
        watermark_test(lookup_suspect(one_hot([1] * 6, 2)), record(5, [1] * 5, [0] * 5, [0]), 2, method="rank")


def test_rank_sum_cdf_edges_and_far_tail() -> None:
    for n, m in ((1, 2), (2, 3), (4, 3), (3, 5)):
        for s in range(0, n * m + 2):
            assert uniform_rank_sum_cdf(s, n, m) == pytest.approx(brute_rank_cdf(s, n, m), rel=1e-12, abs=0), (s, n, m)
    assert uniform_rank_sum_cdf(0, 0, 9) == 1.0
    for n, m in ((2, 3), (4, 3), (5, 9)):  # exactly 1 at and above the largest sum: no evidence, p = 1
        assert uniform_rank_sum_cdf(n * m, n, m) == 1.0 and uniform_rank_sum_cdf(n * m + 3, n, m) == 1.0
    assert uniform_rank_sum_cdf(239, 60, 4) == 1.0  # 1 - 4**-60 rounds to 1 + 9e-16 before the clamp: a p-value, at most 1
    assert uniform_rank_sum_cdf(300, 300, 9) == pytest.approx(9.0**-300, rel=1e-9, abs=0)
    assert uniform_rank_sum_cdf(1000, 1000, 9) == TINY_P  # below the double range: reported as the bound, never 0


def test_keyed_label_ranks_and_graded() -> None:
    scores = np.array([[0.5, 0.2, 0.2, 0.1], [0.1, 0.6, 0.3, 0.0], [0.0, 0.0, 0.0, 1.0], [0.1, 0.2, 0.3, 0.4]])
    owner, keyed = np.array([0, 1, 3, 0]), np.array([1, 2, 0, 3])
    assert keyed_label_ranks(scores, owner, keyed).tolist() == [2, 1, 3, 1]
    assert not graded(scores, owner) and not graded(scores[:0], owner[:0])
    assert graded(scores[1:2], owner[1:2]) and graded(scores[3:], owner[3:])
    assert not graded(np.array([[0.5, 0.25, 0.25, 0.0]]), np.array([3]))  # a tie among the non-owner classes
    assert not graded(np.array([[0.5, np.nan, 0.2, 0.1]]), np.array([0]))  # a score that ranks nothing
    assert graded(np.array([[0.3, 0.3, 0.25, 0.15]]), np.array([0]))  # the owner's own score may tie: it is not ranked


# -- the two-class test: control-bound, plus beta ------------------------------------------------
def two_class_case(beta: float) -> tuple[OwnershipResult, int, int, int, int]:
    n, n_ctl = 20, 30
    served = [1] * n  # the keyed label of a two-class task is the other class
    owner = [0] * n
    answers = [1] * 14 + [0] * 6  # k = 14 marked rows carry the keyed label
    ctl_owner = [0] * 15 + [1] * 15
    ctl_answers = [1] + [0] * 14 + [0] + [1] * 14  # the suspect disagrees with us on 2 control rows, one each way
    rec = record(n, served, owner, ctl_owner)
    t = watermark_test(lookup_suspect(one_hot(answers + ctl_answers, 2)), rec, 2, beta=beta)
    return t, 14, n, 2, n_ctl


@pytest.mark.parametrize("beta", [DEFAULT_BETA, 1e-3])
def test_two_class_p_value_adds_beta_to_the_control_bounded_tail(beta: float) -> None:
    t, k, n, cd, n_ctl = two_class_case(beta)
    d_hi = cp_upper(cd, n_ctl, beta)
    assert t.extra["method"] == "control-bound" and t.extra["beta"] == beta
    assert (t.k, t.n) == (k, n) and t.p0 == pytest.approx(d_hi, rel=1e-9, abs=0)
    assert t.p_value == pytest.approx(exact_tail(k, n, d_hi) + beta, rel=1e-9, abs=0)
    assert t.p_value >= beta  # the union bound: never below the bound's own miss probability
    assert t.extra["control_rows_disagreeing"] == cd
    one = watermark_test(lookup_suspect(one_hot([1] * 20 + [1], 2)), record(20, [1] * 20, [0] * 20, [0]), 2, beta=beta)
    assert one.extra["control_rows"] == 1 and one.extra["control_rows_disagreeing"] == 1  # a single control row counts
    assert f"bounded by {d_hi:.4g} (Clopper-Pearson upper bound on the control rows, miss probability {beta:g}" in t.null


def test_two_class_test_needs_control_rows_and_caps_p_at_one() -> None:
    rec = record(4, [1] * 4, [0] * 4, [])
    with pytest.raises(ConfigurationError, match="needs control rows"):
        watermark_test(lookup_suspect(one_hot([1] * 4, 2)), rec, 2)
    rec = record(4, [1] * 4, [0] * 4, [0, 0])
    t = watermark_test(lookup_suspect(one_hot([0] * 6, 2)), rec, 2, beta=0.5)
    assert t.k == 0 and t.p_value == 1.0


def test_clopper_pearson_and_binomial_tail_edges() -> None:
    assert clopper_pearson_upper(0, 0, 0.05) == 1.0 and clopper_pearson_upper(5, 5, 0.05) == 1.0
    assert clopper_pearson_upper(0, 10, 0.05) == pytest.approx(1 - 0.05 ** (1 / 10), rel=1e-9, abs=0)
    assert clopper_pearson_upper(0, 1, 0.05) == pytest.approx(0.95, rel=1e-12, abs=0)
    assert clopper_pearson_upper(int("300"), int("300"), 0.05) == 1.0  # two distinct int objects: compared by value
    assert clopper_pearson_upper(3, 40, 1e-6) == pytest.approx(cp_upper(3, 40, 1e-6), rel=1e-9, abs=0)
    assert binomial_tail(0, 10, 0.1) == 1.0 and binomial_tail(3, 0, 0.1) == 1.0 and binomial_tail(3, 5, 1.0) == 1.0
    assert binomial_tail(1, 1, 0.25) == pytest.approx(0.25, rel=1e-12, abs=0)
    assert binomial_tail(4, 9, 0.3) == pytest.approx(exact_tail(4, 9, 0.3), rel=1e-12, abs=0)
    assert binomial_tail(2000, 2000, 0.01) == TINY_P  # underflow: the bound, never 0


# -- the verdict ---------------------------------------------------------------------------------
def result(p: float, name: str = "watermark", account: str | None = "a") -> OwnershipResult:
    z = np.zeros((0, 1))
    return OwnershipResult(name, account, "H0", 1, 1, 0.5, p, z, z[:, 0], z[:, 0])


def test_verdict_is_bonferroni_corrected_and_strict() -> None:
    v = Verdict([result(4e-7, account="x"), result(1e-3, account="y"), result(0.9, "fingerprint", None)], alpha=1e-6)
    assert v.corrected == pytest.approx([1.2e-6, 3e-3, 1.0], rel=1e-12, abs=0)
    assert v.p_value == pytest.approx(1.2e-6, rel=1e-12, abs=0) and not v.is_copy
    assert v.strongest is v.tests[0]
    assert v.describe().startswith("NOT SHOWN TO BE A COPY: smallest corrected p = 1.2e-06 >= alpha = 1e-06")
    v2 = Verdict([result(1e-7, account="x"), result(1e-3, account="y")], alpha=1e-6)
    assert v2.p_value == pytest.approx(2e-7, rel=1e-12, abs=0) and v2.is_copy
    assert v2.describe() == "COPY: the watermark test (account 'x') rejects independence, p = 2e-07 (Bonferroni over 2 tests) < alpha = 1e-06"
    edge = Verdict([result(5e-7)], alpha=5e-7)
    assert not edge.is_copy  # p equal to alpha does not accuse
    empty = Verdict([], alpha=0.05)
    assert empty.p_value == 1.0 and not empty.is_copy and empty.strongest is None and empty.describe() == "no tests were run"
    r = result(0.25)
    r.extra.update(method="rank", ranks=np.array([1, 2]), answered_at="t", listed=[1])
    assert r.summary() == {"name": "watermark", "account": "a", "n": 1, "k": 1, "p0": 0.5, "p_value": 0.25,
                           "method": "rank", "answered_at": "t"}  # arrays and lists stay out of the summary
    fp = Verdict([result(1e-9, "fingerprint", None), result(0.5)], alpha=1e-6)
    assert fp.describe() == "COPY: the fingerprint test rejects independence, p = 2e-09 (Bonferroni over 2 tests) < alpha = 1e-06"


def test_verify_suspect_runs_one_test_per_account_and_checks_its_inputs() -> None:
    good = record(12, COND_SERVED, COND_OWNER, [0, 0], account="mallory")
    other = record(12, [2, 3, 1] * 4, COND_OWNER, [0, 0], account="honest")
    suspect = lookup_suspect(one_hot(COND_ANSWERS + [0, 3], 4))
    v = verify_suspect(suspect, [good, other], alpha=0.5)
    assert [t.account for t in v.tests] == ["mallory", "honest"] and v.alpha == 0.5
    assert v.tests[0].p_value == watermark_test(suspect, good, 4).p_value
    with pytest.raises(ConfigurationError, match="alpha must be in"):
        verify_suspect(suspect, [good], alpha=1.0)
    with pytest.raises(ConfigurationError, match="alpha must be in"):
        verify_suspect(suspect, [good], alpha=0.0)
    with pytest.raises(ConfigurationError, match="alpha must be in"):
        verify_suspect(suspect, [good], alpha=1.5)
    with pytest.raises(ConfigurationError, match="alpha must be in"):
        verify_suspect(suspect, [good], alpha=-0.1)
    with pytest.raises(ConfigurationError, match="nothing to test"):
        verify_suspect(suspect, [])
    with pytest.raises(ConfigurationError, match="unknown watermark test method"):
        verify_suspect(suspect, [good], method="exact")
    wide = AccountRecord("w", np.zeros((2, 3)), np.array([1, 1]), np.array([0, 0]), np.zeros((0, 3)), np.zeros(0, int), None, None)
    with pytest.raises(ConfigurationError, match="3 features per row, the suspect takes 1"):
        verify_suspect(suspect, [wide])
    empty = AccountRecord("e", np.zeros((0, 5)), np.zeros(0, int), np.zeros(0, int), np.zeros((0, 5)), np.zeros(0, int), None, None)
    with pytest.raises(ConfigurationError, match="no watermarked answers"):
        verify_suspect(suspect, [empty])


def test_fingerprint_test_is_a_binomial_tail_over_the_calibrated_null() -> None:
    from extractguard.verify import Fingerprint

    labels = np.array([0, 1, 2, 3] * 5)
    X = np.arange(20, dtype=np.float64)[:, None]
    answers = labels.copy()
    answers[:3] = (answers[:3] + 1) % 4  # agrees on 17 of 20
    fp = Fingerprint(X, labels, 0.05)
    fp.p0, fp.reference_agreements = 0.4, [5, 8]
    t = verify_suspect(lookup_suspect(one_hot(answers.tolist(), 4)), fingerprint=fp).tests[0]
    assert t.name == "fingerprint" and t.account is None and (t.k, t.n) == (17, 20) and t.p0 == 0.4
    assert t.p_value == pytest.approx(exact_tail(17, 20, 0.4), rel=1e-12, abs=0)
    assert t.extra["reference_agreements"] == [5, 8] and t.extra["confidence"] == 0.95
    assert "probability at most 0.4 (upper 95% Clopper-Pearson bound of the best of 2 independently" in t.null
    assert t.expected.tolist() == labels.tolist() and t.answers.tolist() == answers.tolist()
    with pytest.raises(ConfigurationError, match="not calibrated"):
        verify_suspect(lookup_suspect(one_hot(answers.tolist(), 4)), fingerprint=Fingerprint(X, labels, 0.05))
    wide = Fingerprint(np.zeros((2, 3)), np.array([0, 1]), 0.05)
    wide.p0 = 0.5
    with pytest.raises(ConfigurationError, match="the fingerprint has 3 features per row"):
        verify_suspect(lookup_suspect(one_hot(answers.tolist(), 4)), fingerprint=wide)
    # Wide inputs (more features than Python caches small ints for) are compared by value.
    big = CallableTarget(lambda Z: one_hot([i % 4 for i in range(len(Z))], 4), InputSchema((300,), 4))
    big_fp = Fingerprint(np.zeros((8, 300)), np.array([i % 4 for i in range(8)]), 0.05)
    big_fp.p0, big_fp.reference_agreements = 0.5, [4]
    big_rec = AccountRecord("b", np.zeros((4, 300)), np.array([1, 2, 3, 1]), np.zeros(4, int), np.zeros((0, 300)),
                            np.zeros(0, int), None, None)
    assert [t.name for t in verify_suspect(big, [big_rec], fingerprint=big_fp).tests] == ["watermark", "fingerprint"]
    wide_suspect = CallableTarget(lambda Z: np.full((len(Z), 4), 0.25), InputSchema((5,), 4))
    with pytest.raises(ConfigurationError, match="the fingerprint has 1 features per row, the suspect takes 5"):
        verify_suspect(wide_suspect, fingerprint=fp)
    with pytest.raises(ConfigurationError, match="account 'a''s watermarked inputs have 1 features per row, the suspect takes 5"):
        verify_suspect(wide_suspect, [record(2, [1, 2], [0, 0], [])])
