"""Measuring stolen copies: metrics, assessment runs over budget ladders, reports."""

from extractguard.evaluate.assessment import (
    DEFAULT_BUDGETS,
    Assessment,
    AttackRun,
    CurvePoint,
    run_assessment,
)
from extractguard.evaluate.metrics import ProbeSet, accuracy, fidelity, mean_kl, mean_l1
from extractguard.evaluate.report import plot_curves, render_html, write_report

__all__ = [
    "DEFAULT_BUDGETS",
    "Assessment",
    "AttackRun",
    "CurvePoint",
    "ProbeSet",
    "accuracy",
    "fidelity",
    "mean_kl",
    "mean_l1",
    "plot_curves",
    "render_html",
    "run_assessment",
    "write_report",
]
