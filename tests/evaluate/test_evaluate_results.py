"""The matrix's typed results: ``to_dict`` is report.json, and ``from_dict`` reads it back whole
(the gate judges a saved report.json through it)."""

from __future__ import annotations

import json

from extractguard.evaluate.frontier import frontier
from extractguard.evaluate.gate import evaluate_rules, parse_rules
from extractguard.evaluate.ladder import enforced_copy
from extractguard.evaluate.results import (
    Cell,
    CellCost,
    CellPoint,
    DefenseResult,
    Detection,
    HonestUtility,
    MatrixReport,
    WatermarkVerdict,
)


def _report() -> MatrixReport:
    points = [CellPoint(50, 50, 0.6, 0.7, 0.5), CellPoint(100, 100, 0.8, None, 1.0).with_watermark(WatermarkVerdict(1e-9, True, 12))]
    local_det = Detection(True, 60, {"rate": 60}, {"flag": 60, "suspend": 80}, 80, 2.5, "rate fired")
    local = Cell("knockoff", "det", "Orekondy et al. 2019", "probabilities", None, points, 100, 4, local_det,
                 enforced_copy(points, local_det), CellCost(100, 1.0, 0, 0.0, 1.5, 1.2, 2.0, 1.8))
    remote_det = Detection(True, None, {}, {}, None, None, "not observed", observed_from_outside=True)
    remote = Cell("random", "open", "", "label", "stopped", points[:1], 50, 2, remote_det, enforced_copy(points[:1], remote_det),
                  CellCost(50, 0.5, 0, 3.0, 1.0, 0.9, 1.1, 1.0, http={"requests": 3, "throttled": 1, "retries": 1, "server_errors": 0}),
                  variant="open-tier", account="own key")
    off = Detection(enabled=False)
    defenses = {"det": DefenseResult({"output": "probabilities"}, HonestUtility(100, 1.0, 0.9, 0.9, 0.0, off.flagged, off)),
                "open": DefenseResult({"variant": "open-tier"}, HonestUtility(40, 0.95, None, None, 0.1, None, off, note="probe rows"))}
    cells = [local, remote]
    return MatrixReport({"name": "x"}, ["knockoff", "random"], [50, 100], defenses, cells, frontier(cells, defenses, 100),
                        40, 100, 0.9, {"seed": 0}, 0, 1, "2026-01-01T00:00:00+00:00", 3.0, {"extractguard": "0"})


def test_report_json_round_trips_with_local_and_remote_cell_keys() -> None:
    rep = _report()
    d = json.loads(json.dumps(rep.to_dict()))
    assert MatrixReport.from_dict(d).to_dict() == d
    local, remote = d["cells"]
    assert list(local) == ["attack", "defense", "paper", "output", "error", "points", "queries", "calls", "detection",
                           "enforced", "cost"]
    assert list(remote)[:3] == ["attack", "defense", "variant"] and list(remote)[-1] == "account"
    assert "http" in remote["cost"] and "http" not in local["cost"]
    assert remote["detection"]["observed_from_outside"] is True and "observed_from_outside" not in local["detection"]
    assert d["defenses"]["det"]["honest"]["detection"] == {"enabled": False} and "note" not in d["defenses"]["det"]["honest"]
    # the copy before the suspension at 80 queries is the one at budget 50
    assert local["enforced"]["budget"] == 50 and local["enforced"]["fidelity"] == 0.6
    assert local["points"][1]["watermark_p"] == 1e-9 and local["points"][0]["watermark_marked"] is None


def test_gate_judges_the_typed_report_and_its_json_alike() -> None:
    rep = _report()
    rules = parse_rules(["fidelity_enforced > 0.7 at 100", "honest_utility < 0.99", "detection_queries > 70"],
                        rep.budgets, rep.attacks, list(rep.defenses))
    typed = evaluate_rules(rules, rep)
    assert typed == evaluate_rules(rules, json.loads(json.dumps(rep.to_dict())))
    assert [(f.rule.metric, f.attack, f.defense) for f in typed] == [
        ("honest_utility", "*", "open"), ("detection_queries", "random", "open")]
