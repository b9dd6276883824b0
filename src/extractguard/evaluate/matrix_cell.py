"""One local matrix cell: an attack against one defense through the in-process cell pipeline."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from extractguard.detect.policy import DetectionConfig
from extractguard.evaluate.cell_pipeline import build_cell_pipeline, timeline
from extractguard.evaluate.honest import honest_utility
from extractguard.evaluate.ladder import cell_scorer, enforced_copy, fit_scored, one_torch_thread, watermark_point
from extractguard.evaluate.matrix_config import MatrixConfig
from extractguard.evaluate.matrix_data import prepared
from extractguard.evaluate.results import Cell, CellCost, Detection, HonestUtility


def run_cell(cfg_json: str, attack_name: str, defense_name: str) -> tuple[Cell, HonestUtility]:
    """One attack against one defense, end to end, and the honest users' utility through that
    defense (the same in every cell of the column; the grid keeps one)."""
    from extractguard.attacks import create_attack
    from extractguard.evaluate.metrics import ProbeSet

    cfg = MatrixConfig.model_validate_json(cfg_json)
    variant = cfg.defenses[defense_name]
    with one_torch_thread():  # one core per cell: results independent of how many cells run at once
        t_wall, t_cpu = time.perf_counter(), time.process_time()
        prep = prepared(cfg_json)
        seed = cfg.seed  # the same attack seed in every cell: a paired comparison across defenses
        with tempfile.TemporaryDirectory(prefix="eg-matrix-") as tmp:
            work = Path(tmp)
            honest = honest_utility(prep, variant, cfg.seed, work, cfg.honest.rows_per_hour)
            account = f"attacker-{attack_name}"
            pipe = build_cell_pipeline(prep, variant, account, cfg.seed, work, cfg.attacker_rows_per_second)
            probe = ProbeSet.from_target(prep.target, prep.probe_X, prep.probe_y)
            ladder = list(cfg.budgets)
            oracle = pipe.oracle(budget=ladder[-1], price_per_query=cfg.price_per_query)
            attack = create_attack(attack_name, pool=prep.pool, surrogate=cfg.surrogate, seed=seed)

            record, schema = pipe.record, prep.target.schema
            score = cell_scorer(probe, cfg.price_per_query, None if record is None else (
                lambda copy: watermark_point(record, pipe.account, copy, schema, cfg.alpha)))

            # The attacker's own time: querying (through the simulated gateway) and training its copies.
            points, error, a_wall, a_cpu = fit_scored(attack, oracle, ladder, score)
            stats = oracle.stats()
            detection = Detection.from_dict(timeline(pipe))
            if pipe.record is not None:
                pipe.record.close()
    wall, cpu = time.perf_counter() - t_wall, time.process_time() - t_cpu
    enforced = enforced_copy(points, detection)
    pow_hashes = pipe.requests_challenged * (2 ** variant.detection.challenge_bits) if variant.detection else 0
    throttle_wait = _throttle_wait(pipe.rows_throttled, variant.detection)
    cell = Cell(
        attack=attack_name,
        defense=defense_name,
        paper=attack.paper,
        output=str(variant.output),
        error=error,
        points=points,
        queries=stats.queries,
        calls=stats.calls,
        detection=detection,
        enforced=enforced,
        cost=CellCost(
            queries=stats.queries,
            spend=round(stats.queries * cfg.price_per_query, 6),
            pow_hashes=int(pow_hashes),
            throttle_wait_seconds=round(throttle_wait, 1),
            wall_seconds=round(a_wall, 3),
            cpu_seconds=round(a_cpu, 3),
            cell_wall_seconds=round(wall, 3),
            cell_cpu_seconds=round(cpu, 3),
        ),
    )
    return cell, honest


def _throttle_wait(rows: int, detection: DetectionConfig | None) -> float:
    """Seconds an attacker would wait to get ``rows`` rows through the throttle limit."""
    if not rows or detection is None:
        return 0.0
    from limits import parse

    item = parse(detection.throttle_limit)
    return rows / item.amount * item.get_expiry()
