"""Assembling the matrix's report, one way for local and remote targets: cells, per-defense
utility, the frontier at the top budget, and what produced it (config, seed, tool versions)."""

from __future__ import annotations

import datetime as _dt
import json
import platform
import time
from typing import Any

from extractguard import __version__
from extractguard.evaluate.frontier import frontier
from extractguard.evaluate.results import Cell, DefenseResult, MatrixReport


def matrix_report(cfg: Any, *, target: dict[str, Any], defenses: dict[str, DefenseResult], cells: list[Cell],
                  probe_size: int, honest_rows: int, victim_probe_accuracy: float | None, jobs: int,
                  started: _dt.datetime, t0: float) -> MatrixReport:
    """The report of a finished grid; ``started``/``t0`` are its wall-clock and ``perf_counter`` start."""
    return MatrixReport(
        target=target,
        attacks=list(cfg.attacks),
        budgets=list(cfg.budgets),
        defenses=defenses,
        cells=cells,
        frontier=frontier(cells, defenses, cfg.budgets[-1]),
        probe_size=int(probe_size),
        honest_rows=int(honest_rows),
        victim_probe_accuracy=victim_probe_accuracy,
        config=json.loads(cfg.model_dump_json()),
        seed=cfg.seed,
        jobs=jobs,
        started_at=started.isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - t0, 3),
        tool={"extractguard": __version__, "python": platform.python_version()},
    )
