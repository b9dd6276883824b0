"""Run attacks against a target over a budget ladder and collect fidelity-vs-queries curves."""

from __future__ import annotations

import datetime as _dt
import platform
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from extractguard import __version__
from extractguard.attacks import Attack, Checkpoint
from extractguard.errors import ConfigurationError
from extractguard.evaluate.ladder import fit_scored
from extractguard.evaluate.metrics import ProbeSet
from extractguard.oracle import BudgetLadder, Oracle, OutputSpec
from extractguard.oracle.targets import Target

DEFAULT_BUDGETS: tuple[int, ...] = (50, 100, 200, 500, 1000, 2000)

ProgressCallback = Callable[[str, int, int], None]
#: Builds the oracle an attack runs against (e.g. a remote, transcript-backed one).
OracleFactory = Callable[[Attack, int], Oracle]


@dataclass(frozen=True)
class CurvePoint:
    """Metrics of the copy fitted after ``queries`` real queries (nominal ``budget``)."""

    budget: int
    queries: int
    fidelity: float
    accuracy: float | None
    l1: float
    kl: float
    spend: float
    query_seconds: float
    train_seconds: float


@dataclass
class AttackRun:
    """One attack's curve.  ``queries`` is what the oracle really answered."""

    attack: str
    paper: str
    params: dict[str, Any]
    points: list[CurvePoint] = field(default_factory=list)
    queries: int = 0
    calls: int = 0
    seconds: float = 0.0

    def best(self) -> CurvePoint | None:
        return max(self.points, key=lambda p: p.fidelity) if self.points else None


@dataclass(frozen=True)
class HonestAnswers:
    """What an endpoint's honest callers get on the probe rows: accuracy on the labels and, when a
    reference's answers (the real model's) are known, agreement with them and the mean L1 distance."""

    accuracy: float | None
    agreement: float | None = None
    mean_l1: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {"accuracy": self.accuracy}
        if self.agreement is not None:
            out["agreement"] = self.agreement
        if self.mean_l1 is not None:
            out["mean_l1"] = self.mean_l1
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HonestAnswers:
        return cls(d.get("accuracy"), d.get("agreement"), d.get("mean_l1"))


@dataclass
class VariantSummary:
    """One variant (gateway tier / defense) of a comparison: its honest-user cost and the best
    stolen fidelity per budget (keys are budgets as strings, as in ``report.json``)."""

    name: str
    description: str
    output: str
    reference: bool
    honest_user: HonestAnswers
    best_fidelity: dict[str, float]
    runs: list[AttackRun]
    paid_queries: dict[str, Any] | None
    transcript: str | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "output": self.output, "reference": self.reference,
                "honest_user": self.honest_user.to_dict(), "best_fidelity": dict(self.best_fidelity),
                "runs": [asdict(run) for run in self.runs], "paid_queries": self.paid_queries,
                "transcript": self.transcript, "seconds": self.seconds}


@dataclass
class Assessment:
    """Everything ``report.json`` holds."""

    target: dict[str, Any]
    output: str
    budgets: list[int]
    probe_size: int
    victim_probe_accuracy: float | None
    runs: list[AttackRun]
    seed: int
    price_per_query: float
    started_at: str
    seconds: float
    tool: dict[str, str]
    #: One entry per variant (e.g. per gateway tier / defense) when the target was assessed
    #: through several; see :mod:`extractguard.evaluate.comparison`.
    variants: list[VariantSummary] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["variants"] = [v.to_dict() for v in self.variants]
        return out


def curve_point(cp: Checkpoint, probe: ProbeSet, price_per_query: float) -> CurvePoint:
    """One budget's point of an assessment curve: the copy's scores on the held-out probe."""
    scores = probe.score(cp.surrogate)
    return CurvePoint(
        budget=cp.budget,
        queries=cp.queries,
        fidelity=float(scores["fidelity"] or 0.0),
        accuracy=scores["accuracy"],
        l1=float(scores["l1"] or 0.0),
        kl=float(scores["kl"] or 0.0),
        spend=cp.queries * price_per_query,
        query_seconds=round(cp.query_seconds, 4),
        train_seconds=round(cp.train_seconds, 4),
    )


def run_assessment(
    target: Target,
    attacks: Sequence[Attack],
    ladder: BudgetLadder,
    probe: ProbeSet,
    output: OutputSpec = OutputSpec(),
    price_per_query: float = 0.0,
    target_info: dict[str, Any] | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    oracle_factory: OracleFactory | None = None,
    on_point: Callable[[str, CurvePoint], None] | None = None,
) -> Assessment:
    """Run every attack once with budget ``ladder.top``, scoring a copy at each budget.

    Each attack gets its own fresh :class:`Oracle`, so queries are counted per attack; the
    copies are scored on ``probe``, which no attack queries.  ``oracle_factory(attack, budget)``
    replaces the default local oracle (remote campaigns); ``on_point`` sees each scored checkpoint.
    """
    if not attacks:
        raise ConfigurationError("choose at least one attack")
    started = _dt.datetime.now(_dt.timezone.utc)
    t_all = time.perf_counter()
    runs: list[AttackRun] = []
    for attack in attacks:
        if oracle_factory is not None:
            oracle = oracle_factory(attack, ladder.top)
        else:
            oracle = Oracle(target, output=output, budget=ladder.top, price_per_query=price_per_query)
        run = AttackRun(attack.name, attack.paper, attack.params())

        def score(cp: Checkpoint, run: AttackRun = run, name: str = attack.name) -> CurvePoint:
            point = curve_point(cp, probe, price_per_query)
            run.points.append(point)
            if on_point is not None:
                on_point(name, point)
            if progress is not None:
                progress(name, len(run.points), len(ladder))
            return point

        t0 = time.perf_counter()
        fit_scored(attack, oracle, ladder, score, stop_on=())  # an error here ends the assessment
        run.params = attack.params()  # again after fitting: adds what the run chose (e.g. the surrogate family)
        stats = oracle.stats()
        run.queries, run.calls = stats.queries, stats.calls
        run.seconds = round(time.perf_counter() - t0, 3)
        runs.append(run)
    return Assessment(
        target=target_info or {"schema": target.schema.to_dict()},
        output=str(output),
        budgets=list(ladder),
        probe_size=len(probe),
        victim_probe_accuracy=probe.victim_accuracy(),
        runs=runs,
        seed=seed,
        price_per_query=price_per_query,
        started_at=started.isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - t_all, 3),
        tool={"extractguard": __version__, "python": platform.python_version()},
    )
