"""The CI gate: ``--fail-if "fidelity > 0.8 at 10000"`` thresholds over an assessment matrix.

A rule is ``METRIC OP NUMBER [at BUDGET] [for KEY=VALUE ...]``::

    fidelity > 0.8 at 1000                       # any cell whose copy passes 0.8 at 1000 queries
    fidelity > 0.9                               # ... at any budget
    fidelity > 0.8 at 1000 for attack=knockoff defense=open
    detection_queries > 2000 for defense=detect  # not detected counts as infinitely many
    honest_utility < 0.95                        # per defense

Rules are checked against the configuration *before* the grid runs (unknown metric, bad
operator, budget not on the ladder, unknown attack/defense name: one-line error, exit 2), so a
typo never costs a ten-minute run.  A small hand-written parser: the grammar is five tokens, a
parsing library would be a dependency for less clarity.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from extractguard.errors import ConfigurationError
from extractguard.evaluate.results import Cell, DefenseResult, MatrixReport

#: metric -> (per budget?, description)
METRICS: dict[str, tuple[bool, str]] = {
    "fidelity": (True, "stolen copy's agreement with the model on the held-out probe set (no enforcement)"),
    "fidelity_enforced": (True, "same, for the copy the attacker holds if a suspension is enforced"),
    "accuracy": (True, "stolen copy's accuracy on the probe labels"),
    "watermark_p": (True, "p-value of the watermark test on the stolen copy (watermarking defenses only)"),
    "spend": (True, "attacker's spend (queries x price_per_query)"),
    "detection_queries": (False, "queries until the first detector fired (not detected = inf)"),
    "suspension_queries": (False, "queries until the account would be suspended (never = inf)"),
    "cpu_seconds": (False, "attacker's CPU seconds for the whole ladder"),
    "honest_utility": (False, "honest users' agreement with the real model through the defense"),
    "honest_accuracy": (False, "honest users' accuracy through the defense"),
}
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt,
}
_RULE = re.compile(
    r"^\s*(?P<metric>[A-Za-z_]+)\s*(?P<op>>=|<=|==|!=|>|<|=>|=<|=)\s*(?P<num>\S+)"
    r"(?:\s+at\s+(?P<budget>\S+))?(?:\s+for\s+(?P<scope>.+?))?\s*$"
)
SCOPE_KEYS = ("attack", "defense")


@dataclass(frozen=True)
class GateRule:
    text: str
    metric: str
    op: str
    threshold: float
    budget: int | None = None
    scope: dict[str, str] = field(default_factory=dict)

    def crossed(self, value: float) -> bool:
        return _OPS[self.op](value, self.threshold)


@dataclass(frozen=True)
class GateFailure:
    rule: GateRule
    attack: str
    defense: str
    budget: int | None
    value: float

    def describe(self) -> str:
        where = f"attack={self.attack} defense={self.defense}" + (f" budget={self.budget}" if self.budget is not None else "")
        shown = "inf (never)" if math.isinf(self.value) else f"{self.value:.4g}"
        return f"{where}: {self.rule.metric} = {shown} {self.rule.op} {self.rule.threshold:g}  [{self.rule.text}]"


def parse_rule(text: str) -> GateRule:
    """One ``--fail-if`` expression -> :class:`GateRule`, or a one-line error saying what is wrong."""
    m = _RULE.match(text)
    if not m:
        raise ConfigurationError(f"--fail-if {text!r}: write METRIC OP NUMBER [at BUDGET] [for attack=NAME defense=NAME], "
                                 "e.g. 'fidelity > 0.8 at 1000'")
    metric, op, num = m["metric"].lower(), m["op"], m["num"]
    if metric not in METRICS:
        raise ConfigurationError(f"--fail-if {text!r}: unknown metric {metric!r}; available: {', '.join(METRICS)}")
    if op not in _OPS:
        raise ConfigurationError(f"--fail-if {text!r}: bad operator {op!r}; use one of {', '.join(_OPS)}")
    try:
        threshold = float(num)
    except ValueError:
        raise ConfigurationError(f"--fail-if {text!r}: {num!r} is not a number") from None
    if not math.isfinite(threshold):
        raise ConfigurationError(f"--fail-if {text!r}: the threshold must be a finite number")
    budget = None
    if m["budget"] is not None:
        if not METRICS[metric][0]:
            raise ConfigurationError(f"--fail-if {text!r}: {metric} is one number per cell; drop 'at {m['budget']}'")
        try:
            budget = int(m["budget"].replace("_", "").replace(",", ""))
        except ValueError:
            raise ConfigurationError(f"--fail-if {text!r}: budget {m['budget']!r} is not a whole number") from None
    scope: dict[str, str] = {}
    if m["scope"] is not None:
        for item in m["scope"].split():
            key, sep, value = item.partition("=")
            if not sep or not value or key not in SCOPE_KEYS:
                raise ConfigurationError(f"--fail-if {text!r}: scope {item!r} must be attack=NAME or defense=NAME")
            if key in scope:
                raise ConfigurationError(f"--fail-if {text!r}: {key}= given twice")
            scope[key] = value.lower() if key == "attack" else value
    return GateRule(text.strip(), metric, op, threshold, budget, scope)


def parse_rules(texts: Sequence[str], budgets: Sequence[int], attacks: Sequence[str], defenses: Sequence[str]) -> list[GateRule]:
    """Parse and check every rule against the grid it will judge (before anything runs)."""
    rules = [parse_rule(t) for t in texts]
    for r in rules:
        if r.budget is not None and r.budget not in budgets:
            raise ConfigurationError(f"--fail-if {r.text!r}: budget {r.budget} is not on the ladder ({', '.join(map(str, budgets))})")
        if "attack" in r.scope and r.scope["attack"] not in attacks:
            raise ConfigurationError(f"--fail-if {r.text!r}: attack {r.scope['attack']!r} is not in the grid ({', '.join(attacks)})")
        if "defense" in r.scope and r.scope["defense"] not in defenses:
            raise ConfigurationError(f"--fail-if {r.text!r}: defense {r.scope['defense']!r} is not in the grid ({', '.join(defenses)})")
    return rules


def _per_point(cell: Cell, metric: str) -> list[tuple[int, float | None]]:
    out = []
    sus = cell.enforced.suspended_at
    for p in cell.points:
        if metric == "fidelity_enforced":
            v = p.fidelity if sus is None or p.queries <= sus else (cell.enforced.fidelity or 0.0)
        else:
            v = getattr(p, metric)
        out.append((p.budget, v))
    return out


def _per_cell(cell: Cell, defense: DefenseResult, metric: str) -> float | None:
    det = cell.detection
    if metric == "detection_queries":
        return float(det.first_flag) if det.enabled and det.first_flag is not None else math.inf
    if metric == "suspension_queries":
        s = cell.enforced.suspended_at
        return math.inf if s is None else float(s)
    if metric == "cpu_seconds":
        return float(cell.cost.cpu_seconds)
    if metric == "honest_utility":
        return float(defense.honest.agreement)
    if metric == "honest_accuracy":
        v = defense.honest.accuracy
        return None if v is None else float(v)
    raise AssertionError(metric)


def evaluate_rules(rules: Sequence[GateRule], report: MatrixReport | Mapping[str, Any]) -> list[GateFailure]:
    """Every (rule, cell[, budget]) whose value crosses the threshold.

    ``report`` is the matrix's report, or its ``report.json`` read back (parsed here, once).
    A rule that no cell can answer (e.g. ``watermark_p`` without a watermarking defense in its
    scope) is an error, not a silent pass.
    """
    if not isinstance(report, MatrixReport):
        report = MatrixReport.from_dict(report)
    failures: list[GateFailure] = []
    for rule in rules:
        answered = False
        seen_defense: set[str] = set()
        for cell in report.cells:
            if any(getattr(cell, k) != v for k, v in rule.scope.items()):
                continue
            per_budget, _ = METRICS[rule.metric]
            if per_budget:
                for budget, v in _per_point(cell, rule.metric):
                    if v is None or (rule.budget is not None and budget != rule.budget):
                        continue
                    answered = True
                    if rule.crossed(float(v)):
                        failures.append(GateFailure(rule, cell.attack, cell.defense, budget, float(v)))
            else:
                if rule.metric.startswith("honest_"):
                    if cell.defense in seen_defense:  # one value per defense, not per attack
                        continue
                    seen_defense.add(cell.defense)
                v = _per_cell(cell, report.defenses[cell.defense], rule.metric)
                if v is None:
                    continue
                answered = True
                if rule.crossed(v):
                    attack = "*" if rule.metric.startswith("honest_") else cell.attack
                    failures.append(GateFailure(rule, attack, cell.defense, None, v))
        if not answered:
            raise ConfigurationError(f"--fail-if {rule.text!r}: no cell has a value for {rule.metric} "
                                     "(e.g. watermark_p needs a watermarking defense, honest_accuracy needs labels)")
    return failures
