"""Learning-based attacks: Knockoff adaptive, ActiveThief, Jacobian augmentation, surrogate selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from extractguard.attacks import (
    ATTACKS,
    ActiveThief,
    ActiveThiefDFAL,
    JacobianAugmentation,
    KnockoffAdaptive,
    create_attack,
)
from extractguard.attacks._gradients import class_gradients, deepfool_distances
from extractguard.attacks.active_learning import entropy_scores, kcenter_greedy
from extractguard.attacks.knockoff_adaptive import parse_rewards
from extractguard.errors import ConfigurationError, ExtractGuardError
from extractguard.evaluate import ProbeSet
from extractguard.oracle import OutputSpec
from extractguard.oracle.schema import InputSchema
from extractguard.surrogates import SelectedSurrogate, make_surrogate, select_surrogate
from extractguard.victims import build_victim
from extractguard.victims.pools import structured_pool

LEARNING = ("knockoff-adaptive", "activethief-entropy", "activethief-kcenter", "activethief-dfal", "jbda")
MODES = ("probabilities", "logits", "rounded:1", "top-2", "label")
#: Small, fast settings per attack so a run of 100 queries takes two or three student fits.
#: ActiveThief's grown student gets the from-scratch step floor (200): the ``linear`` student
#: these tests use underfits with the grown default of 150 (entropy, label mode: 0.58).
FAST: dict[str, dict] = {
    "knockoff-adaptive": {"n_arms": 8, "retrain_every": 0.5},
    "activethief-entropy": {"initial": 50, "per_round": 50, "train_steps": 200},
    "activethief-kcenter": {"initial": 50, "per_round": 50, "train_steps": 200},
    "activethief-dfal": {"initial": 50, "per_round": 50, "max_candidates": 200, "train_steps": 200},
    "jbda": {"seed_size": 60, "per_round": 40},
}


@pytest.fixture(scope="module")
def probe(victim):
    return ProbeSet.from_target(victim.target, *victim.probe())


def queried(attack) -> np.ndarray:
    return np.concatenate(attack._X)


# -- registry and parameter errors ------------------------------------------------------------
def test_registry_has_every_learning_attack(victim) -> None:
    for name in (*LEARNING, "activethief"):
        assert name in ATTACKS
        attack = create_attack(name, pool=victim.pool(), surrogate="linear")
        assert attack.name == name and attack.paper
    assert create_attack("activethief", pool=victim.pool(), strategy="kcenter").strategy == "kcenter"
    # the per-strategy names pin the strategy
    assert create_attack("activethief-dfal", pool=victim.pool(), strategy="entropy").strategy == "dfal"
    with pytest.raises(ConfigurationError, match="needs attacker data"):
        create_attack("jbda")


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("knockoff-adaptive", {"reward": "luck"}, "unknown Knockoff reward"),
        ("knockoff-adaptive", {"lr": 0.0}, "step size"),
        ("knockoff-adaptive", {"n_arms": 0}, "at least 1"),
        ("activethief", {"strategy": "bald"}, "unknown active-learning strategy"),
        ("activethief", {"max_candidates": 0}, "max_candidates"),
        ("jbda", {"lam": -0.1}, "lam must be positive"),
        ("jbda", {"tau": 0}, "tau"),
    ],
)
def test_bad_parameters_are_one_line_errors(victim, name, params, message) -> None:
    with pytest.raises(ConfigurationError, match=message):
        create_attack(name, pool=victim.pool(), **params)


def test_bad_round_sizes_and_pool_labels_fail_at_fit(victim) -> None:
    with pytest.raises(ConfigurationError, match="fractional round size"):
        ActiveThief(victim.pool(), initial=1.5, surrogate="linear").fit(victim.oracle(budget=50))
    with pytest.raises(ConfigurationError, match="pool_labels has 3 entries"):
        KnockoffAdaptive(victim.pool(), pool_labels=np.array([0, 1, 2]), surrogate="linear").fit(victim.oracle(budget=50))
    with pytest.raises(ExtractGuardError):  # rows of the wrong width are rejected by the schema
        JacobianAugmentation(np.zeros((10, 3)), surrogate="linear").fit(victim.oracle(budget=50))


def test_reward_parsing() -> None:
    assert parse_rewards("all") == ("certainty", "diversity", "loss")
    assert parse_rewards("Diversity + loss") == ("diversity", "loss")
    with pytest.raises(ConfigurationError):
        parse_rewards("")


# -- all output modes, and the budget contract in each --------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", (*LEARNING, "knockoff"))
def test_pool_attacks_work_in_every_output_mode(victim, probe, name, mode) -> None:
    """Each attack copies a 10-class victim well above chance (0.1) whatever the API reveals,
    and every row it sends (seed, augmented, selected) counts against the budget."""
    oracle = victim.oracle(OutputSpec.parse(mode), budget=100)
    attack = create_attack(name, pool=victim.pool(), surrogate="linear", seed=0, batch_size=40, **FAST.get(name, {}))
    attack.fit(oracle)
    assert oracle.queries_used == attack.queries_ == 100 == len(queried(attack))
    X = queried(attack)
    assert X.min() >= 0 and X.max() <= 16  # the schema's documented bounds
    fidelity = probe.score(attack.surrogate_)["fidelity"]
    assert fidelity >= 0.6, f"{name} in {mode}: fidelity {fidelity:.3f}"


@pytest.mark.parametrize("mode", MODES)
def test_random_queries_work_in_every_output_mode(mode) -> None:
    """Uniform noise copies a low-dimensional victim (iris) above chance (1/3) in every mode."""
    iris = build_victim("iris-logreg", seed=0)
    attack = create_attack("random", surrogate="linear", seed=0).fit(iris.oracle(OutputSpec.parse(mode), budget=200))
    fidelity = ProbeSet.from_target(iris.target, *iris.probe()).score(attack.surrogate_)["fidelity"]
    assert fidelity >= 0.5, f"random in {mode}: fidelity {fidelity:.3f}"


# -- Knockoff adaptive -------------------------------------------------------------------------
def test_knockoff_adaptive_learns_to_prefer_on_task_arms(victim) -> None:
    """With source tags as arms, the bandit spends well over the pool's on-task share on natural rows."""
    pool, source = structured_pool(victim.pool(), victim.schema, 3.0, seed=0)
    base_share = float(np.mean(source == "natural"))  # 0.25
    attack = KnockoffAdaptive(pool, pool_labels=source, reward="certainty+diversity", surrogate="linear", seed=0)
    attack.fit(victim.oracle(budget=300))
    assert attack.arm_pulls_.sum() == 300 and len(attack.preferences_) == len(set(source))
    natural = {r.tobytes() for r in pool[source == "natural"]}
    late = queried(attack)[150:]  # after the policy had time to learn
    share = np.mean([r.tobytes() in natural for r in late])
    assert share > base_share + 0.2, f"on-task share {share:.2f} vs pool {base_share:.2f}"
    arms = sorted(set(source))
    assert int(np.argmax(attack.preferences_)) == arms.index("natural")
    assert abs(attack.policy().sum() - 1.0) < 1e-9


def test_knockoff_adaptive_never_repeats_a_row_and_masks_exhausted_arms(victim) -> None:
    pool = victim.pool()[:90]
    attack = KnockoffAdaptive(pool, n_arms=5, surrogate="linear", seed=3, retrain_every=30)
    attack.fit(victim.oracle(budget=200), checkpoints=[50, 200])
    assert [c.queries for c in attack.checkpoints_] == [50, 90]
    assert len(np.unique(queried(attack), axis=0)) == len(np.unique(pool, axis=0))
    assert attack.policy().sum() == 0  # every arm exhausted


def test_knockoff_adaptive_is_deterministic(victim, probe) -> None:
    runs = [KnockoffAdaptive(victim.pool(), n_arms=6, surrogate="linear", seed=5, retrain_every=30)
            .fit(victim.oracle(budget=60)) for _ in range(2)]
    assert np.array_equal(queried(runs[0]), queried(runs[1]))
    assert probe.score(runs[0].surrogate_) == probe.score(runs[1].surrogate_)


# -- ActiveThief -------------------------------------------------------------------------------
def test_entropy_and_kcenter_helpers() -> None:
    p = np.array([[1.0, 0.0], [0.5, 0.5], [0.9, 0.1]])
    assert np.argsort(-entropy_scores(p))[0] == 1 and entropy_scores(p)[0] < 1e-9
    # k-center takes the candidate farthest from the centers, then the farthest from that too
    cand = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [-3.0, 0.0]])
    chosen = kcenter_greedy(cand, centers=np.array([[0.0, 0.0]]), k=2)
    assert chosen.tolist() == [2, 3]
    assert kcenter_greedy(cand, centers=np.empty((0, 2)), k=10).shape == (4,)


def test_activethief_rounds_and_no_repeats(victim) -> None:
    attack = ActiveThief(victim.pool(), strategy="kcenter", initial=40, per_round=30, surrogate="linear", seed=0)
    attack.fit(victim.oracle(budget=160), checkpoints=[70, 160])
    assert attack.rounds_ == 1 + 4  # 40 + 30*4 = 160
    assert [c.queries for c in attack.checkpoints_] == [70, 160]
    X = queried(attack)
    assert len(np.unique(X, axis=0)) == len(X) == 160


def test_warm_start_continues_the_same_network(victim) -> None:
    """A warm fit keeps the network (and its input scaling) and trains it further."""
    X = np.asarray(victim.pool()[:120], dtype=np.float64)
    y = victim.oracle().query(X).soft_labels()
    student = make_surrogate("mlp", victim.schema, seed=0)
    student.warm_start = True
    student.fit(X[:60], y[:60], n_steps=30)
    first, scale = student.module_, student.module_[0].mean.clone()
    before = student.predict_proba(X[60:])
    student.fit(X, y, n_steps=30)
    assert student.module_ is first and torch.equal(student.module_[0].mean, scale)
    assert student.n_fits_ == 2 and student.n_steps_ == 30
    assert not np.allclose(before, student.predict_proba(X[60:]))
    cold = make_surrogate("mlp", victim.schema, seed=0).fit(X[:60], y[:60], n_steps=30)
    cold.fit(X, y, n_steps=30)
    assert cold.n_fits_ == 1  # warm_start=False: every fit starts over
    with pytest.raises(ConfigurationError, match="n_steps"):
        cold.fit(X, y, n_steps=0)


def test_incremental_activethief_spends_one_fit_over_its_rounds(victim, probe) -> None:
    """The grown student takes train_fraction of one from-scratch fit in all, not one per round,
    and each checkpoint's copy is a snapshot that later rounds do not change."""
    attack = ActiveThief(victim.pool(), strategy="kcenter", initial=40, per_round=40, surrogate="mlp", seed=0)
    attack.fit(victim.oracle(budget=200), checkpoints=[80, 200])
    assert attack.rounds_ == 5
    # default: the epoch schedule for 200 rows (80 steps) raised to the grown floor of 150,
    # split 30 steps per round of 40 rows
    assert attack.train_steps_ == 150 < make_surrogate("mlp", victim.schema).schedule_steps(200)
    first, last = attack.checkpoints_[0].surrogate, attack.checkpoints_[1].surrogate
    assert first is not last and last.n_fits_ == attack.rounds_
    # the early copy was topped up (one more warm fit) to a full run's 150 steps for its 80 rows
    assert first.n_fits_ == 3 and first.n_steps_ == 150 - 2 * 30
    assert probe.score(first)["fidelity"] > 0.8
    assert probe.score(last)["fidelity"] > 0.85
    fresh = ActiveThief(victim.pool(), strategy="kcenter", initial=40, per_round=40, surrogate="mlp",
                        incremental=False, seed=0).fit(victim.oracle(budget=200))
    assert fresh.surrogate_.n_fits_ == 1 and fresh.train_steps_ == 0


def test_activethief_entropy_picks_uncertain_rows(victim) -> None:
    """Rows chosen after the seed round are less certain (for the student) than random pool rows."""
    attack = ActiveThief(victim.pool(), strategy="entropy", initial=60, per_round=60, surrogate="linear", seed=0)
    attack.fit(victim.oracle(budget=120))
    X = queried(attack)
    student = make_surrogate("linear", victim.schema, seed=0).fit(X[:60], np.concatenate(attack._Y)[:60])
    chosen = entropy_scores(student.predict_proba(X[60:])).mean()
    others = entropy_scores(student.predict_proba(victim.pool())).mean()
    assert chosen > others


class _Linear:
    """A bare torch 'surrogate' with known weights, to check DeepFool against geometry."""

    def __init__(self, w: np.ndarray, b: np.ndarray) -> None:
        self.input_shape = (w.shape[1],)
        self.module_ = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.module_.weight.copy_(torch.from_numpy(w.astype(np.float32)))
            self.module_.bias.copy_(torch.from_numpy(b.astype(np.float32)))


def test_deepfool_distance_is_the_distance_to_a_linear_boundary() -> None:
    # logits z0 = 0, z1 = x0 + x1 - 1: the boundary is x0 + x1 = 1, distance |x0 + x1 - 1| / sqrt(2)
    model = _Linear(np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([0.0, -1.0]))
    X = np.array([[0.0, 0.0], [0.2, 0.3], [0.9, 0.9], [0.45, 0.5]])
    d = deepfool_distances(model, X, np.full(2, -5.0), np.full(2, 5.0))
    expected = np.abs(X.sum(axis=1) - 1.0) / np.sqrt(2.0)
    assert np.allclose(d, expected, rtol=0.05, atol=1e-3)
    # a boundary outside the documented domain is never reached
    far = deepfool_distances(model, np.array([[0.0, 0.0]]), np.full(2, 0.0), np.full(2, 0.4))
    assert np.isinf(far[0])


def test_dfal_queries_rows_nearer_the_boundary_than_random(victim) -> None:
    attack = ActiveThiefDFAL(victim.pool(), initial=60, per_round=60, max_candidates=300, surrogate="linear", seed=0)
    attack.fit(victim.oracle(budget=120))
    X = queried(attack)
    student = make_surrogate("linear", victim.schema, seed=0).fit(X[:60], np.concatenate(attack._Y)[:60])
    low, high = np.asarray(victim.schema.low), np.asarray(victim.schema.high)
    rng = np.random.default_rng(0)
    others = victim.pool()[rng.choice(len(victim.pool()), 60, replace=False)]
    chosen_d = deepfool_distances(student, X[60:], low, high)
    other_d = deepfool_distances(student, others, low, high)
    assert np.median(chosen_d) < np.median(other_d)


# -- Jacobian augmentation ---------------------------------------------------------------------
def test_class_gradient_of_a_linear_softmax() -> None:
    model = _Linear(np.array([[0.0, 0.0], [1.0, -2.0]]), np.zeros(2))
    x = np.array([[0.0, 0.0]])
    g = class_gradients(model, x, np.array([1]))
    # d softmax_1 / dx at z = (0, 0) is p1 (1 - p1) * (w1 - w0) = 0.25 * (1, -2)
    assert np.allclose(g, [[0.25, -0.5]], atol=1e-6)


def test_jbda_augments_from_the_seed_set_with_lambda_steps(victim) -> None:
    pool = victim.pool().astype(np.float64)  # queries travel as float64 rows
    attack = JacobianAugmentation(pool, seed_size=30, per_round=30, lam=0.1, tau=1, surrogate="linear", seed=0)
    attack.fit(victim.oracle(budget=120))
    X = queried(attack)
    assert attack.rounds_ == 3 and X.shape == (120, 64)
    pool_rows = {r.tobytes() for r in pool}
    assert all(r.tobytes() in pool_rows for r in X[:30])  # the seed set is natural data
    step = 0.1 * 16
    for lo, hi in ((30, 60), (60, 90), (90, 120)):
        earlier = X[:lo]
        for r in X[lo:hi]:
            # each new point is one lambda step (per coordinate, or clipped) from an earlier query
            diff = np.abs(earlier - r).max(axis=1)
            assert diff.min() <= step + 1e-9
    assert not all(r.tobytes() in pool_rows for r in X[30:])
    assert X.min() >= 0 and X.max() <= 16


# -- architecture selection --------------------------------------------------------------------
def test_select_surrogate_picks_the_family_that_fits_the_transcript() -> None:
    rng = np.random.default_rng(0)
    schema = InputSchema((2,), 2, low=0.0, high=1.0)
    X = rng.uniform(0, 1, size=(300, 2))
    checker = ((X[:, 0] > 0.5) ^ (X[:, 1] > 0.5)).astype(np.int64)  # axis-aligned XOR: a tree's shape
    res = select_surrogate(X, checker, schema, seed=0, candidates=("linear", "tree"))
    assert res.choice == "tree" and res.scores["tree"] > res.scores["linear"] + 0.2 and res.folds == 3
    # an oblique hyperplane in 40 dimensions: a tree needs many cells, a linear student one plane
    rng = np.random.default_rng(1)
    schema40 = InputSchema((40,), 2, low=-1.0, high=1.0)
    X40 = rng.uniform(-1, 1, size=(300, 40))
    oblique = (X40 @ rng.normal(size=40) > 0).astype(np.int64)
    res = select_surrogate(X40, np.eye(2)[oblique], schema40, seed=0, candidates=("linear", "tree"))
    assert res.choice == "linear" and res.scores["linear"] > res.scores["tree"]
    with pytest.raises(ConfigurationError, match="concrete families"):
        select_surrogate(X, oblique, schema, candidates=("auto",))


def test_surrogate_select_in_an_attack_reports_the_winner(victim, probe) -> None:
    assert isinstance(make_surrogate("select", victim.schema), SelectedSurrogate)
    attack = create_attack("knockoff", pool=victim.pool(), surrogate="select", seed=0)
    attack.fit(victim.oracle(budget=60))
    chosen = attack.params()["surrogate_selected"]
    assert chosen["choice"] in chosen["cv_fidelity"] and chosen["folds"] == 3
    assert chosen["cv_fidelity"][chosen["choice"]] == max(chosen["cv_fidelity"].values())
    assert probe.score(attack.surrogate_)["fidelity"] >= 0.6
