"""One local matrix cell: an attack against one defense through the in-process cell pipeline."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from extractguard.detect.policy import DetectionConfig
from extractguard.evaluate.cell_pipeline import build_cell_pipeline, timeline
from extractguard.evaluate.honest import honest_utility
from extractguard.evaluate.ladder import checkpoint_point, enforced_copy, fit_scored, watermark_point
from extractguard.evaluate.matrix_config import MatrixConfig
from extractguard.evaluate.matrix_data import prepared


def run_cell(cfg_json: str, attack_name: str, defense_name: str) -> dict[str, Any]:
    """One attack against one defense, end to end; a plain dict (crosses process boundaries)."""
    import torch

    from extractguard.attacks import create_attack
    from extractguard.evaluate.metrics import ProbeSet

    cfg = MatrixConfig.model_validate_json(cfg_json)
    variant = cfg.defenses[defense_name]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core per cell: results independent of how many cells run at once
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    try:
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

            def score(cp: Any) -> dict[str, Any]:
                point = checkpoint_point(cp, probe, cfg.price_per_query)
                if pipe.record is not None:
                    point.update(watermark_point(pipe.record, pipe.account, cp.surrogate, prep.target.schema, cfg.alpha))
                return point

            # The attacker's own time: querying (through the simulated gateway) and training its copies.
            points, error, a_wall, a_cpu = fit_scored(attack, oracle, ladder, score)
            stats = oracle.stats()
            detection = timeline(pipe)
            if pipe.record is not None:
                pipe.record.close()
    finally:
        torch.set_num_threads(threads)
    wall, cpu = time.perf_counter() - t_wall, time.process_time() - t_cpu
    enforced = enforced_copy(points, detection)
    pow_hashes = pipe.requests_challenged * (2 ** variant.detection.challenge_bits) if variant.detection else 0
    throttle_wait = _throttle_wait(pipe.rows_throttled, variant.detection)
    return {
        "attack": attack_name,
        "defense": defense_name,
        "paper": attack.paper,
        "output": variant.output,
        "error": error,
        "points": points,
        "queries": stats.queries,
        "calls": stats.calls,
        "detection": detection,
        "enforced": enforced,
        "honest": honest,
        "cost": {
            "queries": stats.queries,
            "spend": round(stats.queries * cfg.price_per_query, 6),
            "pow_hashes": int(pow_hashes),
            "throttle_wait_seconds": round(throttle_wait, 1),
            "wall_seconds": round(a_wall, 3),
            "cpu_seconds": round(a_cpu, 3),
            "cell_wall_seconds": round(wall, 3),
            "cell_cpu_seconds": round(cpu, 3),
        },
    }


def _throttle_wait(rows: int, detection: DetectionConfig | None) -> float:
    """Seconds an attacker would wait to get ``rows`` rows through the throttle limit."""
    if not rows or detection is None:
        return 0.0
    from limits import parse

    item = parse(detection.throttle_limit)
    return rows / item.amount * item.get_expiry()
