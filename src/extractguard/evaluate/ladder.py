"""Scoring an attack up a budget ladder: one row per checkpoint, shared by local and remote cells."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from extractguard.errors import ConfigurationError, ExtractGuardError

if TYPE_CHECKING:
    from extractguard.evaluate.metrics import ProbeSet


def checkpoint_point(cp: Any, probe: ProbeSet, price_per_query: float) -> dict[str, Any]:
    """One budget's row of a cell: the copy's scores on the held-out probe, spend, watermark slots."""
    scores = probe.score(cp.surrogate)
    return {
        "budget": cp.budget, "queries": cp.queries,
        "fidelity": round(float(scores["fidelity"] or 0.0), 6),
        "accuracy": None if scores["accuracy"] is None else round(float(scores["accuracy"]), 6),
        "spend": round(cp.queries * price_per_query, 6),
        "watermark_p": None, "watermark_copy": None, "watermark_marked": None,
    }


def watermark_point(record: Any, account: str, surrogate: Any, schema: Any, alpha: float) -> dict[str, Any]:
    """The watermark verdict on a stolen copy against ``account``'s marks in ``record``."""
    from extractguard.oracle.targets import CallableTarget
    from extractguard.verify import verify_suspect

    none = {"watermark_p": None, "watermark_copy": None, "watermark_marked": 0}
    try:
        rec = record.load(account)
        if len(rec.marked_X) == 0:
            return none
        verdict = verify_suspect(CallableTarget(surrogate.predict_proba, schema), [rec], alpha=alpha)
    except ConfigurationError:  # nothing marked yet (too few queries): no verdict, not a pass
        return none
    return {"watermark_p": float(verdict.p_value), "watermark_copy": bool(verdict.is_copy),
            "watermark_marked": int(len(rec.marked_X))}


def fit_scored(attack: Any, oracle: Any, ladder: list[int], score: Callable[[Any], dict[str, Any]],
               prepare: Callable[[], None] | None = None) -> tuple[list[dict[str, Any]], str | None, float, float]:
    """Run ``attack`` up the budget ladder, scoring each checkpoint's copy with ``score``.

    Returns the points, the error that stopped the attack (an ``ExtractGuardError``: a label-only
    defense for an attack needing scores, a gateway's suspension...) or ``None``, and the attacker's
    own wall and CPU seconds: the owner-side scoring inside the run is not the attacker's cost.
    ``prepare`` (e.g. a pre-flight check) runs first, inside the same error handling.
    """
    points: list[dict[str, Any]] = []
    owner_side = [0.0, 0.0]

    def on_checkpoint(cp: Any) -> None:
        w0, c0 = time.perf_counter(), time.process_time()
        points.append(score(cp))
        owner_side[0] += time.perf_counter() - w0
        owner_side[1] += time.process_time() - c0

    error = None
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        if prepare is not None:
            prepare()
        attack.fit(oracle, budget=ladder[-1], checkpoints=ladder, callback=on_checkpoint)
    except ExtractGuardError as exc:
        error = str(exc)
    return (points, error, time.perf_counter() - wall - owner_side[0], time.process_time() - cpu - owner_side[1])


def enforced_copy(points: list[dict[str, Any]], detection: dict[str, Any]) -> dict[str, Any]:
    """The copy the attacker would really hold if the suspension were enforced.

    Checkpoints only exist at ladder budgets, so this is the copy at the last budget the attacker
    reached before suspension (a slight under-estimate: queries between that budget and the
    suspension are not used)."""
    sus = detection.get("served_before_suspension") if detection.get("enabled") else None
    if sus is None:
        return {"suspended_at": None, "budget": None, "fidelity": None,
                "note": "never suspended: the attacker keeps every answer"}
    before = [p for p in points if p["queries"] <= sus]
    if not before:
        return {"suspended_at": sus, "budget": None, "fidelity": None,
                "note": "suspended before the first budget on the ladder: no copy"}
    p = before[-1]
    return {"suspended_at": sus, "budget": p["budget"], "fidelity": p["fidelity"],
            "note": f"copy at {p['queries']} queries, the last budget reached before suspension at {sus}"}
