"""The assessment matrix against a deployed gateway (`assess --config` with `target.remote`).

A real gateway (uvicorn on loopback) serves digits-logreg with four tiers: open probabilities
(the reference), label only, a watermarked tier and a tier whose rate detector suspends fast.
target.yaml reaches each tier through API keys exported as environment variables; the
watermarked and detecting tiers have one key (one account) per attack.  One small grid runs
through the CLI; the tests read its JSON and gate it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from checkout import ROOT
from extractguard.cli import app
from extractguard.errors import ConfigurationError
from extractguard.evaluate.matrix import load_matrix_config
from extractguard.gateway import create_app, parse_config

from gateway_helpers import UvicornThread

ATTACKS = ["random", "knockoff"]
TIERS: dict[str, dict[str, Any]] = {
    "open": {"output": "probabilities"},
    "label": {"output": "label"},
    "wm": {"output": "probabilities", "watermark": {"fraction": 0.2}},
    # The rate detector alarms above 100 rows a minute; suspension at level 1.5 (about 150 rows).
    "guard": {"output": "probabilities", "detection": {"detectors": ["rate"], "baseline_rows_per_hour": 600,
                                                       "responses": {"flag": 1.0, "suspend": 1.5}}},
}
PROBE_ROWS = 60


def write(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def invoke(*args: str, env: dict[str, str]) -> Any:
    return CliRunner().invoke(app, ["assess", *args], env={"COLUMNS": "160", **env})


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, victim: Any):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("remote-matrix")
    gw_cfg = {"model": {"name": "digits", "victim": "digits-logreg"}, "state_dir": str(d / "state"),
              "storage": "memory://", "tiers": TIERS, "max_rows_per_request": 100, "seed": 0}
    gw_path = write(d / "gateway.yaml", gw_cfg)
    app_ = create_app(parse_config(gw_cfg), target=victim.target, owner_data=victim.dataset.X[victim.splits.train])
    keys = app_.state.gateway.keys
    env: dict[str, str] = {}
    variants = []
    for tier in TIERS:
        per_attack = tier in ("wm", "guard")
        names = []
        for a in ATTACKS if per_attack else ["all"]:
            var = f"EG_TEST_MATRIX_{tier.upper()}_{a.upper()}"
            env[var] = keys.create(f"acct-{tier}-{a}", tier)
            names.append(var)
        variants.append({"name": tier, "key_env": names, **({"output": "label"} if tier == "label" else {})})
    np.save(d / "attacker.npy", victim.pool())
    probe_X, probe_y = victim.probe()
    np.savez(d / "probe.npz", X=probe_X[:PROBE_ROWS], y=probe_y[:PROBE_ROWS])
    with UvicornThread(app_) as server:
        target = {
            "url": server.url, "protocol": "oip", "model": "digits",
            "schema": {"input_shape": [1, 8, 8], "n_classes": 10, "low": 0, "high": 16},
            "output": "probabilities", "price_per_query": 0.01, "concurrency": 1, "max_rows_per_request": 25,
            "attacker_data": "attacker.npy", "probe_data": "probe.npz",
            "authorization": {"statement": "Test gateway owned by this test suite; extraction testing allowed.",
                              "owner": "ExtractGuard tests"},
            "variants": variants,
        }
        write(d / "target.yaml", target)
        yield {"dir": d, "env": env, "gateway": gw_path, "victim": victim, "probe_y": probe_y[:PROBE_ROWS]}


def grid(**over: Any) -> dict[str, Any]:
    g: dict[str, Any] = {
        "target": {"remote": "target.yaml"},
        "attacks": ATTACKS,
        "budgets": [50, 150],
        "defenses": {
            "open": {"variant": "open"},
            "label": {"variant": "label"},
            "wm": {"variant": "wm", "gateway": {"config": "gateway.yaml", "tier": "wm"}},
            "guard": {"variant": "guard"},
        },
        "seed": 0,
    }
    g.update(over)
    return g


@pytest.fixture(scope="module")
def run(deployed: dict[str, Any]) -> dict[str, Any]:
    d = deployed["dir"]
    cfg = write(d / "assess.yaml", grid())
    out = d / "report"
    res = invoke("--config", str(cfg), "--out", str(out), "--fail-if", "fidelity > 0.5 at 150 for defense=open",
                 env=deployed["env"])
    return {"result": res, "out": out, "config": cfg, "report": json.loads((out / "report.json").read_text())}


def test_grid_runs_serially_and_its_gate_names_the_cell(run: dict[str, Any]) -> None:
    res, r = run["result"], run["report"]
    assert res.exit_code == 1, res.output
    # Uniform random queries barely teach a digits copy; knockoff's natural images do.
    assert "FAIL attack=knockoff defense=open budget=150" in res.output
    assert "attack=random defense=open" not in res.output and "attack=knockoff defense=label" not in res.output
    assert r["jobs"] == 1 and "one at a time" in res.output
    assert (run["out"] / "report.html").is_file()


def test_cells_have_fidelity_cost_and_transcripts(run: dict[str, Any], deployed: dict[str, Any]) -> None:
    r = run["report"]
    assert [(c["attack"], c["defense"]) for c in r["cells"]] == [(a, d) for d in grid()["defenses"] for a in ATTACKS]
    cells = {(c["attack"], c["defense"]): c for c in r["cells"]}
    for d in ("open", "label", "wm"):
        for a in ATTACKS:
            c = cells[(a, d)]
            assert c["error"] is None, c["error"]
            assert [p["budget"] for p in c["points"]] == [50, 150]
            assert all(0.0 <= p["fidelity"] <= 1.0 for p in c["points"])
            assert c["queries"] == 150 and c["cost"]["spend"] == pytest.approx(1.5)
            assert c["detection"]["first_flag"] is None and "not observed" in c["detection"]["explanation"]
    # Through the open tier the copy is faithful; label-only answers make a worse copy.
    assert cells[("knockoff", "open")]["points"][-1]["fidelity"] > 0.8
    assert cells[("knockoff", "label")]["points"][-1]["fidelity"] < cells[("knockoff", "open")]["points"][-1]["fidelity"]
    paid = r["target"]["paid_queries"]
    # Every answer was paid once: probe rows once per variant, 150 per attack cell (guard: fewer).
    assert paid["per_variant"]["open"] == {"attack": 300, "evaluation": PROBE_ROWS}
    assert paid["per_variant"]["label"] == {"attack": 300, "evaluation": PROBE_ROWS}
    for v in ("open", "label", "wm", "guard"):
        assert (run["out"] / "transcripts" / f"{v}.sqlite").is_file()


def test_honest_utility_against_the_reference(run: dict[str, Any], deployed: dict[str, Any]) -> None:
    h = {n: d["honest"] for n, d in run["report"]["defenses"].items()}
    assert h["open"]["agreement"] == 1.0 and h["open"]["mean_l1"] == 0.0
    assert h["label"]["agreement"] == 1.0 and h["label"]["mean_l1"] > 0.0  # same labels, one-hot scores
    assert h["wm"]["agreement"] < 1.0  # a fifth of the answers carry a keyed wrong label
    assert h["open"]["flagged"] is None  # not measurable from outside
    y = deployed["probe_y"]
    real = deployed["victim"].target.predict(np.load(deployed["dir"] / "probe.npz")["X"]).probabilities
    assert h["open"]["accuracy"] == pytest.approx(float(np.mean(real.argmax(1) == y)))


def test_watermark_verdict_from_the_gateway_record(run: dict[str, Any]) -> None:
    cells = {(c["attack"], c["defense"]): c for c in run["report"]["cells"]}
    for a in ATTACKS:
        last = cells[(a, "wm")]["points"][-1]
        assert last["watermark_marked"] > 0 and last["watermark_p"] is not None
        assert cells[(a, "wm")]["account"] == "own key"
        assert cells[(a, "open")]["points"][-1]["watermark_p"] is None  # no gateway record named: absent
    assert cells[("knockoff", "wm")]["points"][-1]["watermark_p"] < 1e-3


def test_suspension_seen_from_outside(run: dict[str, Any]) -> None:
    cells = {(c["attack"], c["defense"]): c for c in run["report"]["cells"]}
    for a in ATTACKS:
        c = cells[(a, "guard")]
        assert c["error"] is not None and "stopped by the gateway's suspend response" in c["error"] and "403" in c["error"]
        sus = c["detection"]["responses"]["suspend"]
        assert 0 < sus < 150 and c["detection"]["first_flag"] == sus
        assert c["enforced"]["suspended_at"] == sus
        assert all(p["queries"] <= sus for p in c["points"])


def test_gate_on_detection_and_absent_metrics(run: dict[str, Any], deployed: dict[str, Any]) -> None:
    from extractguard.evaluate.gate import evaluate_rules, parse_rules

    r = run["report"]
    rules = parse_rules(["suspension_queries > 149 for defense=guard"], r["budgets"], r["attacks"], list(r["defenses"]))
    assert evaluate_rules(rules, r) == []
    rules = parse_rules(["detection_queries < 1000 for defense=open"], r["budgets"], r["attacks"], list(r["defenses"]))
    assert evaluate_rules(rules, r) == []  # not observed = infinitely many
    rules = parse_rules(["watermark_p > 0.5 for defense=label"], r["budgets"], r["attacks"], list(r["defenses"]))
    with pytest.raises(ConfigurationError, match="no cell has a value"):
        evaluate_rules(rules, r)


def test_rerun_refuses_to_pay_twice_without_force(run: dict[str, Any], deployed: dict[str, Any]) -> None:
    res = invoke("--config", str(run["config"]), "--out", str(run["out"]), env=deployed["env"])
    assert res.exit_code == 2
    assert "error:" in res.output and "already holds" in res.output and "--force" in res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("change, message", [
    ({"defenses": {"a": {"variant": "nope"}}}, "has no variant 'nope'"),
    ({"defenses": {"a": {"variant": "open", "output": "label"}}}, "output describe a simulated defense"),
    ({"defenses": {"a": {}}}, "needs variant: NAME"),
    ({"defenses": {"a": {"variant": "label", "gateway": {"config": "gateway.yaml", "tier": "open"}}}},
     "reads 'label' answers but tier 'open' serves 'probabilities'"),
    ({"price_per_query": 1.0}, "price_per_query: with target.remote"),
    ({"target": {"remote": "target.yaml", "n_classes": 3}}, "drop n_classes"),
    ({"target": {"remote": "missing.yaml"}}, "target config not found"),
])
def test_config_mistakes_are_one_line(deployed: dict[str, Any], change: dict[str, Any], message: str) -> None:
    d = deployed["dir"]
    cfg = write(d / "bad.yaml", grid(**change))
    with pytest.raises(ConfigurationError, match=message):
        load_matrix_config(cfg)
    res = invoke("--config", str(cfg), "--out", str(d / "bad-out"), env=deployed["env"])
    assert res.exit_code == 2 and res.output.startswith("error:") and len(res.output.strip().splitlines()) == 1, res.output


def test_variant_on_a_local_target_is_refused(tmp_path: Path) -> None:
    cfg = write(tmp_path / "a.yaml", {"target": {"victim": "iris-logreg"}, "attacks": ["random"], "budgets": [20],
                                      "defenses": {"a": {"variant": "open"}}})
    with pytest.raises(ConfigurationError, match="only a remote target"):
        load_matrix_config(cfg)


def test_force_discards_and_pays_again_reference_fetched_when_not_a_defense(run: dict[str, Any], deployed: dict[str, Any]) -> None:
    d = deployed["dir"]
    cfg = write(d / "small.yaml", grid(attacks=["random"], budgets=[50], defenses={"label": {"variant": "label"}}))
    res = invoke("--config", str(cfg), "--out", str(run["out"]), "--force", env=deployed["env"])
    assert res.exit_code == 0, res.output
    r = json.loads((run["out"] / "report.json").read_text())
    # The reference's probe answers are still the yardstick: fetched from the open tier, paid once.
    assert r["target"]["paid_queries"]["per_variant"] == {"open": {"attack": 0, "evaluation": PROBE_ROWS},
                                                          "label": {"attack": 50, "evaluation": PROBE_ROWS}}
    assert r["defenses"]["label"]["honest"]["agreement"] == 1.0


def test_shipped_remote_example_is_valid() -> None:
    cfg = load_matrix_config(ROOT / "examples" / "assess-remote.yaml")
    assert cfg.target.remote is not None and cfg.jobs == 1
    assert cfg.defenses["reverse-sigmoid"].defenses == [{"name": "reverse-sigmoid", "beta": 0.7, "gamma": 0.2}]
