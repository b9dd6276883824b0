"""The assessment matrix (`extractguard assess --config`), its CI gate and its HTML report.

One small grid (breast_cancer-logreg, two attacks, four defenses, three budgets) runs once through
the CLI; the tests read its JSON, gate it, open its HTML in a real headless Chromium, and rerun it
in parallel to check the results do not depend on scheduling.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from checkout import ROOT
from extractguard.cli import app
from extractguard.errors import ConfigurationError
from extractguard.evaluate.gate import evaluate_rules, parse_rule, parse_rules
from extractguard.evaluate.matrix import load_matrix_config, run_matrix

GRID: dict[str, Any] = {
    "target": {"victim": "breast_cancer-logreg"},
    "attacks": ["random", "knockoff"],
    "budgets": [30, 100, 220],
    "defenses": {
        "open": {},
        "label": {"output": "label"},
        "wm": {"watermark": {"fraction": 0.1}},
        # low response levels so that a 220-query attack on a small victim reaches them
        "det": {"detection": {"responses": {"flag": 1.0, "throttle": 1.2, "challenge": 1.5, "suspend": 2.0}}},
    },
    "price_per_query": 0.01,
    "seed": 0,
    "jobs": 1,
}


def write(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False) if not isinstance(data, str) else data)
    return path


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["assess", *args], env={"COLUMNS": "160"})


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("matrix")
    cfg = write(d / "assess.yaml", GRID)
    out = d / "report"
    # A rule the open defense cannot cross (its honest users get the model's own answers).
    res = invoke("--config", str(cfg), "--out", str(out), "--fail-if", "honest_utility < 0.99 for defense=open")
    return {"result": res, "dir": d, "config": cfg, "out": out, "report": json.loads((out / "report.json").read_text())}


def test_grid_runs_and_passes_its_gate(run: dict[str, Any]) -> None:
    res = run["result"]
    assert res.exit_code == 0, res.output
    assert "gate passed: 1 rule(s)" in res.output
    assert (run["out"] / "report.html").is_file()


def test_json_has_every_cell_with_its_measurements(run: dict[str, Any]) -> None:
    r = run["report"]
    assert [(c["attack"], c["defense"]) for c in r["cells"]] == [
        (a, d) for d in GRID["defenses"] for a in GRID["attacks"]
    ]
    assert r["budgets"] == [30, 100, 220]
    for c in r["cells"]:
        assert c["error"] is None
        assert [p["budget"] for p in c["points"]] == [30, 100, 220]
        assert all(0.0 <= p["fidelity"] <= 1.0 for p in c["points"])
        assert c["queries"] == 220
        assert c["cost"]["spend"] == pytest.approx(2.2)
        # The attacker's time is a part of the cell's (nested intervals of one monotonic clock);
        # test_attacker_cost_excludes_owner_side_scoring checks the accounting on a fake clock.
        assert 0 <= c["cost"]["cpu_seconds"] <= c["cost"]["cell_cpu_seconds"]
        assert 0 <= c["cost"]["wall_seconds"] <= c["cost"]["cell_wall_seconds"]
    cells = {(c["attack"], c["defense"]): c for c in r["cells"]}
    # Knockoff on natural rows copies the open model well; random noise does not.
    assert cells["knockoff", "open"]["points"][-1]["fidelity"] > 0.85
    assert cells["random", "open"]["points"][-1]["fidelity"] < cells["knockoff", "open"]["points"][-1]["fidelity"]
    # The watermark verdict exists only where the defense watermarks.
    assert all(p["watermark_p"] is None for c in r["cells"] if c["defense"] != "wm" for p in c["points"])
    wm_last = cells["knockoff", "wm"]["points"][-1]
    assert wm_last["watermark_marked"] > 0
    for c in (cells["random", "wm"], cells["knockoff", "wm"]):  # two classes: the control-bound test, p >= beta
        marked = [p["watermark_marked"] for p in c["points"]]
        assert marked == sorted(marked), marked  # marks only accumulate as the attacker queries
        for p in c["points"]:
            assert p["watermark_copy"] is (p["watermark_p"] < 1e-6) and 1e-7 <= p["watermark_p"] <= 1.0, p
    # Detection only where configured; its timeline is ordered.
    assert not cells["knockoff", "open"]["detection"]["enabled"]
    det = cells["knockoff", "det"]["detection"]
    assert det["enabled"] and det["first_flag"] is not None
    resp = det["responses"]
    assert resp["flag"] is not None and resp["flag"] <= 220


def test_enforced_copy_is_the_last_one_before_suspension(run: dict[str, Any]) -> None:
    suspended = [c for c in run["report"]["cells"] if c["enforced"]["suspended_at"] is not None]
    assert suspended, "the low response levels of 'det' should suspend at least one attacker"
    for c in suspended:
        sus = c["enforced"]["suspended_at"]
        before = [p for p in c["points"] if p["queries"] <= sus]
        if before:
            assert c["enforced"]["budget"] == before[-1]["budget"]
            assert c["enforced"]["fidelity"] == before[-1]["fidelity"]
        else:
            assert c["enforced"]["fidelity"] is None


def test_honest_utility_per_defense(run: dict[str, Any]) -> None:
    d = run["report"]["defenses"]
    assert d["open"]["honest"]["agreement"] == 1.0 and d["open"]["honest"]["mean_l1"] == 0.0
    assert d["label"]["honest"]["agreement"] == 1.0 and d["label"]["honest"]["mean_l1"] > 0.0
    # 10% of the watermark tier's answers carry a wrong keyed label: honest users pay for it.
    assert 0.75 < d["wm"]["honest"]["agreement"] < 1.0
    # The honest account sends the 57 rows of its half of the held-out split: fewer than any
    # detector's warm-up (PRADA tests from 100 queries, the window detectors from 200) and 'det'
    # configures no rate baseline, so no signal is ever computed and it cannot be flagged.
    honest_det = d["det"]["honest"]
    assert honest_det["rows"] == 57 and honest_det["detection"]["enabled"]
    assert honest_det["detection"]["max_level"] == 0.0 and honest_det["detection"]["signals"] == {}
    assert honest_det["flagged"] is False and d["open"]["honest"]["flagged"] is None
    frontier = {p["defense"]: p for p in run["report"]["frontier"]}
    assert set(frontier) == set(GRID["defenses"])
    assert any(p["pareto"] for p in frontier.values())


def test_gate_rules_on_the_report(run: dict[str, Any]) -> None:
    r = run["report"]
    grid = (r["budgets"], r["attacks"], list(r["defenses"]))
    best = max(c["points"][-1]["fidelity"] for c in r["cells"])
    fails = evaluate_rules(parse_rules([f"fidelity >= {best} at 220"], *grid), r)
    assert fails and all(f.value == best and f.budget == 220 for f in fails)
    assert evaluate_rules(parse_rules([f"fidelity > {best} at 220"], *grid), r) == []
    # not detected counts as never: a 'must detect within N' rule fails on the open defense
    fails = evaluate_rules(parse_rules(["detection_queries > 1000 for defense=open"], *grid), r)
    assert {f.attack for f in fails} == {"random", "knockoff"} and all(math.isinf(f.value) for f in fails)
    with pytest.raises(ConfigurationError, match="no cell has a value for watermark_p"):
        evaluate_rules(parse_rules(["watermark_p > 0.5 for defense=open"], *grid), r)
    honest = evaluate_rules(parse_rules(["honest_utility < 0.99"], *grid), r)
    assert [f.defense for f in honest] == ["wm"] and honest[0].attack == "*"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("fidelty > 0.8", "unknown metric 'fidelty'"),
        ("fidelity >> 0.8", "write METRIC OP NUMBER"),
        ("fidelity => 0.8", "bad operator '=>'"),
        ("fidelity > high", "'high' is not a number"),
        ("fidelity > 0.8 at 500", "budget 500 is not on the ladder (30, 100, 220)"),
        ("honest_utility < 0.9 at 100", "one number per cell"),
        ("fidelity > 0.8 for defense=opn", "defense 'opn' is not in the grid"),
        ("fidelity > 0.8 for model=x", "must be attack=NAME or defense=NAME"),
    ],
)
def test_bad_gate_rules_exit_2_before_running(run: dict[str, Any], rule: str, message: str) -> None:
    res = invoke("--config", str(run["config"]), "--out", str(run["dir"] / "unused"), "--fail-if", rule)
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], res.output
    assert not (run["dir"] / "unused").exists()


def test_crossed_gate_exits_1_and_names_the_cell(tmp_path: Path) -> None:
    grid = {**GRID, "attacks": ["knockoff"], "budgets": [40, 120], "defenses": {"open": {}, "label": {"output": "label"}}}
    cfg = write(tmp_path / "assess.yaml", grid)
    res = invoke("--config", str(cfg), "--out", str(tmp_path / "r"),
                 "--fail-if", "fidelity > 0.5 at 120 for defense=open", "--fail-if", "honest_utility < 0.5")
    assert res.exit_code == 1, res.output
    assert "gate failed: 1 cell(s)" in res.output
    assert "FAIL attack=knockoff defense=open budget=120: fidelity = " in res.output
    assert "defense=label" not in res.output.split("gate failed")[1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"attacks": ["random", "nope"]}, "attacks: unknown attack(s) nope"),
        ({"budgets": [0, 10]}, "budgets: budgets must be positive"),
        ({"colour": "blue"}, "colour: unknown key"),
        ({"defenses": {"open": {"ouput": "label"}}}, "defenses.open.ouput: unknown key"),
        ({"defenses": {"x": {"output": "top-zero"}}}, "defenses.x.output"),
        ({"defenses": {"x": {"defenses": [{"name": "nope"}]}}}, "unknown defense 'nope'"),
        ({"defenses": {"x": {"watermark": {"fraction": 0.9}}}}, "defenses.x.watermark.fraction"),
        ({"defenses": {"x": {"detection": {"detectors": ["psychic"]}}}}, "unknown detector(s) ['psychic']"),
        ({"target": {"victim": "digits-mlp", "model": "m.onnx"}}, "exactly one of target.victim, target.model or target.remote"),
        ({"target": {"remote": "target.yaml"}}, "price_per_query: with target.remote this comes from target.yaml"),
        ({"target": {"model": "m.joblib"}}, "target.model needs target.attacker_data"),
        ({"jobs": 0}, "jobs: Input should be greater than or equal to 1"),
    ],
)
def test_config_mistakes_are_one_line(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    cfg = write(tmp_path / "assess.yaml", {**GRID, **change})
    res = invoke("--config", str(cfg))
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: assess.yaml:") and message in lines[0], res.output


def test_other_command_line_mistakes(tmp_path: Path) -> None:
    for args, message in [
        (["--config", str(tmp_path / "missing.yaml")], "cannot read assessment config"),
        (["--config", str(write(tmp_path / "bad.yaml", "a: [1,"))], "bad.yaml is not valid YAML"),
        (["--config", str(write(tmp_path / "list.yaml", "- 1\n"))], "expected a YAML mapping"),
        (["--fail-if", "fidelity > 0.8"], "--fail-if gates an assessment matrix"),
        (["--config", str(write(tmp_path / "ok.yaml", GRID)), "--attack", "random"], "drop the other options"),
    ]:
        res = invoke(*args)
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert res.exit_code == 2 and len(lines) == 1 and message in lines[0], res.output
    small = write(tmp_path / "iris.yaml", {**GRID, "target": {"victim": "iris-logreg"}})
    res = invoke("--config", str(small))
    assert res.exit_code == 2 and "detection calibrates on half the held-out rows" in res.output


def _strip_timing(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for c in cells:
        c = json.loads(json.dumps(c))
        for k in ("wall_seconds", "cpu_seconds", "cell_wall_seconds", "cell_cpu_seconds"):
            c["cost"].pop(k)
        out.append(c)
    return out


def test_parallel_results_equal_serial(run: dict[str, Any], tmp_path: Path) -> None:
    # A cell depends only on the target, the seed and its own attack and defense, so a smaller
    # grid run in two worker processes must reproduce the serial run's cells exactly.
    sub = {**GRID, "attacks": ["knockoff"], "defenses": {k: GRID["defenses"][k] for k in ("wm", "det")}, "jobs": 2}
    parallel = run_matrix(load_matrix_config(write(tmp_path / "assess.yaml", sub))).to_dict()
    assert parallel["jobs"] == 2 and run["report"]["jobs"] == 1
    serial = [c for c in run["report"]["cells"] if c["attack"] == "knockoff" and c["defense"] in ("wm", "det")]
    assert [c["defense"] for c in parallel["cells"]] == ["wm", "det"]
    assert _strip_timing(parallel["cells"]) == _strip_timing(serial)
    assert parallel["defenses"] == {k: run["report"]["defenses"][k] for k in ("wm", "det")}


class _FakeClock:
    """Stands in for ``time.perf_counter`` and ``time.process_time``: it moves only when a test
    says how much work was done, so cost accounting is checked exactly, not against a real clock."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def spend(self, wall: float, cpu: float) -> None:
        self.wall += wall
        self.cpu += cpu


def test_attacker_cost_excludes_owner_side_scoring(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from extractguard.evaluate.ladder import fit_scored

    clock = _FakeClock()
    monkeypatch.setattr(time, "perf_counter", lambda: clock.wall)
    monkeypatch.setattr(time, "process_time", lambda: clock.cpu)

    class Attack:
        def fit(self, oracle: Any, budget: int, checkpoints: list[int], callback: Any) -> None:
            for b in checkpoints:
                clock.spend(2.0, 1.0)  # the attacker's own work up to this checkpoint
                callback(SimpleNamespace(budget=b))
            clock.spend(0.5, 0.25)

    def score(cp: Any) -> dict[str, Any]:
        clock.spend(10.0, 7.0)  # the owner scoring the copy on the probe: not the attacker's cost
        return {"budget": cp.budget}

    points, error, wall, cpu = fit_scored(Attack(), None, [30, 100, 220], score)
    assert points == [{"budget": 30}, {"budget": 100}, {"budget": 220}] and error is None
    assert (wall, cpu) == (pytest.approx(3 * 2.0 + 0.5), pytest.approx(3 * 1.0 + 0.25))


def test_unit_parse_rule() -> None:
    r = parse_rule("fidelity > 0.8 at 10_000 for attack=Knockoff defense=open")
    assert (r.metric, r.op, r.threshold, r.budget, r.scope) == ("fidelity", ">", 0.8, 10000, {"attack": "knockoff", "defense": "open"})
    assert parse_rule("detection_queries>=2000").crossed(2000.0)
    assert not parse_rule("honest_utility < 0.95").crossed(0.95)


# -- the report in a real browser -------------------------------------------------------------
def test_report_renders_in_headless_chromium(run: dict[str, Any]) -> None:
    from browser import open_page

    html_path = run["out"] / "report.html"
    html = html_path.read_text()
    assert "http://" not in html and "https://" not in html  # self-contained: nothing to fetch
    requests: list[str] = []
    with open_page(html_path.as_uri(), requests=requests) as (page, errors):
        sizes = {
            i: page.evaluate(
                "id => { const e = document.getElementById(id); if (!e) return null;"
                " const r = e.getBoundingClientRect(); return [e.complete, e.naturalWidth, e.naturalHeight, r.width, r.height]; }",
                i,
            )
            for i in ("frontier", "curves", "timeline")
        }
        rows = page.locator("#cells tbody tr").count()
        defense_rows = page.locator("#defenses-table tbody tr").count()
        title = page.title()
    assert errors == []
    assert requests == [html_path.as_uri()]
    for name, s in sizes.items():
        assert s is not None, f"#{name} missing"
        complete, nw, nh, w, h = s
        assert complete and nw > 100 and nh > 100 and w > 100 and h > 50, (name, s)
    assert rows == len(run["report"]["cells"]) == len(GRID["attacks"]) * len(GRID["defenses"])
    assert defense_rows == len(GRID["defenses"])
    assert title == "ExtractGuard assessment matrix"


def test_model_file_target(tmp_path: Path) -> None:
    """A scikit-learn file with the attacker's rows and labelled probe rows, relative to the config."""
    import joblib
    import numpy as np
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_wine(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(X))
    X, y = X[order], y[order]
    joblib.dump(make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X[:60], y[:60]), tmp_path / "wine.joblib")
    np.save(tmp_path / "pool.npy", X[60:118])
    np.savez(tmp_path / "probe.npz", X=X[118:], y=y[118:])
    grid = {"target": {"model": "wine.joblib", "attacker_data": "pool.npy", "probe_data": "probe.npz"},
            "attacks": ["knockoff"], "budgets": [20, 50], "defenses": {"open": {}, "top-1": {"output": "label"}}, "jobs": 1}
    cfg = write(tmp_path / "assess.yaml", grid)
    res = invoke("--config", str(cfg), "--out", str(tmp_path / "r"), "--fail-if", "honest_accuracy < 0.5")
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "r" / "report.json").read_text())
    assert r["target"]["format"] == "sklearn" and r["probe_size"] == len(X) - 118
    assert [c["queries"] for c in r["cells"]] == [50, 50]
    assert r["defenses"]["open"]["honest"]["accuracy"] == r["defenses"]["open"]["honest"]["model_accuracy"]


def test_defense_taken_from_a_gateway_tier(tmp_path: Path) -> None:
    write(tmp_path / "gw.yaml", {"model": {"victim": "breast_cancer-logreg"}, "state_dir": "state",
                                 "tiers": {"free": {"output": "label", "limits": ["60/minute"]},
                                           "pro": {"output": "rounded:2", "defenses": [{"name": "gaussian-noise", "sigma": 0.05}],
                                                   "watermark": {"fraction": 0.05}}}})
    grid = {**GRID, "defenses": {"free": {"gateway": {"config": "gw.yaml", "tier": "free"}},
                                 "pro": {"gateway": {"config": "gw.yaml", "tier": "pro"}}}}
    cfg = load_matrix_config(write(tmp_path / "assess.yaml", grid))
    assert str(cfg.defenses["free"].output) == "label" and cfg.defenses["free"].watermark is None
    pro = cfg.defenses["pro"]
    assert (str(pro.output), pro.defenses[0]["name"], pro.watermark.fraction) == ("rounded:2", "gaussian-noise", 0.05)
    assert "tier pro of gw.yaml" in pro.description
    for change, message in [
        ({"gateway": {"config": "gw.yaml", "tier": "gold"}}, "gateway gw.yaml has no tier 'gold' (tiers: free, pro)"),
        ({"gateway": {"config": "gw.yaml", "tier": "free"}, "output": "label"}, "takes its settings from gateway.tier; drop output"),
        ({"gateway": {"config": "missing.yaml", "tier": "free"}}, "cannot read gateway config"),
    ]:
        bad = write(tmp_path / "bad.yaml", {**GRID, "defenses": {"x": change}})
        res = invoke("--config", str(bad))
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert res.exit_code == 2 and len(lines) == 1 and message in lines[0], res.output


def test_shipped_example_config_is_valid() -> None:
    cfg = load_matrix_config(ROOT / "examples" / "assess.yaml")
    assert cfg.target.victim == "digits-mlp" and "open" in cfg.defenses and cfg.jobs == 2
    assert {"watermark", "detect"} <= set(cfg.defenses)
    rules = parse_rules(["fidelity > 0.8 at 1000 for defense=open", "detection_queries > 2000 for defense=detect",
                         "honest_utility < 0.95"], cfg.budgets, cfg.attacks, list(cfg.defenses))
    assert [r.metric for r in rules] == ["fidelity", "detection_queries", "honest_utility"]


def test_matrix_watermark_verdict_is_the_ownership_test_on_the_attackers_record(tmp_path: Path) -> None:
    """A copy that returns exactly the marked answers is identified against its account's record,
    with the p-value of an independent verify_suspect; the owner's model is not; another account has no marks."""
    from extractguard.evaluate.ladder import watermark_point
    from extractguard.evaluate.results import WatermarkVerdict
    from extractguard.oracle.targets import CallableTarget
    from extractguard.verify import verify_suspect
    from extractguard.victims import build_victim
    from extractguard.watermark import AnswerWatermark, WatermarkRecord

    v = build_victim("breast_cancer-logreg", seed=0)
    wm = AnswerWatermark(bytes(range(32)), fraction=0.1, control_fraction=0.2)
    rec = WatermarkRecord(tmp_path / "wm.db")
    rec.add("attacker-x", v.dataset.X, wm.apply(v.target.predict(v.dataset.X).probabilities, v.dataset.X, "attacker-x")[1])

    class Model:
        def __init__(self, fn: Any) -> None:
            self.predict_proba = fn

    copy = Model(lambda Z: wm.apply(v.target.predict(Z).probabilities, Z, "attacker-x")[0])
    owner = Model(lambda Z: v.target.predict(Z).probabilities)
    marks = rec.load("attacker-x")
    point = watermark_point(rec, "attacker-x", copy, v.schema, 1e-6)
    expected = verify_suspect(CallableTarget(copy.predict_proba, v.schema), [marks], alpha=1e-6).p_value
    assert point == WatermarkVerdict(expected, True, len(marks.marked_X))
    assert len(marks.marked_X) > 20 and 1e-7 <= expected < 1e-6
    honest = watermark_point(rec, "attacker-x", owner, v.schema, 1e-6)
    assert honest.is_copy is False and honest.p_value == 1.0
    strict = watermark_point(rec, "attacker-x", copy, v.schema, expected / 2)  # the config's alpha decides
    assert strict.is_copy is False and strict.p_value == expected
    assert watermark_point(rec, "attacker-y", copy, v.schema, 1e-6) == WatermarkVerdict(None, None, 0)
    rec.close()
