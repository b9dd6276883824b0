"""Measuring stolen copies: metrics, assessment runs over budget ladders, reports."""

from extractguard.evaluate.assessment import (
    DEFAULT_BUDGETS,
    Assessment,
    AttackRun,
    CurvePoint,
    parse_budgets,
    run_assessment,
)
from extractguard.evaluate.defense_cost import DefenseCost, evaluate_defense, expected_calibration_error
from extractguard.evaluate.metrics import ProbeSet, accuracy, fidelity, mean_kl, mean_l1
from extractguard.evaluate.report import plot_curves, render_html, write_report

__all__ = [
    "DEFAULT_BUDGETS",
    "Assessment",
    "AttackRun",
    "CurvePoint",
    "DefenseCost",
    "ProbeSet",
    "accuracy",
    "evaluate_defense",
    "expected_calibration_error",
    "fidelity",
    "mean_kl",
    "mean_l1",
    "parse_budgets",
    "plot_curves",
    "render_html",
    "run_assessment",
    "write_report",
]
