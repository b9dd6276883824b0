"""Extraction campaigns against a remote model API, resumable from their transcript.

A campaign is an assessment (every attack over a budget ladder, fidelity on a held-out probe
set) whose oracles are :class:`~extractguard.oracle.remote.RemoteOracle` objects sharing one
SQLite transcript.  The probe set's answers are fetched once from the endpoint, recorded as
*evaluation* queries and paid, but never charged to an attack's budget: the report lists them
separately.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from extractguard.attacks import Attack, create_attack
from extractguard.data.files import load_table
from extractguard.errors import ConfigurationError
from extractguard.evaluate.assessment import Assessment, CurvePoint, HonestAnswers, run_assessment
from extractguard.evaluate.metrics import ProbeSet, accuracy, fidelity, mean_l1
from extractguard.oracle import BudgetLadder, Oracle
from extractguard.oracle.answer import Answer
from extractguard.oracle.remote import RemoteOracle, RemoteTarget, check_authorization
from extractguard.oracle.target_config import TargetConfig
from extractguard.oracle.transcript import SqliteTranscript, rows_digest

#: ``(run, queries used, run budget, campaign spend so far, 429s so far)``
QueryProgress = Callable[[str, int, int, float, int], None]

PROBE_RUN = "probe"


def attack_run_name(attack: str) -> str:
    return f"attack:{attack}"


def campaign_budgets(config: TargetConfig, ladder: BudgetLadder) -> BudgetLadder:
    """The budget ladder, capped at the target's ``budget`` (which then becomes the last step)."""
    return ladder.capped(config.budget)


class _DryRun(Exception):
    """Raised by :class:`_DryOracle` at the first query: the attack's own checks all passed."""


class _DryOracle(Oracle):
    """An oracle that answers nothing, so an attack can run its up-front checks for free."""

    def query(self, X: Any) -> Answer:
        raise _DryRun()


def preflight(
    attacks: Sequence[str], target: RemoteTarget, ladder: Sequence[int], *, pool: np.ndarray | None,
    surrogate: str, seed: int,
) -> None:
    """Refuse, before anything is paid, an attack that cannot run against this endpoint.

    Attacks check what they need (an output mode such as logits, a binary task, text inputs, a
    large enough budget) when they start, i.e. after the probe set's answers would already have
    been bought.  Starting a fresh copy of each against an oracle that raises at the first query
    surfaces those one-line refusals first.
    """
    for name in attacks:
        attack = create_attack(name, pool=pool, surrogate=surrogate, seed=seed)
        dry = _DryOracle(target, output=target.spec, budget=ladder[-1])
        try:
            attack.fit(dry, budget=ladder[-1], checkpoints=list(ladder))
        except _DryRun:
            continue


def run_campaign(
    config: TargetConfig,
    attacks: Sequence[str],
    budgets: BudgetLadder,
    *,
    seed: int = 0,
    surrogate: str = "auto",
    resume: bool = False,
    transport: Any = None,
    on_query: QueryProgress | None = None,
    on_point: Callable[[str, CurvePoint], None] | None = None,
    on_probe: Callable[[int], None] | None = None,
    reference_proba: np.ndarray | None = None,
    on_probe_answers: Callable[[np.ndarray], None] | None = None,
) -> Assessment:
    """Run ``attacks`` against the endpoint in ``config``; resume from its transcript if asked.

    Refuses (one-line :class:`~extractguard.errors.ExtractGuardError`) a target without a valid
    authorization statement, an existing transcript without ``resume``, and a resume whose
    settings differ from the transcript's.

    ``reference_proba`` (the owner's real model's answers on the probe rows, e.g. from an
    undefended tier) replaces this endpoint's own probe answers as the yardstick of fidelity, so
    a copy stolen through a defended tier is scored against the real model; the endpoint's own
    probe answers then measure what the defense costs honest users (``target["honest_user"]``).
    """
    check_authorization(config)
    names = list(dict.fromkeys(a.strip().lower() for a in attacks))
    if not names:
        raise ConfigurationError("choose at least one attack")
    ladder = campaign_budgets(config, budgets)
    schema = config.input_schema

    probe_X, probe_y = load_table(config.path(config.probe_data), what="probe data")
    probe_X = schema.validate(probe_X, what="probe data")
    pool: np.ndarray | None = None
    if config.attacker_data:
        pool_raw, _ = load_table(config.path(config.attacker_data), what="attacker data")
        pool = schema.validate(pool_raw, what="attacker data")
    built: list[Attack] = [create_attack(n, pool=pool, surrogate=surrogate, seed=seed) for n in names]
    target = RemoteTarget(config, transport=transport, seed=seed)
    preflight(names, target, ladder, pool=pool, surrogate=surrogate, seed=seed)

    settings = {
        "url": config.endpoint(),
        "protocol": config.protocol,
        "model": config.model,
        "output": str(config.output),
        "attacks": names,
        "budgets": list(ladder),
        "seed": seed,
        "surrogate": surrogate,
        "max_rows_per_request": config.max_rows_per_request,
        "probe_data_sha256": rows_digest(probe_X),
        "attacker_data_sha256": None if pool is None else rows_digest(pool),
    }
    store = SqliteTranscript(config.transcript_path)
    try:
        paid_before = store.paid_rows()
        stored = store.get_meta("settings")
        if paid_before and not resume:
            raise ConfigurationError(
                f"transcript {config.transcript_path} already holds {paid_before} answered queries; "
                "pass --resume to continue that campaign, or set another transcript path"
            )
        if resume and stored is not None and paid_before:
            changed = sorted(k for k in settings if stored.get(k) != settings[k])
            if changed:
                first = changed[0]
                raise ConfigurationError(
                    f"cannot resume: {', '.join(changed)} differ from the campaign in {config.transcript_path} "
                    f"({first}: was {stored.get(first)!r}, now {settings[first]!r})"
                )
        campaign_id = store.get_meta("campaign_id") if paid_before else None
        if not campaign_id:
            campaign_id = uuid.uuid4().hex[:16]
            store.set_meta("campaign_id", campaign_id)
        store.set_meta("settings", settings)
        store.set_meta("target", config.describe())
        authorization = config.authorization.model_dump(exclude_none=True)
        store.start_session(authorization, settings, resumed=bool(resume and paid_before))

        price = config.price_per_query

        def progress(oracle: RemoteOracle, _n: int) -> None:
            if on_query is not None:
                on_query(oracle.run, oracle.queries_used, oracle.budget or 0,
                         store.paid_rows() * price, target.stats.throttled)

        def make_oracle(run: str, budget: int | None, purpose: str) -> RemoteOracle:
            return RemoteOracle(target, store, run, budget=budget, price_per_query=price,
                                spend_cap=config.spend_cap, purpose=purpose, campaign_id=campaign_id,
                                on_query=progress)

        probe_oracle = make_oracle(PROBE_RUN, None, "evaluation")
        probe_answer = probe_oracle.query(probe_X)
        if on_probe is not None:
            on_probe(len(probe_answer))
        served = probe_answer.soft_labels()
        if on_probe_answers is not None:
            on_probe_answers(served)
        if reference_proba is not None and reference_proba.shape != served.shape:
            raise ConfigurationError(
                f"reference probe answers have shape {reference_proba.shape}, this endpoint's {served.shape}"
            )
        probe = ProbeSet(probe_X, served if reference_proba is None else reference_proba, probe_y)

        oracles: dict[str, RemoteOracle] = {}

        def oracle_factory(attack: Attack, budget: int) -> RemoteOracle:
            oracles[attack.name] = make_oracle(attack_run_name(attack.name), budget, "attack")
            return oracles[attack.name]

        info: dict[str, Any] = {"remote": config.describe(), "schema": schema.to_dict()}
        info["honest_user"] = honest_user_metrics(served, probe_y, reference_proba).to_dict()
        result = run_assessment(
            target, built, ladder, probe, output=target.spec, price_per_query=price, target_info=info,
            seed=seed, oracle_factory=oracle_factory, on_point=on_point,
        )
        per_run = store.runs()
        eval_rows = store.paid_rows(purpose="evaluation")
        paid_total = store.paid_rows()
        info["authorization"] = authorization
        info["evaluation_queries"] = {
            "rows": eval_rows,
            "note": (
                "answers for the held-out probe set, fetched once from the endpoint to measure fidelity; "
                "recorded in the transcript and paid, but NOT counted in any attack's query budget"
            ),
        }
        info["paid_queries"] = {
            "attack": {name: per_run.get(attack_run_name(name), 0) for name in names},
            "evaluation": eval_rows,
            "total": paid_total,
            "spend": round(paid_total * price, 6),
        }
        info["transcript"] = {
            "path": str(Path(config.transcript_path)),
            "campaign_id": campaign_id,
            "sessions": len(store.sessions()),
            "this_session": {
                "rows_sent": target.stats.rows_sent,
                "rows_replayed": sum(o.replayed for o in oracles.values()) + probe_oracle.replayed,
                **target.stats.to_dict(),
            },
        }
        return result
    finally:
        store.close()


def honest_user_metrics(served: np.ndarray, y: np.ndarray | None, reference: np.ndarray | None = None) -> HonestAnswers:
    """What honest callers get on the probe rows: accuracy, and how far answers are from the real model."""
    acc = None if y is None else round(accuracy(y, served), 6)
    if reference is None:
        return HonestAnswers(acc)
    return HonestAnswers(acc, agreement=round(fidelity(reference, served), 6), mean_l1=round(mean_l1(reference, served), 6))


def transcript_summary(path: str | Path) -> dict[str, Any]:
    """Rows per run and the recorded authorization sessions of a transcript, for inspection."""
    p = Path(path)
    if not p.is_file():
        raise ConfigurationError(f"transcript not found: {p}")
    with SqliteTranscript(p) as store:
        return {
            "campaign_id": store.get_meta("campaign_id"),
            "runs": store.runs(),
            "paid_rows": store.paid_rows(),
            "sessions": store.sessions(),
        }
