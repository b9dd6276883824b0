"""Keyed answer watermark: determinism, per-account keys, the record, and the gateway tier option."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from extractguard.errors import ConfigurationError
from extractguard.gateway import load_config
from extractguard.oracle import OutputSpec
from extractguard.serving import ServingPipeline
from extractguard.watermark import (
    AnswerWatermark,
    WatermarkRecord,
    derive_account_key,
    load_or_create_master_key,
    row_digest,
)
from gateway_helpers import infer_body, iris_target, make_app

MASTER = bytes(range(32))


def _probs(n: int, c: int, seed: int = 0) -> np.ndarray:
    z = np.random.default_rng(seed).normal(size=(n, c)) * 3
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_marks_are_keyed_deterministic_and_the_configured_fraction() -> None:
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 16, size=(20000, 8))
    p = _probs(len(X), 10)
    wm = AnswerWatermark(MASTER, fraction=0.01)
    out, dec = wm.apply(p, X, "alice")
    # Binomial(20000, 0.01): mean 200, sd 14; 5 sd either side cannot fail by chance in practice.
    assert 130 < dec.marked.sum() < 270
    assert 130 < dec.control.sum() < 270 and not (dec.marked & dec.control).any()
    # Marked rows: a different, valid, equally confident answer whose top label is the keyed one.
    m = dec.marked
    assert (out[m].argmax(1) == dec.served_labels[m]).all() and (dec.served_labels[m] != p[m].argmax(1)).all()
    np.testing.assert_allclose(np.sort(out, axis=1), np.sort(p, axis=1))
    np.testing.assert_array_equal(out[~m], p[~m])
    # Wrong labels spread over the other classes (uniform over 9: every one appears).
    assert len(set(((dec.served_labels[m] - dec.owner_labels[m]) % 10).tolist())) == 9
    # Same key, same rows (in any order and batching) -> same answers; FP32 vs FP64 input alike.
    order = rng.permutation(len(X))[:500]
    again, dec2 = AnswerWatermark(MASTER, fraction=0.01).apply(p[order], X[order].astype(np.float32), "alice")
    np.testing.assert_array_equal(again, out[order])
    # Another account (or another master key) marks a different set.
    _, bob = wm.apply(p, X, "bob")
    _, other = AnswerWatermark(bytes(32), fraction=0.01).apply(p, X, "alice")
    assert (bob.marked & dec.marked).sum() < 20 and (other.marked & dec.marked).sum() < 20


def test_soft_marks_keep_the_top_label_and_raise_the_keyed_one() -> None:
    rng = np.random.default_rng(2)
    X = rng.uniform(0, 16, size=(20000, 8))
    p = _probs(len(X), 10)
    flip_out, flip = AnswerWatermark(MASTER, fraction=0.01).apply(p, X, "alice")
    out, dec = AnswerWatermark(MASTER, fraction=0.01, mark="soft", soft_ratio=0.6).apply(p, X, "alice")
    # Same keyed rows and keyed labels as the flip mark: only what is served on them differs.
    np.testing.assert_array_equal(dec.marked, flip.marked)
    np.testing.assert_array_equal(dec.served_labels, flip.served_labels)
    m = dec.marked
    assert m.sum() > 100
    rows = np.flatnonzero(m)
    y, w = dec.owner_labels[m], dec.served_labels[m]
    # Honest users' labels are untouched; the keyed label gets >= 0.6 of the top probability.
    assert (out.argmax(1) == p.argmax(1)).all() and (flip_out[m].argmax(1) == w).all()
    np.testing.assert_allclose(out.sum(1), 1.0)
    assert np.all(out[rows, w] >= 0.6 * out[rows, y] - 1e-12)
    # It is the runner-up wherever no other class already held 0.6 of the top probability.
    others = p[m].copy()
    others[np.arange(len(rows)), y] = others[np.arange(len(rows)), w] = 0
    clear = others.max(1) < 0.6 * p[rows, y]
    second = np.argsort(-out[m], axis=1)[:, 1]
    assert clear.sum() > 50 and (second[clear] == w[clear]).all()
    np.testing.assert_array_equal(out[~m], p[~m])
    with pytest.raises(ConfigurationError, match="mark"):
        AnswerWatermark(MASTER, mark="loud")
    with pytest.raises(ConfigurationError, match="soft_ratio"):
        AnswerWatermark(MASTER, mark="soft", soft_ratio=1.0)


def test_account_keys_and_bad_parameters() -> None:
    assert derive_account_key(MASTER, "alice") == derive_account_key(MASTER, "alice")
    assert derive_account_key(MASTER, "alice") != derive_account_key(MASTER, "alice ")
    with pytest.raises(ConfigurationError, match="at least 16 bytes"):
        AnswerWatermark(b"short")
    with pytest.raises(ConfigurationError, match="fraction"):
        AnswerWatermark(MASTER, fraction=0.5)
    with pytest.raises(ConfigurationError, match="fraction"):
        AnswerWatermark(MASTER, fraction=0.0)


def test_record_stores_distinct_marked_and_control_rows(tmp_path: Path) -> None:
    target = iris_target()
    rec = WatermarkRecord(tmp_path / "wm.db")
    wt = ServingPipeline(target, OutputSpec("probabilities"), watermark=AnswerWatermark(MASTER, fraction=0.1, control_fraction=0.05),
                         record=rec)
    X = np.random.default_rng(0).uniform(target.schema.low, target.schema.high, size=(400, 4))
    served = wt.answer("alice", X, 1.0).probabilities
    wt.answer("alice", X[:200], 2.0)  # repeats are not stored twice
    r = rec.load("alice")
    truth = target.predict(X).probabilities.argmax(1)
    assert 20 < len(r.marked_X) < 70 and 5 < len(r.control_X) < 45
    assert len({row_digest(x) for x in r.marked_X}) == len(r.marked_X)
    # Stored rows, labels and served answers agree with what was served.
    idx = [int(np.flatnonzero((X == x).all(1))[0]) for x in r.marked_X]
    np.testing.assert_array_equal(served[idx].argmax(1), r.marked_served)
    np.testing.assert_array_equal(truth[idx], r.marked_owner)
    assert (r.marked_served != r.marked_owner).all()
    assert rec.accounts() == ["alice"]
    with pytest.raises(ConfigurationError, match="no rows for account 'bob'"):
        rec.load("bob")
    rec.close()


def test_master_key_file_is_created_once_private(tmp_path: Path) -> None:
    path = tmp_path / "k" / "watermark.key"
    key = load_or_create_master_key(path)
    assert len(key) == 32 and load_or_create_master_key(path) == key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    path.write_text("zz\n")
    with pytest.raises(ConfigurationError, match="not a watermark key"):
        load_or_create_master_key(path)


def test_gateway_tier_watermarks_and_records_per_account(tmp_path: Path) -> None:
    tiers = {
        "marked": {"output": "probabilities", "watermark": {"fraction": 0.2}},
        "plain": {"output": "probabilities"},
    }
    app = make_app(tmp_path, target=iris_target(), tiers=tiers)
    gw = app.state.gateway
    client = TestClient(app)
    ka, kb, kp = gw.keys.create("alice", "marked"), gw.keys.create("bob", "marked"), gw.keys.create("carol", "plain")
    X = np.random.default_rng(3).uniform([4, 2, 1, 0], [8, 4.5, 7, 2.5], size=(50, 4))
    truth = iris_target().predict(X).probabilities.argmax(1)

    def labels(key: str) -> np.ndarray:
        r = client.post("/v2/models/iris/infer", json=infer_body(X), headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200
        return np.array({o["name"]: o for o in r.json()["outputs"]}["label"]["data"])

    a1, a2, b, plain = labels(ka), labels(ka), labels(kb), labels(kp)
    np.testing.assert_array_equal(a1, a2)  # a repeated query gets the same (marked) answer
    np.testing.assert_array_equal(plain, truth)  # an unmarked tier is untouched
    assert 0 < (a1 != truth).sum() < 25 and (b != truth).sum() > 0
    assert not np.array_equal(a1 != truth, b != truth)  # each account has its own marked set
    rec = gw.watermarks.load("alice")
    assert len(rec.marked_X) == (a1 != truth).sum()
    assert gw.watermarks.accounts() == ["alice", "bob"]
    assert (tmp_path / "watermark.key").is_file()
    gw.close()


def test_gateway_config_watermark_fields(tmp_path: Path) -> None:
    cfg_file = tmp_path / "gw.yaml"
    cfg_file.write_text(
        "model: {victim: iris-logreg}\nstate_dir: st\nwatermark_key: keys/wm.key\n"
        "tiers: {t: {watermark: {fraction: 0.01, control_fraction: 0.02}}}\n"
    )
    cfg = load_config(cfg_file, check_defenses=False)
    assert cfg.watermark_key_path == tmp_path / "keys" / "wm.key"
    assert cfg.watermark_db_path == tmp_path / "st" / "watermarks.db"
    assert cfg.tiers["t"].watermark is not None and cfg.tiers["t"].watermark.control_fraction == 0.02
    cfg_file.write_text("model: {victim: iris-logreg}\ntiers: {t: {watermark: {fraction: 0.5}}}\n")
    with pytest.raises(ConfigurationError, match="tiers.t.watermark.fraction"):
        load_config(cfg_file)
    cfg_file.write_text("model: {victim: iris-logreg}\ntiers: {t: {output: label, watermark: {fraction: 0.01, mark: soft}}}\n")
    with pytest.raises(ConfigurationError, match="soft.*hide it"):
        load_config(cfg_file)
    cfg_file.write_text("model: {victim: iris-logreg}\ntiers: {t: {output: top-2, watermark: {fraction: 0.01, mark: soft}}}\n")
    assert load_config(cfg_file, check_defenses=False).tiers["t"].watermark.mark == "soft"  # type: ignore[union-attr]


def test_cell_mode_gives_near_duplicates_one_answer_and_records_one_row_per_cell(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    base = rng.uniform(0, 16, size=(3000, 16))
    wm = AnswerWatermark(MASTER, fraction=0.05, cell_width=0.3, projections=8, low=0.0, high=16.0)
    p = _probs(len(base), 10, seed=3)
    _, d0 = wm.apply(p, base, "alice")
    noisy = np.clip(base + rng.normal(0, 0.01, size=base.shape), 0, 16)
    _, d1 = wm.apply(p, noisy, "alice")
    assert np.mean(d0.marked == d1.marked) > 0.98  # tiny perturbations rarely leave the cell
    assert 60 < d0.marked.sum() < 250
    exact = AnswerWatermark(MASTER, fraction=0.05)
    assert np.mean(exact.decide(base, "alice", d0.owner_labels, 10).marked == exact.decide(noisy, "alice", d0.owner_labels, 10).marked) < 0.95
    # Four near-copies of each row: the record keeps one row per marked cell.
    rec = WatermarkRecord(tmp_path / "wm.db")
    X4 = np.concatenate([base[:400]] + [np.clip(base[:400] + rng.normal(0, 1e-3, size=(400, 16)), 0, 16) for _ in range(3)])
    _, d = wm.apply(np.tile(p[:400], (4, 1)), X4, "alice")
    rec.add("alice", X4, d)
    r = rec.load("alice")
    assert len(r.marked_X) == len({c for c, m in zip(d.cells, d.marked) if m}) < d.marked.sum()


# -- the record's edges (mutation testing, issue 23) -----------------------------------------
def _decision(marked: list[bool], control: list[bool]):  # type: ignore[no-untyped-def]
    from extractguard.watermark.keyed import WatermarkDecision

    n = len(marked)
    return WatermarkDecision(np.array(marked), np.array(control), np.zeros(n, np.int64), np.ones(n, np.int64),
                             [f"cell{i}" for i in range(n)])


def test_a_batch_with_nothing_marked_stores_nothing(tmp_path: Path) -> None:
    rec = WatermarkRecord(tmp_path / "wm.db")
    assert rec.add("alice", np.zeros((3, 2)), _decision([False] * 3, [False] * 3), ts=1.0) == 0
    assert rec.add("alice", np.arange(6.0).reshape(3, 2), _decision([True, False, False], [False, False, True]), ts=2.0) == 2
    assert rec.accounts() == ["alice"]


def test_a_record_opens_read_only_for_verification_and_only_if_it_exists(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no watermark record"):
        WatermarkRecord(tmp_path / "missing.db", read_only=True)
    rec = WatermarkRecord(tmp_path / "wm.db")
    rec.add("alice", np.arange(4.0).reshape(2, 2), _decision([True, False], [False, True]), ts=1.0)
    rec.close()
    ro = WatermarkRecord(tmp_path / "wm.db", read_only=True)
    r = ro.load("alice")
    assert len(r.marked_X) == 1 and len(r.control_X) == 1
    with pytest.raises(Exception, match="readonly"):
        ro.add("bob", np.zeros((1, 2)), _decision([True], [False]), ts=2.0)
    import threading

    out: list[list[str]] = []
    t = threading.Thread(target=lambda: out.append(ro.accounts()))  # a verifier may read from a worker thread
    t.start()
    t.join()
    assert out == [["alice"]]


def test_a_master_key_needs_at_least_16_bytes(tmp_path: Path) -> None:
    path = tmp_path / "watermark.key"
    path.write_text(bytes(range(16)).hex() + "\n")
    assert load_or_create_master_key(path) == bytes(range(16))
    path.write_text(bytes(range(15)).hex() + "\n")
    with pytest.raises(ConfigurationError, match="at least 16 bytes"):
        load_or_create_master_key(path)
    with pytest.raises(ConfigurationError, match="no watermark key"):
        load_or_create_master_key(tmp_path / "absent.key", create=False)
    assert len(load_or_create_master_key(tmp_path / "a" / "b" / "watermark.key")) == 32  # directories made
    rec = WatermarkRecord(tmp_path / "c" / "d" / "wm.db")
    assert rec.accounts() == []


def test_a_record_keeps_its_first_and_last_times_and_loads_a_single_row(tmp_path: Path) -> None:
    rec = WatermarkRecord(tmp_path / "wm.db")
    rec.add("alice", np.array([[1.0, 2.0]]), _decision([True], [False]), ts=5.0)
    one = rec.load("alice")
    assert one.marked_X.tolist() == [[1.0, 2.0]] and one.control_X.shape == (0, 2)
    rec.add("alice", np.array([[3.0, 4.0]]), _decision([False], [True]), ts=7.0)
    assert rec.add("alice", np.array([[5.0, 6.0]]), _decision([True], [False]), ts=9.0) == 1  # 3 rows stored, 1 new
    three = rec.load("alice")
    assert (three.first_ts, three.last_ts) == (5.0, 9.0)
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):  # evidence loaded for a verdict is not edited in place
        three.account = "bob"  # type: ignore[misc]


def test_a_gateway_that_loses_the_race_to_create_the_key_uses_the_winners(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes starting at once: the second finds the file created between its check and its O_EXCL open."""
    path = tmp_path / "watermark.key"
    path.write_text(bytes(range(32)).hex() + "\n")  # the winner's key
    real = Path.is_file
    calls: list[Path] = []

    def first_check_misses(self: Path) -> bool:
        calls.append(self)
        return False if len(calls) == 1 else real(self)

    monkeypatch.setattr(Path, "is_file", first_check_misses)
    assert load_or_create_master_key(path) == bytes(range(32))
