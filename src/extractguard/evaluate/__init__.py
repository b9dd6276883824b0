"""Measuring stolen copies: metrics, assessment runs over budget ladders, reports.

Names load on first access (PEP 562), so importing one light module (the gate, the results
types) does not import torch or matplotlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from extractguard.registry import lazy_exports

if TYPE_CHECKING:
    from extractguard.evaluate.assessment import DEFAULT_BUDGETS, Assessment, AttackRun, CurvePoint, run_assessment
    from extractguard.evaluate.defense_cost import DefenseCost, evaluate_defense, expected_calibration_error
    from extractguard.evaluate.metrics import ProbeSet, accuracy, fidelity, mean_kl, mean_l1
    from extractguard.evaluate.report import plot_curves, render_html, write_report

_WHERE = {
    "DEFAULT_BUDGETS": "assessment", "Assessment": "assessment", "AttackRun": "assessment", "CurvePoint": "assessment",
    "run_assessment": "assessment", "ProbeSet": "metrics", "accuracy": "metrics",
    "fidelity": "metrics", "mean_kl": "metrics", "mean_l1": "metrics", "plot_curves": "report",
    "render_html": "report", "write_report": "report", "DefenseCost": "defense_cost", "evaluate_defense": "defense_cost",
    "expected_calibration_error": "defense_cost",
}


__getattr__ = lazy_exports(__name__, _WHERE)


__all__ = sorted(_WHERE)
