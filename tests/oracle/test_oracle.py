"""The oracle: output modes, budget contract, validation, and every local target kind."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from extractguard.errors import BudgetExceededError, ConfigurationError, ExtractGuardError, InputValidationError
from extractguard.oracle import (
    Answer,
    CallableTarget,
    InputSchema,
    MemoryTranscript,
    OnnxTarget,
    Oracle,
    OutputSpec,
    SklearnTarget,
    TorchTarget,
)


@pytest.fixture()
def linear_target() -> SklearnTarget:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = (X @ np.array([1.0, -2.0, 0.5, 0.0]) > 0).astype(int) + (X[:, 3] > 1).astype(int)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    return SklearnTarget(model, InputSchema(input_shape=(4,), n_classes=3, low=-3, high=3))


P = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])


def test_output_spec_parsing() -> None:
    assert OutputSpec.parse("top-3") == OutputSpec("top_k", k=3)
    assert OutputSpec.parse("top2") == OutputSpec("top_k", k=2)
    assert OutputSpec.parse("rounded:3") == OutputSpec("rounded", decimals=3)
    assert OutputSpec.parse("label") == OutputSpec("label")
    assert str(OutputSpec.parse("round")) == "rounded:2"
    with pytest.raises(ConfigurationError, match="unknown output mode"):
        OutputSpec.parse("everything")


def test_probabilities_mode_reveals_everything() -> None:
    a = Answer.from_probabilities(P, OutputSpec("probabilities"))
    np.testing.assert_array_equal(a.labels, [1, 0])
    np.testing.assert_allclose(a.soft_labels(), P)


def test_rounded_mode_renormalises() -> None:
    p = np.array([[0.333, 0.333, 0.334]])
    a = Answer.from_probabilities(p, OutputSpec("rounded", decimals=1))
    np.testing.assert_allclose(a.scores, [[0.3, 0.3, 0.3]])
    np.testing.assert_allclose(a.soft_labels(), [[1 / 3, 1 / 3, 1 / 3]])


def test_top_k_spreads_unrevealed_mass() -> None:
    a = Answer.from_probabilities(P, OutputSpec("top_k", k=1))
    np.testing.assert_array_equal(a.top_indices[:, 0], [1, 0])
    assert a.scores is None
    # Row 0: 0.6 revealed on class 1, the remaining 0.4 split over the 2 others.
    np.testing.assert_allclose(a.soft_labels()[0], [0.2, 0.6, 0.2])


def test_label_mode_reveals_only_the_label() -> None:
    a = Answer.from_probabilities(P, OutputSpec("label"))
    assert a.scores is None and a.top_indices is None
    np.testing.assert_array_equal(a.soft_labels(), [[0, 1, 0], [1, 0, 0]])
    assert a.to_records() == [{"label": 1}, {"label": 0}]


def test_logits_mode_recovers_probabilities_via_softmax() -> None:
    logits = np.log(P) + 7.0  # any per-row shift gives the same softmax
    a = Answer.from_probabilities(P, OutputSpec("logits"), logits=logits)
    np.testing.assert_allclose(a.scores, logits)
    np.testing.assert_allclose(a.soft_labels(), P)


def test_budget_counts_rows_not_calls(linear_target: SklearnTarget) -> None:
    oracle = Oracle(linear_target, budget=10, price_per_query=0.5)
    oracle.query(np.zeros((4, 4)))
    oracle.query(np.zeros((6, 4)))
    stats = oracle.stats()
    assert (stats.queries, stats.calls, stats.spend) == (10, 2, 5.0)
    assert oracle.remaining == 0


def test_batch_over_budget_is_refused_whole_and_costs_nothing(linear_target: SklearnTarget) -> None:
    oracle = Oracle(linear_target, budget=5)
    oracle.query(np.zeros((3, 4)))
    with pytest.raises(BudgetExceededError, match="3 of 5 queries already used"):
        oracle.query(np.zeros((3, 4)))
    assert oracle.queries_used == 3
    oracle.query(np.zeros((2, 4)))
    assert oracle.remaining == 0


def test_invalid_batches_are_refused_before_the_model(linear_target: SklearnTarget) -> None:
    calls = []

    def fn(X: np.ndarray) -> np.ndarray:
        calls.append(len(X))
        return np.full((len(X), 3), 1 / 3)

    oracle = Oracle(CallableTarget(fn, linear_target.schema), budget=100)
    with pytest.raises(InputValidationError, match="width 5"):
        oracle.query(np.zeros((2, 5)))
    bad = np.zeros((2, 4))
    bad[1, 2] = np.nan
    with pytest.raises(InputValidationError, match="NaN.*row 1, column 2"):
        oracle.query(bad)
    with pytest.raises(InputValidationError, match="empty"):
        oracle.query(np.zeros((0, 4)))
    with pytest.raises(InputValidationError, match="not numeric"):
        oracle.query([["a", "b", "c", "d"]])
    assert calls == [] and oracle.queries_used == 0


def test_enforced_bounds() -> None:
    schema = InputSchema(input_shape=(2,), n_classes=2, low=0, high=1, enforce_bounds=True)
    with pytest.raises(InputValidationError, match="outside the documented domain"):
        schema.validate([[0.5, 1.5]])
    assert schema.validate([[0.0, 1.0]]).shape == (1, 2)


def test_oracle_does_not_expose_the_target(linear_target: SklearnTarget) -> None:
    oracle = Oracle(linear_target)
    public = [n for n in dir(oracle) if not n.startswith("_")]
    for name in public:
        assert not isinstance(getattr(oracle, name), SklearnTarget), name
    assert "target" not in public and "model" not in public


def test_transcript_records_every_row(linear_target: SklearnTarget) -> None:
    transcript = MemoryTranscript()
    oracle = Oracle(linear_target, output=OutputSpec.parse("top-2"), transcript=transcript)
    X = np.random.default_rng(1).uniform(-3, 3, size=(7, 4))
    oracle.query(X[:3])
    oracle.query(X[3:])
    assert transcript.n_rows == 7
    np.testing.assert_allclose(transcript.inputs(), X)


def test_sklearn_target_checks_width_and_classes(linear_target: SklearnTarget) -> None:
    model = linear_target._estimator
    with pytest.raises(ExtractGuardError, match="fitted on 4 features"):
        SklearnTarget(model, InputSchema(input_shape=(5,), n_classes=3))
    with pytest.raises(ExtractGuardError, match="3 classes"):
        SklearnTarget(model, InputSchema(input_shape=(4,), n_classes=4))


def test_torch_target_matches_module_softmax() -> None:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    schema = InputSchema(input_shape=(1, 4, 4), n_classes=3)
    target = TorchTarget(net, schema, outputs="logits")
    X = np.random.default_rng(0).random((5, 16))
    pred = target.predict(schema.validate(X))
    with torch.no_grad():
        expected = torch.softmax(net(torch.tensor(X, dtype=torch.float32).reshape(5, 1, 4, 4)), 1).numpy()
    np.testing.assert_allclose(pred.probabilities, expected, atol=1e-6)
    assert pred.logits is not None
    answer = Oracle(target, output=OutputSpec.parse("logits")).query(X)
    np.testing.assert_allclose(answer.soft_labels(), expected, atol=1e-6)


def test_onnx_target_matches_sklearn(linear_target: SklearnTarget, tmp_path) -> None:
    skl2onnx = pytest.importorskip("skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType

    model = linear_target._estimator
    onx = skl2onnx.convert_sklearn(
        model, initial_types=[("input", FloatTensorType([None, 4]))], options={id(model): {"zipmap": False}}
    )
    path = tmp_path / "m.onnx"
    path.write_bytes(onx.SerializeToString())
    target = OnnxTarget(path, linear_target.schema)
    X = np.random.default_rng(2).uniform(-3, 3, size=(20, 4))
    np.testing.assert_allclose(
        target.predict(X).probabilities, model.predict_proba(X), atol=1e-5
    )


def test_callable_target_with_labels_and_errors() -> None:
    schema = InputSchema(input_shape=(2,), n_classes=2)
    target = CallableTarget(lambda X: (X[:, 0] > 0.5).astype(int), schema, outputs="labels")
    a = Oracle(target, output=OutputSpec.parse("probabilities")).query([[0.9, 0], [0.1, 0]])
    np.testing.assert_array_equal(a.labels, [1, 0])
    nan_target = CallableTarget(lambda X: np.full((len(X), 2), np.nan), schema)
    with pytest.raises(ExtractGuardError, match="NaN"):
        Oracle(nan_target).query([[0.0, 0.0]])


# -- the budget contract at its edges (mutation testing, issue 23) ----------------------------
def test_a_refusal_says_how_many_queries_are_left(linear_target: SklearnTarget) -> None:
    oracle = Oracle(linear_target, budget=10)
    oracle.query(np.zeros((3, 4)))
    with pytest.raises(BudgetExceededError, match=r"batch of 8 rows refused: 3 of 10 queries already used \(7 left\)"):
        oracle.query(np.zeros((8, 4)))
    assert oracle.remaining == 7


def test_a_zero_budget_is_allowed_and_answers_nothing(linear_target: SklearnTarget) -> None:
    oracle = Oracle(linear_target, budget=0)
    assert oracle.remaining == 0
    with pytest.raises(BudgetExceededError):
        oracle.query(np.zeros((1, 4)))
    assert oracle.queries_used == 0 and oracle.calls == 0


@pytest.mark.parametrize("budget", [-1, -2])
def test_a_negative_budget_is_refused(linear_target: SklearnTarget, budget: int) -> None:
    with pytest.raises(BudgetExceededError, match="must be >= 0"):
        Oracle(linear_target, budget=budget)


def test_charge_never_passes_the_budget_even_when_called_directly(linear_target: SklearnTarget) -> None:
    """``charge`` is the one place queries are counted: it refuses to cross the budget by itself,
    not only because ``admit`` checked first (a subclass that replays answers calls it directly)."""
    oracle = Oracle(linear_target, budget=5)
    with pytest.raises(BudgetExceededError, match="cannot charge 6 rows"):
        oracle.charge(6)
    oracle.charge(3)
    with pytest.raises(BudgetExceededError):
        oracle.charge(3)
    oracle.charge(2)
    with pytest.raises(BudgetExceededError):
        oracle.charge(-1)
    assert (oracle.queries_used, oracle.calls, oracle.remaining) == (5, 2, 0)
    assert oracle.stats().seconds_in_target == 0.0  # no time given, none counted


def test_queries_are_free_unless_priced(linear_target: SklearnTarget) -> None:
    oracle = Oracle(linear_target)
    oracle.query(np.zeros((4, 4)))
    assert oracle.stats().spend == 0.0 and oracle.stats().budget is None and oracle.remaining is None


def test_stats_report_target_seconds_to_a_tenth_of_a_millisecond() -> None:
    from extractguard.oracle.oracle import OracleStats

    d = OracleStats(queries=3, calls=1, spend=1.5, budget=None, seconds_in_target=0.123456).to_dict()
    assert d == {"queries": 3, "calls": 1, "spend": 1.5, "budget": None, "seconds_in_target": 0.1235}


def test_a_stats_snapshot_cannot_be_edited(linear_target: SklearnTarget) -> None:
    import dataclasses

    stats = Oracle(linear_target, budget=3).stats()
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.queries = 0  # type: ignore[misc]


def test_an_empty_transcript_has_no_rows() -> None:
    transcript = MemoryTranscript()
    assert transcript.n_rows == 0 and transcript.inputs().shape == (0, 0)


def test_seconds_in_target_measure_the_time_the_target_took() -> None:
    import time

    def slow(X: np.ndarray) -> np.ndarray:
        time.sleep(0.02)
        return np.tile([0.25, 0.75], (len(X), 1))

    oracle = Oracle(CallableTarget(slow, InputSchema(input_shape=(2,), n_classes=2)))
    oracle.query([[0.0, 0.0]])
    oracle.query([[1.0, 0.0]])
    assert 0.04 <= oracle.stats().seconds_in_target < 1.0  # two calls of ~20 ms (generous upper bound for load)


def test_a_pipeline_accepts_its_own_output_mode_however_it_was_spelled(linear_target: SklearnTarget) -> None:
    """The output given with a pipeline is compared by value: an equal mode parsed again is fine, another is refused."""
    from extractguard.oracle.pipeline import OutputStage

    pipeline = OutputStage(linear_target, OutputSpec.parse("top-2"))
    assert Oracle(pipeline, output=OutputSpec.parse("top-2")).output == OutputSpec.parse("top-2")
    with pytest.raises(ConfigurationError, match="differs from the pipeline's own output mode"):
        Oracle(pipeline, output=OutputSpec.parse("top-1"))
