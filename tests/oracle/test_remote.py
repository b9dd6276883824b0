"""Remote targets against a real local HTTP server (uvicorn on 127.0.0.1, see tests/servers.py).

Covers the campaign contract: a SIGKILLed campaign resumed with --resume pays exactly its budget
(server-side count) and reaches the same fidelity as an uninterrupted one; throttling (429 with
Retry-After) and 500s lose no query and no retry goes out before Retry-After; Ctrl-C commits the
answers in flight; 401, an untrusted TLS certificate, an attack that cannot apply and a missing
authorization statement stop with one line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from extractguard.cli import app
from extractguard.errors import (
    AuthorizationError,
    BudgetExceededError,
    ConfigurationError,
    RemoteTargetError,
)
from extractguard.evaluate.campaign import run_campaign
from extractguard.oracle import BudgetLadder, Oracle, OutputSpec
from extractguard.oracle.remote import RemoteOracle, RemoteTarget, parse_retry_after
from extractguard.oracle.target_config import load_target_config, parse_target_config
from extractguard.oracle.transcript import SqliteTranscript

from checkout import ROOT, cli_env
from servers import ModelServer

AUTH = {"statement": "We own the digits-logreg test model and authorise extraction tests.", "owner": "EG tests"}
PROBE_ROWS = 120


@pytest.fixture(scope="module")
def data_dir(victim: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("remote-data")
    X, y = victim.probe()
    np.savez(d / "probe.npz", X=X[:PROBE_ROWS], y=y[:PROBE_ROWS])
    np.save(d / "pool.npy", victim.pool())
    return d


def config_dict(url: str, data_dir: Path, transcript: Path, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "url": url,
        "protocol": "oip",
        "model": "victim",
        "keys": ["key-1"],
        "schema": {"input_shape": [1, 8, 8], "n_classes": 10, "low": 0, "high": 16},
        "output": "probabilities",
        "max_rows_per_request": 20,
        "concurrency": 4,
        "backoff": 0.05,
        "transcript": str(transcript),
        "probe_data": str(data_dir / "probe.npz"),
        "attacker_data": str(data_dir / "pool.npy"),
        "authorization": AUTH,
    }
    cfg.update(over)
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def cli_args(target: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "extractguard", "assess", "--target", str(target), "--attack", "knockoff",
            "--budgets", "100,300", "--surrogate", "linear", "--seed", "3", "--out", str(out), *extra]


def fidelities(report_dir: Path) -> list[float]:
    data = json.loads((report_dir / "report.json").read_text())
    return [p["fidelity"] for run in data["runs"] for p in run["points"]]


# -- the must-show campaigns --------------------------------------------------------------------


def test_sigkilled_campaign_resumes_paying_exactly_its_budget(victim: Any, data_dir: Path, tmp_path: Path) -> None:
    budget = 300
    # Uninterrupted reference run with the same seed and settings (in-process: the CLI is a thin
    # wrapper over run_campaign, and this saves a slow interpreter start).
    with ModelServer(victim.target) as ref_srv:
        ref_cfg = parse_target_config(config_dict(ref_srv.url, data_dir, tmp_path / "ref.sqlite"))
        reference = run_campaign(ref_cfg, ["knockoff"], BudgetLadder([100, 300]), seed=3, surrogate="linear")
        assert ref_srv.counts.paid_rows == budget + PROBE_ROWS

    # Same campaign, killed with SIGKILL part-way through the attack's budget, then resumed.
    with ModelServer(victim.target, delay=0.1) as srv:
        cfg = write_config(tmp_path / "t.yaml", config_dict(srv.url, data_dir, tmp_path / "t.sqlite", concurrency=1))
        proc = subprocess.Popen(cli_args(cfg, tmp_path / "report"), env=cli_env(COLUMNS="160"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 240
            while srv.counts.paid_rows < PROBE_ROWS + 120 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        paid_at_kill = srv.counts.paid_rows
        assert PROBE_ROWS + 120 <= paid_at_kill < PROBE_ROWS + budget, "the kill must land mid-campaign"

        # Resume through the same CLI command, in-process (saves a second slow interpreter start).
        resumed = CliRunner().invoke(app, cli_args(cfg, tmp_path / "report", "--resume")[3:])
        assert resumed.exit_code == 0, resumed.output
        # Exactly the budget plus the probe answers were paid, across both sessions.
        assert srv.counts.paid_rows == budget + PROBE_ROWS
        # Rows recomputed by the server at most once per request in flight at the kill
        # (answered but not yet committed); those carried an Idempotency-Key and were not billed.
        assert srv.counts.rows_answered - srv.counts.paid_rows <= 20
        assert "replayed" in resumed.stdout

    assert fidelities(tmp_path / "report") == [p.fidelity for p in reference.runs[0].points]
    with SqliteTranscript(tmp_path / "t.sqlite") as store:
        assert store.paid_rows(purpose="attack") == budget
        assert store.paid_rows(purpose="evaluation") == PROBE_ROWS
        sessions = store.sessions()
    assert [s["resumed"] for s in sessions] == [False, True]
    assert all(s["authorization"]["statement"] == AUTH["statement"] for s in sessions)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["target"]["authorization"]["statement"] == AUTH["statement"]
    assert report["target"]["evaluation_queries"]["rows"] == PROBE_ROWS
    assert report["target"]["paid_queries"]["attack"] == {"knockoff": budget}
    assert report["runs"][0]["queries"] == budget
    page = (tmp_path / "report" / "report.html").read_text()
    assert AUTH["statement"] in page and f"evaluation {PROBE_ROWS}" in page and "not</b> charged" in page


def test_ctrl_c_lets_requests_in_flight_finish_and_commits_them(victim: Any, data_dir: Path, tmp_path: Path) -> None:
    # Ctrl-C (SIGINT) while attack requests are in flight (the server holds each for 0.2 s): the
    # campaign stops with one line, but every answer the server computed is in the transcript,
    # so the resumed campaign makes the server compute each row exactly once overall.
    budget = 200
    with ModelServer(victim.target, delay=0.2) as srv:
        cfg = write_config(tmp_path / "t.yaml", config_dict(srv.url, data_dir, tmp_path / "t.sqlite"))
        args = ["assess", "--target", str(cfg), "--attack", "random", "--budgets", "100,200", "--surrogate",
                "linear", "--out", str(tmp_path / "r")]
        finished = threading.Event()

        def press_ctrl_c() -> None:  # once the 3rd attack request (of 10) has reached the server
            while not finished.is_set():
                if srv.counts.requests >= PROBE_ROWS // 20 + 3:
                    os.kill(os.getpid(), signal.SIGINT)
                    return
                time.sleep(0.002)

        watcher = threading.Thread(target=press_ctrl_c, daemon=True)
        watcher.start()
        try:
            stopped = CliRunner().invoke(app, args)
        finally:
            finished.set()
            watcher.join()
        assert stopped.exit_code == 2 and "interrupted" in stopped.output and "--resume" in stopped.output
        with SqliteTranscript(tmp_path / "t.sqlite") as store:
            committed = store.paid_rows()
        assert PROBE_ROWS < committed < PROBE_ROWS + budget
        assert srv.counts.rows_answered == committed  # nothing computed and then thrown away

        resumed = CliRunner().invoke(app, [*args, "--resume"])
        assert resumed.exit_code == 0, resumed.output
        assert srv.counts.rows_answered == srv.counts.paid_rows == budget + PROBE_ROWS


def test_throttled_campaign_loses_nothing_and_honours_retry_after(victim: Any, data_dir: Path, tmp_path: Path) -> None:
    with ModelServer(victim.target, throttle=0.3, retry_after=1, seed=1) as srv:
        cfg = parse_target_config(config_dict(srv.url, data_dir, tmp_path / "t.sqlite"))
        result = run_campaign(cfg, ["random"], BudgetLadder([100, 200]), seed=0, surrogate="linear")
        counts = srv.counts
    assert counts.throttled >= 3  # ~30% of ~16 requests
    assert counts.violations == [], f"retries sent before Retry-After: {counts.violations}"
    assert counts.rows_answered == counts.paid_rows == 200 + PROBE_ROWS  # nothing lost, nothing paid twice
    assert result.runs[0].queries == 200
    assert result.target["transcript"]["this_session"]["throttled"] == counts.throttled
    # Every stored answer is the model's real answer for exactly the rows stored with it.
    with SqliteTranscript(tmp_path / "t.sqlite") as store:
        rows = store.rows("attack:random")
        assert rows.shape == (200, 64)
        stored = np.concatenate([store.lookup("attack:random", c, p)[1].scores  # type: ignore[index]
                                 for c in range(2) for p in range(5)])
    np.testing.assert_allclose(stored, victim.target.predict(rows).probabilities, rtol=0, atol=1e-12)


def test_intermittent_500s_are_retried(victim: Any, data_dir: Path, tmp_path: Path) -> None:
    with ModelServer(victim.target, fail=0.3, seed=2) as srv:
        cfg = parse_target_config(config_dict(srv.url, data_dir, tmp_path / "t.sqlite"))
        result = run_campaign(cfg, ["random"], BudgetLadder([100]), seed=0, surrogate="linear")
        counts = srv.counts
    assert counts.failed >= 2
    assert counts.paid_rows == counts.rows_answered == 100 + PROBE_ROWS
    assert result.target["transcript"]["this_session"]["server_errors"] == counts.failed


def test_retries_exhausted_stop_with_a_resumable_error(victim: Any, data_dir: Path, tmp_path: Path) -> None:
    with ModelServer(victim.target, fail=1.0) as srv:
        cfg = parse_target_config(config_dict(srv.url, data_dir, tmp_path / "t.sqlite", retries=2))
        with pytest.raises(RemoteTargetError, match="after 3 attempts.*--resume") as err:
            run_campaign(cfg, ["random"], BudgetLadder([50]), surrogate="linear")
    assert "\n" not in str(err.value)


def test_unauthorized_endpoint_stops_the_campaign(victim: Any, data_dir: Path, tmp_path: Path) -> None:
    with ModelServer(victim.target, deny_all=True) as srv:
        target = write_config(tmp_path / "t.yaml", config_dict(srv.url, data_dir, tmp_path / "t.sqlite"))
        res = CliRunner().invoke(app, ["assess", "--target", str(target), "--attack", "random", "--budgets", "50",
                                       "--out", str(tmp_path / "r")])
        assert res.exit_code == 2
        assert "HTTP 401" in res.output and "API key #1 of 1" in res.output
        assert srv.counts.unauthorized == srv.counts.requests <= 4  # one per request in flight, no retries
        assert srv.counts.rows_answered == 0


def test_target_without_authorization_is_refused(victim: Any, data_dir: Path, tmp_path: Path) -> None:
    with ModelServer(victim.target) as srv:
        cfg = config_dict(srv.url, data_dir, tmp_path / "t.sqlite")
        del cfg["authorization"]
        target = write_config(tmp_path / "t.yaml", cfg)
        res = CliRunner().invoke(app, ["assess", "--target", str(target)])
        assert res.exit_code == 2
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and "authorization" in lines[0]
        assert res.stdout == "", res.stdout
        assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
        assert srv.counts.requests == 0
        assert not (tmp_path / "t.sqlite").exists()


def test_attack_that_cannot_apply_is_refused_before_anything_is_paid(victim: Any, data_dir: Path,
                                                                    tmp_path: Path) -> None:
    # functionally-equivalent needs logits; this endpoint gives probabilities.  Without the
    # pre-flight check the probe answers would be bought first, then the attack would refuse.
    with ModelServer(victim.target) as srv:
        cfg = parse_target_config(config_dict(srv.url, data_dir, tmp_path / "t.sqlite"))
        with pytest.raises(ConfigurationError, match="needs one of: logits"):
            run_campaign(cfg, ["knockoff", "functionally-equivalent"], BudgetLadder([50]))
        assert srv.counts.requests == 0
    assert not (tmp_path / "t.sqlite").exists()


@pytest.mark.parametrize(
    "auth, message",
    [
        ({"statement": "   ", "owner": "x"}, "authorization.statement"),
        ({"statement": "We own it and may test it.", "owner": ""}, "authorization.owner"),
        ({"owner": "x"}, "authorization.statement"),
        ({"statement": "We own it and may test it.", "owner": "x", "expires": "2001-01-01"}, "expired on 2001-01-01"),
    ],
)
def test_blank_or_expired_authorization_is_refused(data_dir: Path, tmp_path: Path, auth: dict[str, str],
                                                    message: str) -> None:
    cfg = config_dict("http://127.0.0.1:9", data_dir, tmp_path / "t.sqlite", authorization=auth)
    with pytest.raises((ConfigurationError, AuthorizationError), match=message):
        run_campaign(parse_target_config(cfg), ["random"], BudgetLadder([10]))


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        ({"url": "ftp://host"}, "url: must start with http"),
        ({"protocol": "grpc"}, "protocol"),
        ({"model": None}, "needs 'model'"),
        ({"output": "top-zero"}, "unknown output mode"),
        ({"concurrency": 0}, "concurrency"),
        ({"colour": "red"}, "colour"),
        ({"protocol": "json"}, "needs a 'json' block"),
        ({"json": {"request": {"x": 1}, "scores_path": "a"}, "protocol": "json"}, "placeholder"),
        ({"json": {"request": "{{rows}}", "scores_path": "a[["}, "protocol": "json"}, "JMESPath"),
        ({"schema": {"input_shape": [64]}}, "schema.n_classes"),
    ],
)
def test_config_errors_are_one_line(data_dir: Path, tmp_path: Path, change: dict[str, Any], message: str) -> None:
    cfg = config_dict("http://127.0.0.1:9", data_dir, tmp_path / "t.sqlite")
    cfg.update(change)
    with pytest.raises(ConfigurationError, match=message) as err:
        parse_target_config(cfg)
    assert "\n" not in str(err.value)


def test_yaml_paths_resolve_and_keys_come_from_env(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config_dict("http://127.0.0.1:9", data_dir, Path("runs/t.sqlite"), keys=[], key_env=["EG_TEST_KEY"])
    path = write_config(tmp_path / "target.yaml", cfg)
    loaded = load_target_config(path)
    assert loaded.transcript_path == tmp_path / "runs" / "t.sqlite"
    with pytest.raises(ConfigurationError, match="EG_TEST_KEY"):
        loaded.api_keys()
    monkeypatch.setenv("EG_TEST_KEY", "secret")
    assert loaded.api_keys() == ["secret"]
    assert "secret" not in json.dumps(loaded.describe())
    (tmp_path / "bad.yaml").write_text("url: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_target_config(tmp_path / "bad.yaml")


def test_example_target_yaml_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    example = ROOT / "examples" / "target.yaml"
    cfg = load_target_config(example)
    assert cfg.authorization.owner and cfg.input_schema.n_features == 64
    monkeypatch.setenv("EXTRACTGUARD_API_KEY", "k")
    assert cfg.api_keys() == ["k"]


# -- protocol details ---------------------------------------------------------------------------


def test_generic_json_api_with_x_api_key_and_key_rotation(victim: Any, data_dir: Path, tmp_path: Path) -> None:
    with ModelServer(victim.target, keys=("a", "b")) as srv:
        cfg = parse_target_config(config_dict(
            srv.url + "/json/predict", data_dir, tmp_path / "t.sqlite", protocol="json", model=None,
            keys=["a", "b"], auth_header="X-API-Key", auth_scheme="",
            json={"request": {"data": {"instances": "{{rows}}"}},
                  "scores_path": "result.predictions[*].probs", "label_path": "result.predictions[*].class"},
        ))
        target = RemoteTarget(cfg)
        X = victim.probe()[0][:50].astype(np.float64)  # float32 rows would be computed in float32
        answer = target.answer(X)
        assert srv.counts.by_key == {"a": 2, "b": 1}  # 3 requests of <= 20 rows, keys in turn
    np.testing.assert_allclose(answer.scores, victim.target.predict(X).probabilities, atol=1e-12)
    assert np.array_equal(answer.labels, victim.target.predict(X).probabilities.argmax(1))


def test_top_k_answers_over_oip(victim: Any, data_dir: Path, tmp_path: Path) -> None:
    with ModelServer(victim.target, output="top-3") as srv:
        cfg = parse_target_config(config_dict(srv.url, data_dir, tmp_path / "t.sqlite", output="top-3"))
        with SqliteTranscript(tmp_path / "t.sqlite") as store:
            oracle = RemoteOracle(RemoteTarget(cfg), store, "manual", budget=30)
            X = victim.pool()[:30]
            answer = oracle.query(X)
            with pytest.raises(BudgetExceededError):
                oracle.query(X[:1])
    p = victim.target.predict(X).probabilities
    assert answer.top_indices is not None and answer.top_indices.shape == (30, 3)
    assert np.array_equal(answer.top_indices[:, 0], p.argmax(1))
    assert srv.counts.paid_rows == 30


def test_spend_cap_holds_across_resumes(victim: Any, data_dir: Path, tmp_path: Path) -> None:
    with ModelServer(victim.target) as srv:
        cfg = parse_target_config(config_dict(srv.url, data_dir, tmp_path / "t.sqlite", price_per_query=0.01,
                                              spend_cap=2.0))  # 200 rows: the 120 probe rows + 80
        with pytest.raises(BudgetExceededError, match="spend cap"):
            run_campaign(cfg, ["random"], BudgetLadder([100]), surrogate="linear")
        paid = srv.counts.paid_rows
        assert paid <= 200
        with pytest.raises(BudgetExceededError, match="spend cap"):
            run_campaign(cfg, ["random"], BudgetLadder([100]), surrogate="linear", resume=True)
        assert srv.counts.paid_rows == paid  # the resumed session could send nothing more


def test_resume_refuses_changed_settings_and_fresh_run_refuses_old_transcript(
    victim: Any, data_dir: Path, tmp_path: Path
) -> None:
    with ModelServer(victim.target) as srv:
        cfg = parse_target_config(config_dict(srv.url, data_dir, tmp_path / "t.sqlite"))
        run_campaign(cfg, ["random"], BudgetLadder([40]), seed=0, surrogate="linear")
        with pytest.raises(ConfigurationError, match="--resume"):
            run_campaign(cfg, ["random"], BudgetLadder([40]), seed=0, surrogate="linear")
        with pytest.raises(ConfigurationError, match="seed: was 0, now 1"):
            run_campaign(cfg, ["random"], BudgetLadder([40]), seed=1, surrogate="linear", resume=True)
        before = srv.counts.paid_rows
        again = run_campaign(cfg, ["random"], BudgetLadder([40]), seed=0, surrogate="linear", resume=True)
        assert srv.counts.paid_rows == before
        assert again.target["transcript"]["this_session"]["rows_replayed"] == 40 + PROBE_ROWS


def test_resumed_oracle_counts_already_paid_rows_exactly_once(victim: Any, data_dir: Path, tmp_path: Path) -> None:
    """A run stopped after 60 of its 100 queries, then resumed: the 60 paid rows are replayed from
    the transcript and counted once by the oracle (the one counter), the 40 others are sent."""
    from extractguard.attacks import RandomQueries

    with ModelServer(victim.target) as srv:
        cfg = parse_target_config(config_dict(srv.url, data_dir, tmp_path / "t.sqlite"))
        with SqliteTranscript(tmp_path / "t.sqlite") as store:
            first = RemoteOracle(RemoteTarget(cfg), store, "attack:random", budget=100)
            RandomQueries(surrogate="linear", batch_size=20, seed=0).fit(first, budget=60)
            assert (first.queries_used, first.sent, first.replayed) == (60, 60, 0)
        assert srv.counts.paid_rows == 60
        with SqliteTranscript(tmp_path / "t.sqlite") as store:  # a new session, as after a kill
            resumed = RemoteOracle(RemoteTarget(cfg), store, "attack:random", budget=100)
            attack = RandomQueries(surrogate="linear", batch_size=20, seed=0).fit(resumed)
            assert attack.queries_ == resumed.queries_used == 100 and resumed.remaining == 0
            assert (resumed.replayed, resumed.sent, resumed.calls) == (60, 40, 5)
            assert store.paid_rows() == 100
            with pytest.raises(BudgetExceededError):
                resumed.query(victim.pool()[:1])
        assert srv.counts.paid_rows == srv.counts.rows_answered == 100  # nothing paid twice, nothing sent past


def test_retry_after_parsing() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == pytest.approx(10.0)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0


def test_local_oracle_can_record_into_sqlite(victim: Any, tmp_path: Path) -> None:
    with SqliteTranscript(tmp_path / "local.sqlite") as store:
        oracle = Oracle(victim.target, output=OutputSpec.parse("rounded:2"), transcript=store)
        oracle.query(victim.pool()[:7])
        oracle.query(victim.pool()[7:10])
        assert store.runs() == {"local": 10}
        _, second = store.lookup("local", 1, 0)  # type: ignore[misc]
    assert second.scores is not None and np.allclose(second.scores.sum(1), 1, atol=0.06)


def test_tls_is_verified_by_default_and_a_private_ca_can_be_trusted(victim: Any, data_dir: Path,
                                                                     tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    X = victim.probe()[0][:30].astype(np.float64)
    with ModelServer(victim.target, tls_cert=str(tmp_path / "server.pem")) as srv:
        assert srv.url.startswith("https://")
        # Default: verification on; the private CA is unknown, so the campaign stops at once.
        target = RemoteTarget(parse_target_config(config_dict(srv.url, data_dir, tmp_path / "a.sqlite")))
        with pytest.raises(RemoteTargetError, match="TLS certificate .* not trusted.*tls_verify") as err:
            target.answer(X)
        assert "\n" not in str(err.value) and target.stats.retries == 0
        assert srv.counts.requests == 0
        # Trusting the private CA's bundle (path relative to the YAML file) works.
        cfg = write_config(tmp_path / "t.yaml", config_dict(srv.url, data_dir, tmp_path / "b.sqlite",
                                                            tls_verify="ca.pem"))
        answer = RemoteTarget(load_target_config(cfg)).answer(X)
        assert srv.counts.rows_answered == 30
    np.testing.assert_allclose(answer.scores, victim.target.predict(X).probabilities, atol=1e-12)
    missing = parse_target_config(config_dict("https://127.0.0.1:9", data_dir, tmp_path / "c.sqlite",
                                              tls_verify="nowhere.pem"))
    with pytest.raises(ConfigurationError, match="CA bundle not found"):
        RemoteTarget(missing).answer(X)
