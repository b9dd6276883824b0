"""Output defenses: simplex, argmax, determinism, budgets, OOD behaviour, configuration errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from extractguard.attacks import create_attack
from extractguard.defenses import (
    DEFENSES,
    MAD,
    AdaptiveMisinformation,
    DefenseChain,
    GaussianNoise,
    ReverseSigmoid,
    Temperature,
    build_chain,
)
from extractguard.defenses.simplex import restore_argmax
from extractguard.errors import ConfigurationError, ExtractGuardError
from extractguard.evaluate import evaluate_defense, expected_calibration_error
from extractguard.oracle import MemoryTranscript, Oracle, OutputSpec
from extractguard.serving import ServingPipeline
from extractguard.victims import build_victim


PROBS = OutputSpec("probabilities")


@pytest.fixture(scope="module")
def digits():
    """digits-mlp: small, and confidently in-distribution on its own data but not on noise."""
    v = build_victim("digits-mlp", seed=0)
    X_probe, y_probe = v.probe()
    owner = v.schema.validate(v.dataset.X[v.splits.train])
    return v, owner, v.schema.validate(X_probe), y_probe


@pytest.fixture(scope="module")
def fitted(digits):
    v, owner, _, _ = digits
    return {
        "mad": MAD(epsilon=0.5, student_steps=150).fit(v.target, owner),
        "mad_argmax": MAD(epsilon=1.0, argmax=True, student_steps=150).fit(v.target, owner),
        "am": AdaptiveMisinformation(tau=0.5, nu=50.0, misinformation_steps=150).fit(v.target, owner),
    }


def _all_defenses(fitted) -> dict[str, object]:
    return {
        "temperature": Temperature(3.0),
        "noise_p": GaussianNoise(sigma=0.2),
        "noise_logits_keep": GaussianNoise(sigma=2.0, space="logits", keep_argmax=True),
        "noise_p_keep": GaussianNoise(sigma=0.3, keep_argmax=True),
        "reverse_sigmoid": ReverseSigmoid(beta=0.7, gamma=3.0),
        **fitted,
    }


def _victim_probs(digits):
    v, _, X, _ = digits
    return X, v.target.predict(X).probabilities


def test_every_defense_is_registered():
    assert {"temperature", "gaussian-noise", "reverse-sigmoid", "mad", "adaptive-misinformation"} <= set(DEFENSES)


@pytest.mark.parametrize("key", ["temperature", "noise_p", "noise_logits_keep", "noise_p_keep", "reverse_sigmoid", "mad", "mad_argmax", "am"])
def test_rows_stay_on_the_simplex_with_the_same_shape(digits, fitted, key):
    X, p = _victim_probs(digits)
    d = _all_defenses(fitted)[key]
    q = d.apply(p, X, np.random.default_rng(1))
    assert q.shape == p.shape
    assert np.all(np.isfinite(q)) and np.all(q >= 0)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-9)
    assert not np.allclose(q, p)  # every defense here changes the answers


@pytest.mark.parametrize("key", ["temperature", "noise_logits_keep", "noise_p_keep", "reverse_sigmoid", "mad_argmax"])
def test_argmax_preserving_defenses_keep_the_label_exactly(digits, fitted, key):
    X, p = _victim_probs(digits)
    q = _all_defenses(fitted)[key].apply(p, X, np.random.default_rng(2))
    np.testing.assert_array_equal(q.argmax(axis=1), p.argmax(axis=1))


def test_unconstrained_noise_and_mad_do_flip_some_labels(digits, fitted):
    X, p = _victim_probs(digits)
    noisy = GaussianNoise(sigma=0.3).apply(p, X, np.random.default_rng(0))
    assert np.mean(noisy.argmax(1) != p.argmax(1)) > 0.05
    big = MAD(epsilon=2.0)
    big.student_ = fitted["mad"].student_
    assert np.mean(big.apply(p, X, np.random.default_rng(0)).argmax(1) != p.argmax(1)) > 0.05


def test_restore_argmax_handles_swaps_and_ties():
    p = np.array([[0.2, 0.5, 0.3], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    q = restore_argmax(p, np.array([0, 1, 2]))
    np.testing.assert_array_equal(q.argmax(axis=1), [0, 1, 2])
    np.testing.assert_allclose(q.sum(axis=1), 1.0)
    np.testing.assert_allclose(q[0], [0.5, 0.2, 0.3])


@pytest.mark.parametrize("key", ["noise_p", "noise_logits_keep", "reverse_sigmoid", "mad", "am"])
def test_seeded_rng_gives_identical_answers(digits, fitted, key):
    X, p = _victim_probs(digits)
    d = _all_defenses(fitted)[key]
    a = d.apply(p, X, np.random.default_rng(7))
    b = d.apply(p, X, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


def test_noise_differs_across_seeds(digits):
    X, p = _victim_probs(digits)
    d = GaussianNoise(sigma=0.1)
    assert not np.allclose(d.apply(p, X, np.random.default_rng(1)), d.apply(p, X, np.random.default_rng(2)))


def test_defended_target_is_reproducible_and_fitting_is_deterministic(digits):
    v, owner, X, _ = digits
    runs = []
    for _ in range(2):
        chain = build_chain([{"name": "mad", "epsilon": 0.4, "student_steps": 50}, {"name": "gaussian-noise", "sigma": 0.05}])
        chain.fit(v.target, owner)
        runs.append(ServingPipeline(v.target, PROBS, chain=chain, rng=np.random.default_rng(3)).answer("a", X, 0.0).probabilities)
    np.testing.assert_array_equal(runs[0], runs[1])


def test_chain_composes_in_order(digits):
    X, p = _victim_probs(digits)
    t, rs = Temperature(2.0), ReverseSigmoid(beta=0.3, gamma=1.5)
    rng = np.random.default_rng(0)
    chained = DefenseChain([t, rs]).apply(p, X, rng)
    by_hand = rs.apply(t.apply(p, X, rng), X, rng)
    np.testing.assert_allclose(chained, by_hand)
    assert not np.allclose(chained, DefenseChain([rs, t]).apply(p, X, rng))


@pytest.mark.parametrize("epsilon", [0.1, 0.5, 1.2])
@pytest.mark.parametrize("argmax", [False, True])
def test_mad_stays_within_its_l1_budget_and_uses_it(digits, fitted, epsilon, argmax):
    X, p = _victim_probs(digits)
    d = MAD(epsilon=epsilon, argmax=argmax)
    d.student_ = fitted["mad"].student_
    q = d.apply(p, X, np.random.default_rng(0))
    l1 = np.abs(q - p).sum(axis=1)
    assert l1.max() <= epsilon + 1e-9
    if not argmax:
        # Unconstrained MAD spends (nearly) its whole budget on almost every row.
        assert np.mean(l1 > 0.9 * epsilon) > 0.9


def _last_layer_gradient(student, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of the student's cross-entropy to ``y`` w.r.t. its last layer, by autograd."""
    module = student.module_
    last = [m for m in module.modules() if isinstance(m, torch.nn.Linear)][-1]
    xt = torch.from_numpy(x.astype(np.float32)).reshape(1, *student.input_shape)
    loss = -(torch.from_numpy(y.astype(np.float32)) * torch.log_softmax(module(xt), dim=1)).sum()
    gw, gb = torch.autograd.grad(loss, [last.weight, last.bias])
    return torch.cat([gw.reshape(-1), gb]).numpy().astype(np.float64)


def test_mad_turns_the_students_gradient_away(digits, fitted):
    """Checked with autograd on the stand-in student, independently of MAD's closed form."""
    X, p = _victim_probs(digits)
    mad = fitted["mad"]
    q = mad.apply(p, X, np.random.default_rng(0))
    noise = GaussianNoise(sigma=0.5, space="logits").apply(p, X, np.random.default_rng(0))
    cos_mad, cos_noise = [], []
    for i in range(40):
        g = _last_layer_gradient(mad.student_, X[i], p[i])
        gm = _last_layer_gradient(mad.student_, X[i], q[i])
        gn = _last_layer_gradient(mad.student_, X[i], noise[i])
        cos_mad.append(g @ gm / (np.linalg.norm(g) * np.linalg.norm(gm)))
        cos_noise.append(g @ gn / (np.linalg.norm(g) * np.linalg.norm(gn)))
    # MAD's gradients point well away from the true ones, far more than noise of similar size.
    assert np.median(cos_mad) < 0.0
    assert np.median(cos_mad) < np.median(cos_noise) - 0.3


def test_adaptive_misinformation_spares_in_distribution_and_hits_ood(digits, fitted):
    v, _, X_in, _ = digits
    am = fitted["am"]
    rng = np.random.default_rng(0)
    X_ood = rng.uniform(v.schema.low, v.schema.high, size=(300, v.schema.n_features))
    p_in, p_ood = v.target.predict(X_in).probabilities, v.target.predict(X_ood).probabilities
    l1_in = np.abs(am.apply(p_in, X_in, rng) - p_in).sum(axis=1)
    q_ood = am.apply(p_ood, X_ood, rng)
    l1_ood = np.abs(q_ood - p_ood).sum(axis=1)
    assert np.mean(l1_in < 0.05) > 0.85  # most honest queries are answered truthfully
    assert np.mean(l1_ood > 0.5) > 0.7  # most noise queries get misinformation
    # Misinformation is wrong on purpose: OOD answers mostly change label.
    assert np.mean(q_ood.argmax(1) != p_ood.argmax(1)) > 0.5


def test_misinformation_model_is_trained_to_be_wrong(digits, fitted):
    v, _, X, _ = digits
    wrong = fitted["am"].misinformation_.predict_proba(X)
    labels = v.target.predict(X).probabilities.argmax(1)
    assert wrong[np.arange(len(labels)), labels].mean() < 0.05


def test_build_chain_from_yaml_like_dicts(digits):
    import yaml

    specs = yaml.safe_load(
        """
        - name: temperature
          temperature: 2
        - name: reverse-sigmoid
          beta: 0.2
          gamma: 1e-1      # PyYAML reads this as a string
        - name: gaussian-noise
          sigma: 0.01
          space: logits
          keep_argmax: yes
        - {name: mad, epsilon: 0.3, argmax: "true", student_steps: 20}
        - {name: adaptive-misinformation, tau: 0.6, nu: 30, misinformation_steps: 20}
        """
    )
    chain = build_chain(specs)
    assert [d.name for d in chain.defenses] == ["temperature", "reverse-sigmoid", "gaussian-noise", "mad", "adaptive-misinformation"]
    assert chain.defenses[1].gamma == pytest.approx(0.1)
    assert chain.defenses[2].keep_argmax is True and chain.defenses[3].argmax is True
    described = chain.describe()
    assert described[3] == {"name": "mad", "epsilon": 0.3, "argmax": True, "student_steps": 20, "seed": 0}
    v, owner, X, _ = digits
    q = ServingPipeline(v.target, PROBS, chain=chain.fit(v.target, owner), rng=np.random.default_rng(0)).answer("a", X[:20], 0.0).probabilities
    np.testing.assert_allclose(q.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ({"name": "gaussian-noise", "sigma": 0}, "sigma must be > 0"),
        ({"name": "gaussian-noise", "sigma": "lots"}, "sigma must be a number"),
        ({"name": "gaussian-noise", "space": "pixels"}, "space must be one of"),
        ({"name": "gaussian-noise", "keep_argmax": "maybe"}, "keep_argmax must be true or false"),
        ({"name": "reverse-sigmoid", "beta": -1}, "beta must be > 0"),
        ({"name": "reverse-sigmoid", "gamma": float("nan")}, "gamma must be finite"),
        ({"name": "mad", "epsilon": 3}, "epsilon must be <= 2"),
        ({"name": "mad", "epsilon": 0}, "epsilon must be > 0"),
        ({"name": "mad", "student_steps": 2.5}, "student_steps must be an integer"),
        ({"name": "adaptive-misinformation", "tau": 1.0}, "tau must be < 1"),
        ({"name": "adaptive-misinformation", "nu": 0}, "nu must be > 0"),
        ({"name": "adaptive-misinformation", "sharpness": 3}, "unexpected keyword"),
        ({"name": "jpeg"}, "unknown defense 'jpeg'"),
        ({"sigma": 1}, "needs a 'name'"),
    ],
)
def test_bad_parameters_raise_one_clear_configuration_error(spec, fragment):
    with pytest.raises(ConfigurationError, match=fragment) as err:
        build_chain([spec])
    assert "\n" not in str(err.value)


def test_fitted_defenses_refuse_to_run_unfitted_or_without_data(digits):
    v, _, X, _ = digits
    p = v.target.predict(X[:5]).probabilities
    for d in (MAD(), AdaptiveMisinformation()):
        with pytest.raises(ConfigurationError, match="must be fitted"):
            d.apply(p, X[:5], np.random.default_rng(0))
        with pytest.raises(ConfigurationError, match="owner's data"):
            d.fit(v.target, None)
    with pytest.raises(ExtractGuardError):
        MAD().fit(v.target, np.zeros((4, 3)))  # wrong width: the schema's InputValidationError


def test_evaluate_defense_reports_utility_cost(digits, fitted):
    v, _, X, y = digits
    none = evaluate_defense(v.target, DefenseChain(), X, y)
    assert none.agreement == 1.0 and none.mean_l1 == 0.0 and none.accuracy_change == 0.0
    assert none.ece_defended == none.ece_undefended
    keep = evaluate_defense(v.target, DefenseChain([ReverseSigmoid(beta=0.5, gamma=2.0)]), X, y)
    assert keep.agreement == 1.0 and keep.accuracy_change == 0.0
    assert keep.mean_l1 > 0.1 and keep.nll_defended > keep.nll_undefended and keep.ece_defended > keep.ece_undefended
    flip = evaluate_defense(v.target, DefenseChain([GaussianNoise(sigma=0.4)]), X, y, seed=1)
    assert flip.agreement < 0.95 and flip.accuracy_defended < flip.accuracy_undefended
    with pytest.raises(ConfigurationError, match="labels"):
        evaluate_defense(v.target, DefenseChain(), X, y[:-1])


def test_expected_calibration_error_by_hand():
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 1, 0, 1])
    # Bins: conf 0.9 (2 rows, accuracy 0.5) and conf 0.6 (2 rows, accuracy 1.0).
    assert expected_calibration_error(p, y) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)


def test_knockoff_through_a_defended_target_counts_queries_and_sees_defended_answers(digits):
    v, _, _, _ = digits
    chain = DefenseChain([ReverseSigmoid(beta=0.5, gamma=2.0)])
    transcript = MemoryTranscript()
    oracle = Oracle(ServingPipeline(v.target, PROBS, chain=chain, rng=np.random.default_rng(0)), budget=100,
                    transcript=transcript)
    attack = create_attack("knockoff", pool=v.pool(), surrogate="linear", seed=0).fit(oracle, budget=100)
    assert oracle.queries_used == 100 and attack.queries_ == 100 and oracle.remaining == 0
    X_asked = transcript.inputs()
    seen = np.concatenate([a.scores for _, a in transcript.batches])
    true = v.target.predict(X_asked).probabilities
    np.testing.assert_array_equal(seen.argmax(1), true.argmax(1))
    assert np.abs(seen - true).sum(axis=1).mean() > 0.5  # the attacker got the deceptive vectors
