"""The assessment matrix's results as typed objects; ``to_dict`` is what ``report.json`` holds.

A local cell (in-process pipeline) and a remote cell (a deployed API over HTTP) produce the same
types, so the report page, the CLI tables and the CI gate read fields, one name per concept
(``agreement``: the share of rows on which two sets of answers give the same class).
``from_dict`` reads a ``report.json`` back, e.g. to gate a saved report.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping


@dataclass(frozen=True)
class WatermarkVerdict:
    """The watermark test on a stolen copy: p-value, verdict at ``alpha``, marked rows tested.

    ``p_value`` is ``None`` when nothing could be tested (no marked rows yet, or no record)."""

    p_value: float | None = None
    is_copy: bool | None = None
    marked: int | None = 0


@dataclass(frozen=True)
class CellPoint:
    """One budget of a cell's ladder: the copy's scores on the held-out probe rows, spend, watermark."""

    budget: int
    queries: int
    fidelity: float
    accuracy: float | None
    spend: float
    watermark_p: float | None = None
    watermark_copy: bool | None = None
    watermark_marked: int | None = None

    def with_watermark(self, v: WatermarkVerdict) -> CellPoint:
        return replace(self, watermark_p=v.p_value, watermark_copy=v.is_copy, watermark_marked=v.marked)

    def to_dict(self) -> dict[str, Any]:
        return {"budget": self.budget, "queries": self.queries, "fidelity": self.fidelity, "accuracy": self.accuracy,
                "spend": self.spend, "watermark_p": self.watermark_p, "watermark_copy": self.watermark_copy,
                "watermark_marked": self.watermark_marked}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CellPoint:
        return cls(d["budget"], d["queries"], d["fidelity"], d["accuracy"], d["spend"], d.get("watermark_p"),
                   d.get("watermark_copy"), d.get("watermark_marked"))


@dataclass(frozen=True)
class Detection:
    """When the detection monitor flagged an account and each graduated response started.

    Counts are rows served before the request on which it happened.  ``observed_from_outside``:
    a remote cell sees only the responses that came back (429, 428, 403), not the signals."""

    enabled: bool
    first_flag: int | None = None
    signals: dict[str, int] = field(default_factory=dict)
    responses: dict[str, int | None] = field(default_factory=dict)
    served_before_suspension: int | None = None
    max_level: float | None = None
    explanation: str = ""
    observed_from_outside: bool = False

    @property
    def flagged(self) -> bool | None:
        """Whether any signal fired; ``None`` without detection."""
        return bool(self.first_flag) if self.enabled else None

    def to_dict(self) -> dict[str, Any]:
        if not self.enabled:
            return {"enabled": False}
        out: dict[str, Any] = {"enabled": True}
        if self.observed_from_outside:
            out["observed_from_outside"] = True
        out.update(first_flag=self.first_flag, signals=dict(self.signals), responses=dict(self.responses),
                   served_before_suspension=self.served_before_suspension, max_level=self.max_level,
                   explanation=self.explanation)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Detection:
        if not d.get("enabled"):
            return cls(enabled=False)
        return cls(True, d.get("first_flag"), dict(d.get("signals") or {}), dict(d.get("responses") or {}),
                   d.get("served_before_suspension"), d.get("max_level"), d.get("explanation", ""),
                   bool(d.get("observed_from_outside", False)))


@dataclass(frozen=True)
class Enforced:
    """The copy the attacker would really hold if the suspension were enforced."""

    suspended_at: int | None
    budget: int | None
    fidelity: float | None
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {"suspended_at": self.suspended_at, "budget": self.budget, "fidelity": self.fidelity, "note": self.note}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Enforced:
        return cls(d["suspended_at"], d["budget"], d["fidelity"], d["note"])


@dataclass(frozen=True)
class CellCost:
    """What the cell cost the attacker (and, ``cell_*``, the whole cell including owner-side scoring)."""

    queries: int
    spend: float
    pow_hashes: int
    throttle_wait_seconds: float
    wall_seconds: float
    cpu_seconds: float
    cell_wall_seconds: float
    cell_cpu_seconds: float
    #: remote cells: HTTP requests, 429s, retries and 5xx seen by the client
    http: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"queries": self.queries, "spend": self.spend, "pow_hashes": self.pow_hashes,
                               "throttle_wait_seconds": self.throttle_wait_seconds, "wall_seconds": self.wall_seconds,
                               "cpu_seconds": self.cpu_seconds, "cell_wall_seconds": self.cell_wall_seconds,
                               "cell_cpu_seconds": self.cell_cpu_seconds}
        if self.http is not None:
            out["http"] = dict(self.http)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CellCost:
        return cls(d["queries"], d["spend"], d["pow_hashes"], d["throttle_wait_seconds"], d["wall_seconds"],
                   d["cpu_seconds"], d["cell_wall_seconds"], d["cell_cpu_seconds"], d.get("http"))


@dataclass(frozen=True)
class Cell:
    """One attack against one defense: its ladder, detection timeline, enforced copy and cost."""

    attack: str
    defense: str
    paper: str
    output: str
    error: str | None
    points: list[CellPoint]
    queries: int
    calls: int
    detection: Detection
    enforced: Enforced
    cost: CellCost
    #: remote cells: the variant (API key) of target.yaml attacked, and whose account it was
    variant: str | None = None
    account: str | None = None

    def fidelity_at(self, budget: int) -> float | None:
        for p in self.points:
            if p.budget == budget:
                return p.fidelity
        return None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"attack": self.attack, "defense": self.defense}
        if self.variant is not None:
            out["variant"] = self.variant
        out.update(paper=self.paper, output=self.output, error=self.error, points=[p.to_dict() for p in self.points],
                   queries=self.queries, calls=self.calls, detection=self.detection.to_dict(),
                   enforced=self.enforced.to_dict(), cost=self.cost.to_dict())
        if self.account is not None:
            out["account"] = self.account
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Cell:
        return cls(d["attack"], d["defense"], d["paper"], d["output"], d["error"],
                   [CellPoint.from_dict(p) for p in d["points"]], d["queries"], d["calls"],
                   Detection.from_dict(d["detection"]), Enforced.from_dict(d["enforced"]), CellCost.from_dict(d["cost"]),
                   d.get("variant"), d.get("account"))


@dataclass(frozen=True)
class HonestUtility:
    """What honest users get through a defense: agreement of the served answers with the real
    model's, accuracy (theirs and the model's) on the labels, L1 distance, a false positive."""

    rows: int
    agreement: float
    accuracy: float | None
    model_accuracy: float | None
    mean_l1: float
    flagged: bool | None
    detection: Detection
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": self.rows, "agreement": self.agreement, "accuracy": self.accuracy,
                               "model_accuracy": self.model_accuracy, "mean_l1": self.mean_l1, "flagged": self.flagged,
                               "detection": self.detection.to_dict()}
        if self.note is not None:
            out["note"] = self.note
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HonestUtility:
        return cls(d["rows"], d["agreement"], d["accuracy"], d["model_accuracy"], d["mean_l1"], d["flagged"],
                   Detection.from_dict(d["detection"]), d.get("note"))


@dataclass(frozen=True)
class DefenseResult:
    """One column of the matrix: the defense's settings as assessed, and its honest-user utility."""

    spec: dict[str, Any]
    honest: HonestUtility

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "honest": self.honest.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DefenseResult:
        return cls(dict(d["spec"]), HonestUtility.from_dict(d["honest"]))


@dataclass(frozen=True)
class FrontierPoint:
    """One defense on the security/utility plane (see :func:`extractguard.evaluate.frontier.frontier`)."""

    defense: str
    budget: int
    utility: float
    fidelity: float | None
    fidelity_enforced: float | None
    pareto: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"defense": self.defense, "budget": self.budget, "utility": self.utility, "fidelity": self.fidelity,
                "fidelity_enforced": self.fidelity_enforced, "pareto": self.pareto}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FrontierPoint:
        return cls(d["defense"], d["budget"], d["utility"], d["fidelity"], d["fidelity_enforced"], d["pareto"])


@dataclass
class MatrixReport:
    """Everything the matrix's ``report.json`` holds (local and remote targets alike)."""

    target: dict[str, Any]
    attacks: list[str]
    budgets: list[int]
    defenses: dict[str, DefenseResult]
    cells: list[Cell]
    frontier: list[FrontierPoint]
    probe_size: int
    honest_rows: int
    victim_probe_accuracy: float | None
    config: dict[str, Any]
    seed: int
    jobs: int
    started_at: str
    seconds: float
    tool: dict[str, str]
    kind: str = "assessment-matrix"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "attacks": list(self.attacks),
            "budgets": list(self.budgets),
            "defenses": {name: d.to_dict() for name, d in self.defenses.items()},
            "cells": [c.to_dict() for c in self.cells],
            "frontier": [p.to_dict() for p in self.frontier],
            "probe_size": self.probe_size,
            "honest_rows": self.honest_rows,
            "victim_probe_accuracy": self.victim_probe_accuracy,
            "config": self.config,
            "seed": self.seed,
            "jobs": self.jobs,
            "started_at": self.started_at,
            "seconds": self.seconds,
            "tool": self.tool,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MatrixReport:
        return cls(
            target=dict(d["target"]), attacks=list(d["attacks"]), budgets=list(d["budgets"]),
            defenses={name: DefenseResult.from_dict(x) for name, x in d["defenses"].items()},
            cells=[Cell.from_dict(c) for c in d["cells"]], frontier=[FrontierPoint.from_dict(p) for p in d["frontier"]],
            probe_size=d["probe_size"], honest_rows=d["honest_rows"], victim_probe_accuracy=d["victim_probe_accuracy"],
            config=dict(d["config"]), seed=d["seed"], jobs=d["jobs"], started_at=d["started_at"], seconds=d["seconds"],
            tool=dict(d["tool"]), kind=d.get("kind", "assessment-matrix"),
        )
