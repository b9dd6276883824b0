"""The assessment matrix against a deployed API (``target: {remote: target.yaml}``).

The owner's deployed defenses are the ``variants:`` of ``target.yaml`` (one API key per gateway
tier); a matrix defense names one (``{variant: NAME}``).  Each cell is a real extraction over
HTTP, with the building blocks of a remote campaign (:mod:`extractguard.evaluate.campaign`):
:class:`~extractguard.oracle.remote.RemoteTarget`, a budgeted
:class:`~extractguard.oracle.remote.RemoteOracle` committing every answer to a SQLite transcript,
the mandatory authorization check and the spend cap.  What a cell measures:

* stolen fidelity at each budget, on the target's held-out probe rows, against the *reference*
  variant's answers (the first variant of target.yaml, normally an undefended tier), as
  :mod:`extractguard.evaluate.comparison` does;
* honest utility: the probe rows answered through the variant vs the reference's answers;
* detection as seen from outside: the queries answered before the first detection response of
  our gateway (429 "throttled", 428 proof-of-work challenge, 403 "suspended"); "not observed"
  otherwise.  A flag alone is invisible to the caller, and the detector's internal signals are
  not measured;
* the watermark verdict, when the defense also names the gateway's configuration
  (``gateway: {config, tier}``): the stolen copy tested (:func:`extractguard.verify.verify_suspect`)
  against the account's record in that gateway's ``watermark_db``;
* cost: queries x ``price_per_query`` of target.yaml, wall and CPU seconds, seconds waited on
  Retry-After.

Cells run one at a time (paid queries and rate limits: no parallel spend), and the matrix does
not resume: a transcript that already holds paid answers is refused unless ``--force`` discards
it, so a re-run never pays twice silently.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from extractguard.errors import ConfigurationError
from extractguard.evaluate.results import Cell, CellCost, DefenseResult, Detection, MatrixReport, WatermarkVerdict


def _detection_response(refusal: dict[str, Any]) -> str | None:
    """Which graduated response of our gateway a refusal is (serving/detection.py), or ``None``."""
    status, msg = refusal["status"], refusal["message"].lower()
    if status == 428:
        return "challenge"
    if status == 429 and "throttled after extraction alarms" in msg:
        return "throttle"
    if status == 403 and ("suspended" in msg or "detection sanction" in msg):
        return "suspend"
    return None


def _observed(refusals: list[dict[str, Any]]) -> Detection:
    """The detection timeline an outside caller can see: the first time each response came back."""
    responses: dict[str, int | None] = {}
    for r in refusals:
        action = _detection_response(r)
        if action is not None and action not in responses:
            responses[action] = int(r["rows_before"])
    first = min(q for q in responses.values() if q is not None) if responses else None
    return Detection(
        enabled=True,
        observed_from_outside=True,
        first_flag=first,
        signals={},
        responses=responses,
        served_before_suspension=responses.get("suspend"),
        max_level=None,
        explanation=("first detection response after " + ", ".join(f"{a} at {q}" for a, q in responses.items())
                     if responses else "not observed: no throttle, challenge or suspension came back"),
    )


def _remove_transcript(path: Path) -> None:
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        p.unlink(missing_ok=True)


class _Account:
    """The gateway-side watermark record of the account behind a variant's API key."""

    def __init__(self, gateway_config: Path, key: str) -> None:
        from extractguard.gateway.config import load_config
        from extractguard.gateway.keys import KeyStore

        gw = load_config(gateway_config)
        keys = KeyStore(gw.keys_path)
        try:
            account = keys.authenticate(key)
        finally:
            keys.close()
        if account is None:
            raise ConfigurationError(f"the variant's API key is not a live key of the gateway in {gateway_config.name}")
        self.account = account.account
        self.record_path = gw.watermark_db_path

    def verdict(self, surrogate: Any, schema: Any, alpha: float) -> WatermarkVerdict:
        from extractguard.evaluate.ladder import watermark_point
        from extractguard.watermark.record import WatermarkRecord

        if not self.record_path.is_file():
            return WatermarkVerdict()
        record = WatermarkRecord(self.record_path, read_only=True)
        try:
            return watermark_point(record, self.account, surrogate, schema, alpha)
        finally:
            record.close()


def claim_transcripts(cfg: Any, workdir: Path, force: bool = False) -> dict[str, Path]:
    """One transcript per variant (the reference first), one run per attack in it plus the probe
    run; an earlier run's paid transcript is refused unless ``force`` discards it."""
    from extractguard.oracle.target_config import load_target_config
    from extractguard.oracle.transcript import SqliteTranscript

    tc = load_target_config(cfg.target.remote)
    tdir = Path(workdir) / "transcripts"
    needed = list(dict.fromkeys([tc.variants[0].name, *(d.variant for d in cfg.defenses.values())]))
    paths = {v: tdir / f"{v}.sqlite" for v in needed}
    for path in paths.values():
        if not path.is_file():
            continue
        with SqliteTranscript(path) as old:
            paid = old.paid_rows()
        if paid and not force:
            raise ConfigurationError(f"transcript {path} already holds {paid} paid answers; the matrix does not resume: "
                                     "pass --force to discard it and pay again, or choose another --out")
    for path in paths.values():
        _remove_transcript(path)
    tdir.mkdir(parents=True, exist_ok=True)
    return paths


def run_remote_matrix(cfg: Any, workdir: Path, force: bool = False,
                      on_cell: Callable[[Cell], None] | None = None) -> MatrixReport:
    """Every (attack, defense) cell over HTTP, serially; the report of :func:`run_matrix`."""
    from extractguard.data.files import load_table
    from extractguard.evaluate.campaign import PROBE_RUN
    from extractguard.evaluate.honest import measure_honest
    from extractguard.evaluate.ladder import one_torch_thread
    from extractguard.evaluate.matrix_report import matrix_report
    from extractguard.evaluate.metrics import ProbeSet, accuracy
    from extractguard.oracle.remote import RemoteOracle, RemoteTarget, check_authorization
    from extractguard.oracle.target_config import load_target_config
    from extractguard.oracle.transcript import SqliteTranscript

    started = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    tc = load_target_config(cfg.target.remote)
    check_authorization(tc)
    variants = {v.name: v for v in tc.variants}
    reference = tc.variants[0].name
    ladder = list(cfg.budgets)
    schema = tc.input_schema
    price = tc.price_per_query
    probe_X, probe_y = load_table(tc.path(tc.probe_data), what="probe data")
    probe_X = schema.validate(probe_X, what="probe data")
    pool = None
    if tc.attacker_data:
        pool = schema.validate(load_table(tc.path(tc.attacker_data), what="attacker data")[0], what="attacker data")

    paths = claim_transcripts(cfg, workdir, force)
    needed = list(paths)
    authorization = tc.authorization.model_dump(exclude_none=True)
    stores: dict[str, Any] = {}
    subs = {v: tc.for_variant(variants[v]) for v in needed}
    for v in needed:  # keys present before anything is paid
        subs[v].api_keys()

    def spend_cap_left(variant: str) -> float | None:
        """The target's spend cap over the whole matrix, as a cap on this variant's transcript."""
        if tc.spend_cap is None:
            return None
        others = sum(s.paid_rows() for name, s in stores.items() if name != variant)
        return max(0.0, tc.spend_cap - others * price)

    def probe_answers(v: str) -> np.ndarray:
        store = stores[v] = SqliteTranscript(paths[v])
        store.set_meta("target", subs[v].describe())
        store.start_session(authorization, {"matrix": True, "variant": v, "attacks": list(cfg.attacks), "budgets": ladder}, resumed=False)
        oracle = RemoteOracle(RemoteTarget(subs[v], seed=cfg.seed), store, PROBE_RUN, price_per_query=price,
                              spend_cap=spend_cap_left(v), purpose="evaluation")
        return oracle.query(probe_X).soft_labels()

    try:
        served = {v: probe_answers(v) for v in needed}
        ref = served[reference]
        probe = ProbeSet(probe_X, ref, probe_y)
        defenses: dict[str, DefenseResult] = {}
        for name, d in cfg.defenses.items():
            honest = measure_honest(ref, served[d.variant], probe_y, Detection(enabled=False),
                                    note=f"the probe rows answered through variant {d.variant!r} vs the reference {reference!r}")
            # What is known of the deployed defense: the variant, and the tier's settings when the
            # gateway's configuration was named (otherwise the chain is not visible from outside).
            spec = d.model_dump(mode="json", exclude_none=True, include={"variant", "gateway", "defenses", "watermark",
                                                                          "detection"} if d.gateway else {"variant"})
            spec["output"] = str(subs[d.variant].output)
            spec["description"] = d.description or variants[d.variant].description or ""
            defenses[name] = DefenseResult(spec=spec, honest=honest)

        cells = []
        with one_torch_thread():
            for name, d in cfg.defenses.items():
                keys = subs[d.variant].api_keys()
                own = len(keys) >= len(cfg.attacks)
                for j, attack_name in enumerate(cfg.attacks):
                    # A variant with one key per attack keeps the attacks' accounts (detection state,
                    # watermark record) apart; otherwise they share the variant's account(s).
                    sub = subs[d.variant].model_copy(update={"keys": [keys[j]], "key_env": []}) if own else subs[d.variant]
                    account = _Account(d.gateway.config, sub.api_keys()[0]) if d.gateway is not None and d.watermark else None
                    cell = _run_cell(cfg, name, d.variant, attack_name, sub, stores[d.variant], probe, pool, ladder, price,
                                     spend_cap_left(d.variant), account, schema)
                    cell = replace(cell, account="own key" if own else f"shared by the {len(cfg.attacks)} attacks on this variant")
                    cells.append(cell)
                    if on_cell is not None:
                        on_cell(cell)
        paid = {v: {"attack": s.paid_rows(purpose="attack"), "evaluation": s.paid_rows(purpose="evaluation")}
                for v, s in stores.items()}
    finally:
        for s in stores.values():
            s.close()
    total = sum(p["attack"] + p["evaluation"] for p in paid.values())
    info = {
        "remote": tc.describe(), "schema": schema.to_dict(), "reference_variant": reference,
        "authorization": authorization,
        "transcripts": {v: str(p) for v, p in paths.items()},
        "paid_queries": {"per_variant": paid, "total": total, "spend": round(total * price, 6),
                         "note": "evaluation rows are the probe answers (one set per variant), paid but never charged "
                                 "to an attack's budget"},
    }
    return matrix_report(cfg, target=info, defenses=defenses, cells=cells, probe_size=len(probe_X),
                         honest_rows=len(probe_X),
                         victim_probe_accuracy=None if probe_y is None else round(accuracy(probe_y, ref), 6),
                         jobs=1, started=started, t0=t0)


def _run_cell(cfg: Any, defense: str, variant: str, attack_name: str, sub: Any, store: Any, probe: Any,
              pool: np.ndarray | None, ladder: list[int], price: float, spend_cap: float | None,
              account: _Account | None, schema: Any) -> Cell:
    """One attack through one deployed variant: a paid extraction, scored at every budget."""
    from extractguard.attacks import create_attack
    from extractguard.evaluate.campaign import attack_run_name, preflight
    from extractguard.evaluate.ladder import cell_scorer, enforced_copy, fit_scored
    from extractguard.oracle.remote import RemoteOracle, RemoteTarget

    t_wall, t_cpu = time.perf_counter(), time.process_time()
    target = RemoteTarget(sub, seed=cfg.seed)
    attack = create_attack(attack_name, pool=pool, surrogate=cfg.surrogate, seed=cfg.seed)
    oracle = RemoteOracle(target, store, attack_run_name(attack_name), budget=ladder[-1], price_per_query=price,
                          spend_cap=spend_cap, purpose="attack")

    score = cell_scorer(probe, price, None if account is None else (lambda copy: account.verdict(copy, schema, cfg.alpha)))

    # A pre-flight refusal costs nothing; a suspension (403) or challenge (428) from the gateway, or
    # an attack that needs scores against a label-only variant, ends the cell with the copies so far.
    points, error, a_wall, a_cpu = fit_scored(
        attack, oracle, ladder, score,
        prepare=lambda: preflight([attack_name], target, ladder, pool=pool, surrogate=cfg.surrogate, seed=cfg.seed))
    detection = _observed(target.stats.refusals)
    if error is not None and detection.responses:
        last = target.stats.refusals[-1]
        action = _detection_response(last)
        if action is not None:  # the client's generic "check the key" line would mislead here
            error = (f"stopped by the gateway's {action} response after {last['rows_before']} queries "
                     f"(HTTP {last['status']}: {last['message']})")
    stats = target.stats
    queries = int(oracle.queries_used)
    return Cell(
        attack=attack_name,
        defense=defense,
        variant=variant,
        paper=attack.paper,
        output=str(sub.output),
        error=error,
        points=points,
        queries=queries,
        calls=int(oracle.stats().calls),
        detection=detection,
        enforced=enforced_copy(points, detection),
        cost=CellCost(
            queries=queries,
            spend=round(queries * price, 6),
            pow_hashes=0,
            throttle_wait_seconds=round(stats.waited_seconds, 1),
            wall_seconds=round(a_wall, 3),
            cpu_seconds=round(a_cpu, 3),
            cell_wall_seconds=round(time.perf_counter() - t_wall, 3),
            cell_cpu_seconds=round(time.process_time() - t_cpu, 3),
            http={"requests": stats.requests, "throttled": stats.throttled, "retries": stats.retries,
                  "server_errors": stats.server_errors},
        ),
    )
