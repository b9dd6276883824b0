"""Ownership verification: a copy stolen through the watermark is identified, independent models are
not, fingerprints transfer, evidence bundles verify and fail after any edit; the CLI end to end
(model file and HTTP suspects)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from extractguard.cli import app
from extractguard.errors import ConfigurationError
from extractguard.oracle import Oracle, OutputSpec
from extractguard.oracle.targets import CallableTarget
from extractguard.surrogates import TorchClassifier
from extractguard.verify import (
    Fingerprint,
    binomial_tail,
    build_bundle,
    check_bundle,
    generate_signing_key,
    load_signing_key,
    sign_bundle,
    train_references,
    verify_suspect,
)
from extractguard.verify.fingerprint import fingerprint_model
from extractguard.verify.ownership import graded, keyed_label_ranks, uniform_rank_sum_cdf
from extractguard.serving import ServingPipeline
from extractguard.watermark import AnswerWatermark, WatermarkRecord
from gateway_helpers import UvicornThread

MASTER = bytes(range(32))


@pytest.fixture(scope="module")
def stolen(tmp_path_factory: pytest.TempPathFactory, victim: Any) -> dict[str, Any]:
    """digits-logreg behind a 2 % cell watermark; an attacker spends 2,500 queries on a noise-augmented
    pool and trains its copy to convergence; independent models learn the task from true labels."""
    from extractguard.attacks import create_attack

    v = victim
    rng = np.random.default_rng(0)
    pool = v.pool()
    aug = np.clip(np.repeat(pool, 5, 0) + rng.normal(0, 1.0, size=(5 * len(pool), 64)), 0, 16)
    path = tmp_path_factory.mktemp("wm") / "watermarks.db"
    rec = WatermarkRecord(path)
    wm = AnswerWatermark(MASTER, fraction=0.02, cell_width=0.3, projections=8, low=v.schema.low, high=v.schema.high)
    served = ServingPipeline(v.target, OutputSpec("probabilities"), watermark=wm, record=rec)
    attack = create_attack("knockoff", pool=aug, seed=0).fit(Oracle(served, account="mallory", budget=2500), 2500)
    X, Y = np.concatenate(attack._X), np.concatenate(attack._Y)
    clf = TorchClassifier("mlp", (64,), 10, hidden=(256, 128), epochs=200, min_steps=2000, max_steps=2000, weight_decay=0.0, seed=0).fit(X, Y)
    # A second, honest account queries too: its record is separate, the copy must not match it.
    served.answer("honest", v.dataset.X[v.splits.test], time.time())
    copy_target = CallableTarget(clf.predict_proba, v.schema)
    independents = train_references(pool, v.dataset.y[v.splits.pool], v.schema, n_models=4, seed=9,
                                    families=("logreg", "forest", "knn", "tree"))
    return {"victim": v, "record": rec, "record_path": path, "copy": copy_target, "clf": clf, "independents": independents}


def test_copy_through_watermark_is_identified_and_traced_to_its_account(stolen: dict[str, Any]) -> None:
    rec = stolen["record"]
    mallory, honest = rec.load("mallory"), rec.load("honest")
    assert len(mallory.marked_X) >= 15
    verdict = verify_suspect(stolen["copy"], [mallory, honest], alpha=1e-6)
    by_account = {t.account: t for t in verdict.tests}
    assert verdict.is_copy and verdict.strongest is not None and verdict.strongest.account == "mallory"
    assert by_account["mallory"].p_value < 1e-6
    assert by_account["honest"].p_value > 1e-3
    t = by_account["mallory"]
    # The copy returns probabilities: the rank test, whose p-value follows from the recorded ranks.
    assert t.extra["method"] == "rank"
    assert t.p_value == pytest.approx(uniform_rank_sum_cdf(int(t.extra["ranks"].sum()), t.n, 9), rel=1e-12, abs=0)
    assert "COPY" in verdict.describe()
    # Forced to the label-only test, the same copy is still identified, with less evidence.
    cond = verify_suspect(stolen["copy"], [mallory], alpha=1e-6, method="conditional").tests[0]
    assert cond.extra["method"] == "conditional" and cond.p_value == pytest.approx(binomial_tail(cond.k, cond.n, 1 / 9), rel=1e-12, abs=0)
    assert cond.p_value < 1e-6
    # A label-only suspect (one-hot answers, every wrong class tied) falls back to the conditional test.
    one_hot = CallableTarget(lambda Z: np.eye(10)[stolen["clf"].predict_proba(Z).argmax(1)], stolen["victim"].schema)
    t1 = verify_suspect(one_hot, [mallory]).tests[0]
    assert t1.extra["method"] == "conditional" and (t1.k, t1.n) == (cond.k, cond.n)
    with pytest.raises(ConfigurationError, match="unknown watermark test method"):
        verify_suspect(stolen["copy"], [mallory], method="fancy")


def test_rank_sum_distribution_is_exact() -> None:
    """The rank test's null distribution against brute-force enumeration, and its far tail."""
    import itertools

    for n, m in ((1, 9), (3, 4), (5, 3)):
        sums = np.array([sum(r) for r in itertools.product(range(1, m + 1), repeat=n)])
        for s in range(n - 1, n * m + 1):
            assert uniform_rank_sum_cdf(s, n, m) == pytest.approx(np.mean(sums <= s), rel=1e-12, abs=1e-15)
    assert uniform_rank_sum_cdf(300, 300, 9) == pytest.approx(9.0**-300, rel=1e-9, abs=0)  # every rank 1
    assert uniform_rank_sum_cdf(1000, 1000, 9) > 0  # below the double range: an upper bound, never 0


def test_keyed_label_ranks_count_ties_against_the_mark() -> None:
    scores = np.array([[0.5, 0.2, 0.2, 0.1], [0.1, 0.6, 0.3, 0.0], [0.0, 0.0, 0.0, 1.0]])
    owner, keyed = np.array([0, 1, 3]), np.array([1, 2, 0])
    # row 0: class 2 ties the mark -> rank 2; row 1: the mark leads the wrong classes; row 2: all tied -> worst.
    assert keyed_label_ranks(scores, owner, keyed).tolist() == [2, 1, 3]
    assert not graded(scores, owner) and graded(scores[1:2], owner[1:2]) and not graded(scores[:0], owner[:0])
    assert graded(np.array([[0.5, 0.3, 0.15, 0.05]]), np.array([0]))


def test_rank_test_is_valid_under_the_null(stolen: dict[str, Any]) -> None:
    """An independent model against 300 accounts' keys (same rows, fresh keyed labels): the rank
    test's p-values are no smaller than uniform, i.e. it rejects at level a at most ~a of the time."""
    from extractguard.watermark.record import AccountRecord

    v = stolen["victim"]
    X = np.concatenate([v.pool(), v.probe()[0]])
    owner = v.target.predict(X).probabilities.argmax(1)
    wm = AnswerWatermark(MASTER, fraction=0.05)
    model = stolen["independents"][0][1]
    ps = []
    for a in range(300):
        dec = wm.decide(X, f"account-{a}", owner, 10)
        rec = AccountRecord(f"account-{a}", X[dec.marked], dec.served_labels[dec.marked], owner[dec.marked],
                            X[:0], owner[:0], None, None)
        t = verify_suspect(model, [rec], method="rank").tests[0]
        ps.append(t.p_value)
    ps = np.array(ps)
    for a in (0.01, 0.05, 0.2, 0.5):
        assert np.mean(ps <= a) <= a + 3 * np.sqrt(a * (1 - a) / len(ps)) + 0.01, a
    assert np.mean(ps <= 0.5) >= 0.3  # and it is not degenerate (always 1)


def test_independent_models_are_not_accused(stolen: dict[str, Any]) -> None:
    rec = stolen["record"].load("mallory")
    for name, model in stolen["independents"]:
        verdict = verify_suspect(model, [rec], alpha=1e-6)
        assert not verdict.is_copy, name
        assert verdict.tests[0].p_value > 1e-4, name
    # The owner's own (unmarked) model is not a copy *of the watermark*: it never saw a marked answer.
    assert not verify_suspect(stolen["victim"].target, [rec]).is_copy


def test_two_class_watermark_uses_the_control_bound() -> None:
    from extractguard.victims import build_victim
    from extractguard.verify import watermark_test

    v = build_victim("breast_cancer-logreg", seed=0)
    rec_rows = v.dataset.X
    wm = AnswerWatermark(MASTER, fraction=0.1, control_fraction=0.2)
    p, dec = wm.apply(v.target.predict(rec_rows).probabilities, rec_rows, "a")
    from extractguard.watermark.record import AccountRecord

    rec = AccountRecord("a", rec_rows[dec.marked], dec.served_labels[dec.marked], dec.owner_labels[dec.marked],
                        rec_rows[dec.control], dec.owner_labels[dec.control], None, None)
    # The served answers themselves are the perfect copy; the owner's model is not one.
    perfect = CallableTarget(lambda Z: wm.apply(v.target.predict(Z).probabilities, Z, "a")[0], v.schema)
    t = watermark_test(perfect, rec, 2)
    assert t.extra["method"] == "control-bound" and t.k == t.n and t.p_value < 1e-6
    assert watermark_test(v.target, rec, 2).p_value == 1.0


def test_fingerprint_transfers_to_copies_not_to_independent_models(stolen: dict[str, Any]) -> None:
    v = stolen["victim"]
    fp = fingerprint_model(v.target, v.dataset.X[v.splits.train], v.dataset.y[v.splits.train], n_points=150,
                           n_references=4, seed=0, augment=1, n_selection=4)
    assert fp.p0 is not None and len(fp.labels) == 150
    assert (v.target.predict(fp.X).probabilities.argmax(1) == fp.labels).all()
    copy_t = verify_suspect(stolen["copy"], fingerprint=fp).tests[0]
    indep = [verify_suspect(m, fingerprint=fp).tests[0] for _, m in stolen["independents"]]
    assert copy_t.k > max(t.k for t in indep)
    assert all(t.p_value > 1e-6 for t in indep)
    fp2 = Fingerprint.load(fp.save(Path(stolen["record_path"]).parent / "fp.json"))
    np.testing.assert_array_equal(fp2.X, fp.X)
    assert fp2.p0 == fp.p0 and fp2.reference_agreements == fp.reference_agreements
    with pytest.raises(ConfigurationError, match="not calibrated"):
        verify_suspect(stolen["copy"], fingerprint=Fingerprint(fp.X, fp.labels, 0.05))


def test_evidence_bundle_verifies_and_fails_after_any_edit(stolen: dict[str, Any], tmp_path: Path) -> None:
    v = stolen["victim"]
    train = v.dataset.X[v.splits.train]
    fp = Fingerprint.create(v.target, train, n_points=60, seed=0).calibrate(
        train_references(train, v.dataset.y[v.splits.train], v.schema, n_models=2, families=("logreg", "forest")))
    verdict = verify_suspect(stolen["copy"], [stolen["record"].load("mallory")], fp)
    assert [t.name for t in verdict.tests] == ["watermark", "fingerprint"]
    priv, pub = generate_signing_key(tmp_path / "owner.pem")
    key = load_signing_key(priv)
    bundle = sign_bundle(build_bundle(verdict, {"kind": "test"}), key)
    assert check_bundle(bundle) == []
    assert check_bundle(json.loads(json.dumps(bundle))) == []  # survives a JSON round trip

    def edited(path: list[Any], value: Any) -> list[str]:
        b = copy.deepcopy(bundle)
        node = b
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value
        return check_bundle(b)

    t0 = bundle["body"]["tests"][0]
    for path, value in [
        (["body", "tests", 0, "suspect_labels", 0], (t0["suspect_labels"][0] + 1) % 10),
        (["body", "tests", 0, "suspect_scores", 0, 3], t0["suspect_scores"][0][3] + 0.5),
        (["body", "tests", 0, "inputs", 0, 5], t0["inputs"][0][5] + 1.0),
        (["body", "tests", 0, "p_value"], 1e-30),
        (["body", "verdict", "is_copy"], False),
        (["body", "created"], "2020-01-01T00:00:00+00:00"),
        (["body", "suspect", "kind"], "other"),
        (["body", "tests", 1, "reference_agreements", 0], 0),
        (["body", "tests", 1, "expected_labels", 3], (bundle["body"]["tests"][1]["expected_labels"][3] + 1) % 10),
        (["signature", "value"], "00" * 64),
    ]:
        problems = edited(path, value)
        assert problems and any("signature" in p for p in problems), path
    # Re-signed with another key after an edit: the signature verifies, but the recomputation fails
    # and a pinned public key does not match.
    b = copy.deepcopy(bundle)
    assert t0["method"] == "rank"
    b["body"]["tests"][0]["k"] += 1
    row = b["body"]["tests"][0]["suspect_scores"][1]
    row[(int(np.argmax(row)) + 1) % 10] = max(row) + 1.0  # scores that no longer give the recorded label
    b["body"]["tests"][1]["reference_agreements"] = [0, 0]  # a lower null rate would inflate the evidence
    other = load_signing_key(generate_signing_key(tmp_path / "other.pem")[0])
    resigned = sign_bundle(b["body"], other)
    problems = check_bundle(resigned, public_key_hex=bundle["signature"]["public_key"])
    assert any("scores do not match" in p for p in problems) and any("different key" in p for p in problems)
    b["body"]["tests"][0]["suspect_scores"] = t0["suspect_scores"]
    problems = check_bundle(sign_bundle(b["body"], other))
    assert any("recorded k" in p for p in problems)
    assert any("test 2 (fingerprint" in p and "p0" in p for p in problems)
    assert check_bundle({"format": "nope"}) != []
    with pytest.raises(ConfigurationError, match="already exists"):
        generate_signing_key(priv)


def test_cli_verify_file_and_http_suspects_sign_and_check(stolen: dict[str, Any], tmp_path: Path) -> None:
    import torch

    from extractguard.gateway import create_app, parse_config

    runner = CliRunner()
    clf = stolen["clf"]
    suspect = tmp_path / "suspect.pt"
    torch.jit.trace(clf.module_, torch.zeros(1, 64)).save(str(suspect))
    r = runner.invoke(app, ["verify", "--keygen", str(tmp_path / "k.pem")])
    assert r.exit_code == 0, r.output
    out = tmp_path / "evidence.json"
    r = runner.invoke(app, ["verify", "--suspect", str(suspect), "--watermarks", str(stolen["record_path"]),
                            "--sign-key", str(tmp_path / "k.pem"), "--bundle", str(out)])
    assert r.exit_code == 0, r.output
    assert "COPY" in r.output and "mallory" in r.output
    body = json.loads(out.read_text())["body"]
    assert body["suspect"]["kind"] == "file" and body["verdict"]["is_copy"]
    r = runner.invoke(app, ["verify", "--check", str(out), "--public-key", str(tmp_path / "k.pem.pub")])
    assert r.exit_code == 0, r.output
    assert "bundle intact" in r.output
    # The gateway config names the record (watermark_db); no bundle asked for, none written.
    (tmp_path / "gw.yaml").write_text(f"model: {{victim: digits-logreg}}\nwatermark_db: {stolen['record_path']}\n")
    r = runner.invoke(app, ["verify", "--suspect", str(suspect), "--config", str(tmp_path / "gw.yaml"), "--account", "honest"])
    assert r.exit_code == 0, r.output
    assert "NOT SHOWN TO BE A COPY" in r.output and "signed evidence" not in r.output
    tampered = json.loads(out.read_text())
    tampered["body"]["tests"][0]["suspect_labels"][0] += 1
    (tmp_path / "bad.json").write_text(json.dumps(tampered))
    r = runner.invoke(app, ["verify", "--check", str(tmp_path / "bad.json")])
    assert r.exit_code == 1 and "signature does not verify" in r.output

    # The same copy served over HTTP by an OIP endpoint (our gateway, no watermark), tested via target.yaml.
    cfg = parse_config({"model": {"name": "copy", "victim": "digits-logreg"}, "state_dir": str(tmp_path / "srv"),
                        "storage": "memory://", "tiers": {"t": {"output": "probabilities"}}})
    server_app = create_app(cfg, target=stolen["copy"])
    key = server_app.state.gateway.keys.create("owner-test", "t")
    with UvicornThread(server_app) as srv:
        (tmp_path / "target.yaml").write_text(
            f"url: {srv.url}\nmodel: copy\nkeys: ['{key}']\nprobe_data: unused.npy\nmax_rows_per_request: 64\n"
            "schema: {input_shape: [64], n_classes: 10, low: 0, high: 16}\n"
            "authorization: {owner: Test Owner, statement: We own this copy and authorise this test.}\n"
        )
        r = runner.invoke(app, ["verify", "--suspect", str(tmp_path / "target.yaml"), "--watermarks",
                                str(stolen["record_path"]), "--account", "mallory", "--sign-key", str(tmp_path / "k.pem"),
                                "--bundle", str(tmp_path / "http.json")])
    assert r.exit_code == 0, r.output
    assert "COPY" in r.output
    assert json.loads((tmp_path / "http.json").read_text())["body"]["suspect"]["kind"] == "http"
    server_app.state.gateway.close()


def test_cli_verify_errors_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["verify"])
    assert r.exit_code == 2 and "exactly one of --suspect" in r.output
    (tmp_path / "m.pkl").write_bytes(b"junk")
    r = runner.invoke(app, ["verify", "--suspect", str(tmp_path / "m.pkl")])
    assert r.exit_code == 2 and "nothing to test against" in r.output
    r = runner.invoke(app, ["verify", "--suspect", str(tmp_path / "m.pkl"), "--watermarks", str(tmp_path / "none.db")])
    assert r.exit_code == 2 and "no watermark record" in r.output
    r = runner.invoke(app, ["verify", "--check", str(tmp_path / "missing.json")])
    assert r.exit_code == 2 and "not found" in r.output


def test_end_to_end_through_the_gateway(tmp_path: Path, victim: Any) -> None:
    """Attacker queries a watermarking gateway over its HTTP API; the owner proves the copy from the
    gateway's own record (read back through the config), and an honest account's record does not match."""
    from fastapi.testclient import TestClient

    from extractguard.gateway import create_app, parse_config
    from extractguard.watermark import WatermarkRecord

    v = victim
    cfg = parse_config({"model": {"name": "digits", "victim": "digits-logreg"}, "state_dir": str(tmp_path),
                        "storage": "memory://", "seed": 0,
                        "tiers": {"std": {"output": "probabilities", "watermark": {"fraction": 0.03, "cell_width": 0.3, "projections": 8}}}})
    gw_app = create_app(cfg, target=v.target)
    client = TestClient(gw_app)
    keys = gw_app.state.gateway.keys
    thief, honest = keys.create("thief", "std"), keys.create("honest", "std")
    rng = np.random.default_rng(1)
    pool = v.pool()
    X = np.clip(np.repeat(pool, 2, 0) + rng.normal(0, 1.0, size=(2 * len(pool), 64)), 0, 16)

    def ask(key: str, rows: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(rows), 200):
            body = {"inputs": [{"name": "input", "shape": [len(rows[i:i + 200]), 64], "datatype": "FP32",
                                "data": rows[i:i + 200].reshape(-1).tolist()}]}
            r = client.post("/v2/models/digits/infer", json=body, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200, r.text
            outs = {o["name"]: o for o in r.json()["outputs"]}
            out.append(np.reshape(outs["probabilities"]["data"], (-1, 10)))
        return np.concatenate(out)

    Y = ask(thief, X)
    ask(honest, v.dataset.X[v.splits.test])
    gw_app.state.gateway.close()
    clf = TorchClassifier("mlp", (64,), 10, hidden=(256, 128), epochs=200, min_steps=1000, max_steps=1000, weight_decay=0.0, seed=0).fit(X, Y)
    rec = WatermarkRecord(cfg.watermark_db_path, read_only=True)
    records = [rec.load(a) for a in rec.accounts()]
    rec.close()
    verdict = verify_suspect(CallableTarget(clf.predict_proba, v.schema), records, alpha=1e-6)
    by_account = {t.account: t for t in verdict.tests}
    assert verdict.is_copy and verdict.strongest is not None and verdict.strongest.account == "thief"
    assert by_account["thief"].p_value < 1e-6 and by_account["honest"].p_value > 1e-3


def test_cli_fingerprint_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["fingerprint", "--out", str(tmp_path / "fp.json")])
    assert r.exit_code == 2 and "exactly one of --victim or --model" in r.output
    (tmp_path / "m.pkl").write_bytes(b"junk")
    r = runner.invoke(app, ["fingerprint", "--out", str(tmp_path / "fp.json"), "--model", str(tmp_path / "m.pkl")])
    assert r.exit_code == 2 and "--model needs --data" in r.output
    r = runner.invoke(app, ["verify", "--suspect", str(tmp_path / "m.pkl"), "--fingerprint", str(tmp_path / "m.pkl")])
    assert r.exit_code == 2 and "not a fingerprint file" in r.output
