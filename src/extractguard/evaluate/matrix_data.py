"""The matrix's target, its held-out rows and the honest users' traffic, prepared once per process."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from extractguard.errors import ConfigurationError
from extractguard.evaluate.matrix_config import MatrixConfig


@dataclass
class Prepared:
    """Everything a cell needs, rebuilt identically in every worker process."""

    target: Any
    info: dict[str, Any]
    pool: np.ndarray | None
    probe_X: np.ndarray
    probe_y: np.ndarray | None
    owner_data: np.ndarray | None
    reference_X: np.ndarray  # the owner's held-out rows the detectors calibrate on
    honest_X: np.ndarray  # honest users' rows (disjoint from reference_X)
    honest_y: np.ndarray | None


def prepare(cfg: MatrixConfig) -> Prepared:
    """Build (or load from cache) the target and split its held-out rows.

    The probe set (fidelity yardstick) is every held-out row; its first half calibrates the
    detectors (the owner's sample of honest traffic, as the gateway does with a zoo victim's
    held-out split) and its second half is the honest users' traffic, so the detectors are never
    tested on the rows they were calibrated on.
    """
    from extractguard.detect.simulate import honest_rows

    t = cfg.target
    seed = cfg.seed
    if t.victim is not None:
        from extractguard.victims import build_victim

        v = build_victim(t.victim, seed=seed)
        target, pool = v.target, v.pool()
        probe_X, probe_y = v.probe()
        owner = v.dataset.X[v.splits.train]
        info = v.describe()
    else:
        from extractguard.data.files import load_table
        from extractguard.oracle.loading import build_target, load_model_file

        assert t.model is not None and t.attacker_data is not None
        loaded = load_model_file(t.model)
        pool_raw, _ = load_table(t.attacker_data, what="attacker data")
        shape = tuple(t.input_shape) if t.input_shape else None
        target = build_target(loaded, pool_raw, shape, t.n_classes, t.low, t.high)
        pool = target.schema.validate(pool_raw, what="attacker data")
        if t.probe_data is not None:
            probe_X, probe_y = load_table(t.probe_data, what="probe data")
            probe_X = target.schema.validate(probe_X, what="probe data")
        else:
            if len(pool) < 20:
                raise ConfigurationError("attacker data needs at least 20 rows to hold out a probe set")
            order = np.random.default_rng(seed).permutation(len(pool))
            cut = max(10, len(pool) // 5)
            probe_X, probe_y, pool = pool[order[:cut]], None, pool[order[cut:]]
        owner = None
        if t.owner_data is not None:
            owner = target.schema.validate(load_table(t.owner_data, what="owner data")[0], what="owner data")
        info = {"model_file": str(t.model), "format": loaded.kind, "schema": target.schema.to_dict(),
                "attacker_rows": int(len(pool))}
    if len(probe_X) < 20:
        raise ConfigurationError(f"the probe set has {len(probe_X)} rows; the matrix needs at least 20")
    half = len(probe_X) // 2
    order = np.random.default_rng(seed + 1).permutation(len(probe_X))
    ref_idx, hon_idx = np.sort(order[:half]), np.sort(order[half:])
    rng = np.random.default_rng(seed + 2)
    if cfg.honest.source == "pool":
        if pool is None or len(pool) == 0:
            raise ConfigurationError("honest.source: pool needs attacker data")
        base_X, base_y = pool, None
    else:
        base_X, base_y = probe_X[hon_idx], None if probe_y is None else probe_y[hon_idx]
    if cfg.honest.rows is None:
        honest_X, honest_y = honest_rows(base_X, None, target.schema, rng), base_y
    else:
        pick = rng.integers(0, len(base_X), size=cfg.honest.rows)
        honest_X = honest_rows(base_X[pick], None, target.schema, rng)
        honest_y = None if base_y is None else base_y[pick]
    return Prepared(target, info, pool, probe_X, probe_y, owner, probe_X[ref_idx], honest_X, honest_y)


_PREPARED: dict[str, Prepared] = {}


def prepared(cfg_json: str) -> Prepared:
    """One prepared target per process and configuration (workers run several cells)."""
    key = hashlib.sha256(cfg_json.encode()).hexdigest()
    if key not in _PREPARED:
        _PREPARED.clear()
        _PREPARED[key] = prepare(MatrixConfig.model_validate_json(cfg_json))
    return _PREPARED[key]
