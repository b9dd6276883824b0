"""Scoring an attack up a budget ladder: one row per checkpoint, shared by local and remote cells."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

from extractguard.errors import ConfigurationError, ExtractGuardError
from extractguard.evaluate.results import CellPoint, Detection, Enforced, WatermarkVerdict

if TYPE_CHECKING:
    from extractguard.evaluate.metrics import ProbeSet

P = TypeVar("P")


def checkpoint_point(cp: Any, probe: ProbeSet, price_per_query: float) -> CellPoint:
    """One budget's row of a cell: the copy's scores on the held-out probe, spend (no watermark verdict yet)."""
    scores = probe.score(cp.surrogate)
    return CellPoint(
        budget=cp.budget, queries=cp.queries,
        fidelity=round(float(scores["fidelity"] or 0.0), 6),
        accuracy=None if scores["accuracy"] is None else round(float(scores["accuracy"]), 6),
        spend=round(cp.queries * price_per_query, 6),
    )


def cell_scorer(probe: ProbeSet, price_per_query: float,
                verdict: Callable[[Any], WatermarkVerdict] | None = None) -> Callable[[Any], CellPoint]:
    """Scores a matrix cell's checkpoints: :func:`checkpoint_point`, plus ``verdict(copy)`` (the
    watermark test on the stolen copy) when the defense watermarks."""

    def score(cp: Any) -> CellPoint:
        point = checkpoint_point(cp, probe, price_per_query)
        return point if verdict is None else point.with_watermark(verdict(cp.surrogate))

    return score


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """One torch thread while a cell runs: its results do not depend on how many cells run at once."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def watermark_point(record: Any, account: str, surrogate: Any, schema: Any, alpha: float) -> WatermarkVerdict:
    """The watermark verdict on a stolen copy against ``account``'s marks in ``record``."""
    from extractguard.oracle.targets import CallableTarget
    from extractguard.verify import verify_suspect

    try:
        rec = record.load(account)
        if len(rec.marked_X) == 0:
            return WatermarkVerdict()
        verdict = verify_suspect(CallableTarget(surrogate.predict_proba, schema), [rec], alpha=alpha)
    except ConfigurationError:  # nothing marked yet (too few queries): no verdict, not a pass
        return WatermarkVerdict()
    return WatermarkVerdict(float(verdict.p_value), bool(verdict.is_copy), int(len(rec.marked_X)))


def fit_scored(attack: Any, oracle: Any, ladder: Sequence[int], score: Callable[[Any], P],
               prepare: Callable[[], None] | None = None,
               stop_on: tuple[type[BaseException], ...] = (ExtractGuardError,)) -> tuple[list[P], str | None, float, float]:
    """Run ``attack`` up the budget ladder, scoring each checkpoint's copy with ``score``.

    The one way every runner (assessment, remote campaign, matrix cells) climbs a ladder.
    Returns the points, the error that stopped the attack (one of ``stop_on``, by default an
    ``ExtractGuardError``: a label-only defense for an attack needing scores, a gateway's
    suspension...) or ``None``, and the attacker's own wall and CPU seconds: the owner-side
    scoring inside the run is not the attacker's cost.  ``prepare`` (e.g. a pre-flight check)
    runs first, inside the same error handling.  ``stop_on=()`` lets every error propagate.
    """
    points: list[P] = []
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
        attack.fit(oracle, budget=ladder[-1], checkpoints=list(ladder), callback=on_checkpoint)
    except stop_on as exc:
        error = str(exc)
    return (points, error, time.perf_counter() - wall - owner_side[0], time.process_time() - cpu - owner_side[1])


def enforced_copy(points: list[CellPoint], detection: Detection) -> Enforced:
    """The copy the attacker would really hold if the suspension were enforced.

    Checkpoints only exist at ladder budgets, so this is the copy at the last budget the attacker
    reached before suspension (a slight under-estimate: queries between that budget and the
    suspension are not used)."""
    sus = detection.served_before_suspension if detection.enabled else None
    if sus is None:
        return Enforced(None, None, None, "never suspended: the attacker keeps every answer")
    before = [p for p in points if p.queries <= sus]
    if not before:
        return Enforced(sus, None, None, "suspended before the first budget on the ladder: no copy")
    p = before[-1]
    return Enforced(sus, p.budget, p.fidelity,
                    f"copy at {p.queries} queries, the last budget reached before suspension at {sus}")
