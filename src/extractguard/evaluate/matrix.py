"""The assessment matrix: every attack against every defense, over one budget ladder.

``extractguard assess --config assess.yaml`` answers the owner's one question, "which defense do
I deploy?", with the two sides of each choice measured in one run:

* the thief: the stolen copy's fidelity at each budget (held-out probe set, never queried), the
  queries until the detection monitor flags the account and until each graduated response
  (throttle, challenge, suspend) would trigger, the watermark test's p-value on the stolen copy,
  and the attacker's cost (queries x price, proof-of-work hashes, throttled waiting time, wall and
  CPU seconds of the attack itself);
* the honest user: how often the defended answers agree with the real model (and with the true
  labels) on honest traffic, and whether the detector wrongly flags an honest account.

Each cell (attack x defense) is an :class:`~extractguard.oracle.Oracle` over the gateway's own
answer pipeline (:class:`~extractguard.serving.ServingPipeline`, :mod:`.cell_pipeline`) on a
simulated clock: the detection monitor sees the owner's undefended probabilities of each request,
then the defense chain, then the keyed watermark (recorded per account,
:class:`~extractguard.watermark.WatermarkRecord`), then the tier's output mode.  The gateway serves
through the same object, so what is measured is what is deployed.

The attack runs to the end of the ladder even when the account would have been suspended: the
report gives both the copy at the last budget the attacker reached before suspension
("enforced") and the copy without enforcement, clearly labelled.  Every cell uses the same attack
seed (a paired comparison: the defenses differ, the attacker's choices do not), and cells are
independent processes whose results do not depend on scheduling.

A deployed API (``target: {remote: target.yaml}``) is measured over HTTP instead, one cell at a
time, each defense being a variant (API key) of target.yaml: :mod:`extractguard.evaluate.matrix_remote`.

Where each part lives: ``matrix_config`` (assess.yaml, validated once), ``matrix_data`` (the
target and its held-out and honest rows), ``cell_pipeline`` (a cell's answer pipeline),
``honest`` (honest-user utility), ``ladder`` (climbing the budget ladder and scoring each
checkpoint, shared with the assessment and the remote campaign), ``matrix_cell`` (one local
cell), ``frontier``, ``matrix_report`` and ``results`` (the typed report).  This module runs
the grid, here or in a process pool.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

from extractguard.errors import ConfigurationError
from extractguard.evaluate.matrix_cell import run_cell
from extractguard.evaluate.matrix_config import MatrixConfig, load_matrix_config
from extractguard.evaluate.matrix_data import prepared
from extractguard.evaluate.matrix_report import matrix_report
from extractguard.evaluate.results import Cell, DefenseResult, HonestUtility, MatrixReport

__all__ = ["CellCallback", "load_matrix_config", "run_matrix"]


def _worker_init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


# -- the grid -----------------------------------------------------------------------------------
CellCallback = Callable[[Cell], None]


def run_matrix(cfg: MatrixConfig, jobs: int | None = None, on_cell: CellCallback | None = None,
               workdir: Path | None = None, force: bool = False) -> MatrixReport:
    """Run every (attack, defense) cell; returns the report (``to_dict()`` is ``report.json``).

    ``jobs`` > 1 runs cells in a process pool (spawned, so no fork of a process holding torch
    threads); ``jobs == 1`` runs them here, in order.  Results do not depend on ``jobs``.
    A remote target (``target.remote``) runs its cells serially over HTTP, with transcripts in
    ``workdir/transcripts`` (:mod:`extractguard.evaluate.matrix_remote`).
    """
    if cfg.target.remote is not None:
        from extractguard.evaluate.matrix_remote import run_remote_matrix

        return run_remote_matrix(cfg, workdir or Path("."), force=force, on_cell=on_cell)
    jobs = cfg.jobs if jobs is None else jobs
    started = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    cfg_json = cfg.model_dump_json()
    prep = prepared(cfg_json)  # builds and caches the victim once, before any worker needs it
    for name, variant in cfg.defenses.items():
        if variant.detection is not None and variant.detection.reference is None and len(prep.reference_X) < 50:
            raise ConfigurationError(
                f"defense {name!r}: detection calibrates on half the held-out rows, here {len(prep.reference_X)}; it needs "
                "at least 50 (use a larger dataset or set detection.reference to the owner's held-out rows)"
            )
    cells_spec = [(a, d) for d in cfg.defenses for a in cfg.attacks]
    results: dict[tuple[str, str], tuple[Cell, HonestUtility]] = {}
    if jobs <= 1 or len(cells_spec) == 1:
        for a, d in cells_spec:
            results[(a, d)] = run_cell(cfg_json, a, d)
            if on_cell is not None:
                on_cell(results[(a, d)][0])
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(max_workers=min(jobs, len(cells_spec)), mp_context=mp.get_context("spawn"),
                                 initializer=_worker_init) as pool:
            futures = {pool.submit(run_cell, cfg_json, a, d): (a, d) for a, d in cells_spec}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                if on_cell is not None:
                    on_cell(results[futures[fut]][0])
    cells = [results[k][0] for k in cells_spec]
    defenses = {}
    for name, variant in cfg.defenses.items():
        honest = next(results[k][1] for k in cells_spec if k[1] == name)
        defenses[name] = DefenseResult(spec=variant.model_dump(mode="json", exclude_none=True), honest=honest)
    from extractguard.evaluate.metrics import ProbeSet

    probe = ProbeSet.from_target(prep.target, prep.probe_X, prep.probe_y)
    return matrix_report(cfg, target=prep.info, defenses=defenses, cells=cells, probe_size=len(prep.probe_X),
                         honest_rows=len(prep.honest_X), victim_probe_accuracy=probe.victim_accuracy(), jobs=jobs,
                         started=started, t0=t0)
