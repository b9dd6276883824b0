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

Each cell (attack x defense) answers through the gateway's own in-process pipeline, in the
gateway's order (gateway/app.py): the detection monitor sees the owner's undefended
probabilities of each request, then the defense chain, then the keyed watermark (recorded per
account, :class:`~extractguard.watermark.WatermarkRecord`), then the tier's output mode.  The same
building blocks (``build_chain``, ``AnswerWatermark``, ``build_monitor``, ``verify_suspect``) run
here and in the gateway, so what is measured is what is deployed.

The attack runs to the end of the ladder even when the account would have been suspended: the
report gives both the copy at the last budget the attacker reached before suspension
("enforced") and the copy without enforcement, clearly labelled.  Every cell uses the same attack
seed (a paired comparison: the defenses differ, the attacker's choices do not), and cells are
independent processes whose results do not depend on scheduling.

A deployed API (``target: {remote: target.yaml}``) is measured over HTTP instead, one cell at a
time, each defense being a variant (API key) of target.yaml: :mod:`extractguard.evaluate.matrix_remote`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from extractguard import __version__
from extractguard.detect.policy import ACTIONS, DetectionConfig
from extractguard.errors import ConfigurationError, ExtractGuardError, read_yaml
from extractguard.gateway.config import AnswerPolicy
from extractguard.oracle.budget import BudgetLadder

if TYPE_CHECKING:
    from extractguard.evaluate.metrics import ProbeSet


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MatrixTarget(_Strict):
    """The model under assessment: a built-in victim, or a model file with the attacker's data."""

    victim: Optional[str] = Field(None, description="Built-in victim DATASET-ARCH, e.g. digits-mlp.")
    model: Optional[Path] = Field(None, description="Model file: scikit-learn .pkl/.joblib, .onnx or TorchScript .pt.")
    attacker_data: Optional[Path] = Field(None, description="With model: the attacker's natural inputs (.csv/.npy/.npz).")
    probe_data: Optional[Path] = Field(None, description="With model: held-out rows with labels (default: 20% of attacker_data).")
    owner_data: Optional[Path] = Field(None, description="With model: owner's rows to fit data-hungry defenses (MAD) on.")
    input_shape: Optional[list[int]] = None
    n_classes: Optional[int] = Field(None, ge=2)
    low: Optional[float] = None
    high: Optional[float] = None
    remote: Optional[Path] = Field(None, description="A deployed API: target.yaml with authorization and variants (one per defense).")

    @model_validator(mode="after")
    def _one(self) -> MatrixTarget:
        given = [k for k in ("victim", "model", "remote") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of target.victim, target.model or target.remote")
        if self.remote is not None:
            if self.model_fields_set - {"remote"}:
                raise ValueError("target.remote takes its schema and data from target.yaml; drop "
                                 + ", ".join(sorted(self.model_fields_set - {"remote"})))
            return self
        if self.model is not None and self.attacker_data is None:
            raise ValueError("target.model needs target.attacker_data: the natural inputs an attacker would hold")
        if self.victim is None:
            return self
        if any(getattr(self, k) is not None for k in ("attacker_data", "probe_data", "owner_data", "input_shape", "n_classes", "low", "high")):
            raise ValueError("target.victim takes its data and schema from the zoo; drop the model-file fields")
        return self


class GatewayTierRef(_Strict):
    """Take a defense from a deployed gateway's configuration: assess exactly what is served."""

    config: Path = Field(description="The gateway's YAML (relative to assess.yaml).")
    tier: str = Field(description="The tier whose output mode, defenses, watermark and detection to use.")


class DefenseVariant(AnswerPolicy):
    """One column of the matrix: what a gateway tier applies (the tier's own answer fields, same
    meaning and validation), or a reference to a tier of a gateway configuration file
    (``gateway: {config, tier}``)."""

    description: str = ""
    gateway: Optional[GatewayTierRef] = None
    variant: Optional[str] = Field(None, description="With target.remote: the variant of target.yaml (its API key) to attack.")

    @field_validator("defenses")
    @classmethod
    def _chain(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from extractguard.defenses import build_chain

        try:
            build_chain(v)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None
        return v


class HonestTraffic(_Strict):
    """Where honest users' queries come from, to measure what each defense costs them."""

    source: str = Field("probe", description="probe (held-out rows with labels, default) or pool (attacker-like natural rows).")
    rows: Optional[int] = Field(None, ge=10, description="Rows to send (resampled and re-rendered); default: each row once.")
    rows_per_hour: float = Field(60.0, gt=0, description="An honest account's pace (for the rate detector).")

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        if v not in ("probe", "pool"):
            raise ValueError(f"honest.source must be 'probe' or 'pool', got {v!r}")
        return v


class MatrixConfig(_Strict):
    """The whole ``assess.yaml``.  See examples/assess.yaml and docs/assess.md."""

    target: MatrixTarget
    attacks: list[str] = Field(min_length=1)
    budgets: BudgetLadder
    defenses: dict[str, DefenseVariant] = Field(min_length=1)
    honest: HonestTraffic = Field(default_factory=HonestTraffic)
    surrogate: str = "auto"
    price_per_query: float = Field(0.0, ge=0)
    attacker_rows_per_second: float = Field(10.0, gt=0, description="Attacker's pace, for time-based detectors and throttling.")
    alpha: float = Field(1e-6, gt=0, lt=1, description="Significance of the watermark verdict.")
    seed: int = 0
    jobs: int = Field(2, ge=1, le=64)

    @field_validator("attacks")
    @classmethod
    def _attacks(cls, v: list[str]) -> list[str]:
        from extractguard.attacks import ATTACKS

        names = [a.strip().lower() for a in v]
        bad = [a for a in names if a not in ATTACKS]
        if bad:
            raise ValueError(f"unknown attack(s) {', '.join(bad)}; available: {', '.join(ATTACKS)}")
        if len(set(names)) != len(names):
            raise ValueError("an attack is listed twice")
        return names

    @field_validator("defenses")
    @classmethod
    def _names(cls, v: dict[str, DefenseVariant]) -> dict[str, DefenseVariant]:
        for name in v:
            if not name or any(c.isspace() or c in "=," for c in name):
                raise ValueError(f"defense name {name!r}: use letters, digits, '-', '_' (no spaces, '=' or ',')")
        return v


def _format_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def load_matrix_config(path: Path | str) -> MatrixConfig:
    """Read and validate ``assess.yaml``; relative paths in it are relative to the file."""
    p = Path(path)
    cfg = parse_matrix_config(read_yaml(p, "assessment config"), p.name)
    base = p.resolve().parent
    t = cfg.target
    if t.remote is not None:
        from extractguard.evaluate.matrix_remote import resolve_remote

        return resolve_remote(cfg, base, p.name)
    for field in ("model", "attacker_data", "probe_data", "owner_data"):
        val = getattr(t, field)
        if val is not None and not val.is_absolute():
            setattr(t, field, base / val)
    for name, d in cfg.defenses.items():
        if d.variant is not None:
            raise ConfigurationError(f"{p.name}: defenses.{name}.variant: only a remote target (target.remote) has variants")
        if d.gateway is not None:
            cfg.defenses[name] = _from_gateway(name, d, base, p.name)
            continue
        if d.detection is not None and d.detection.reference is not None and not d.detection.reference.is_absolute():
            d.detection.reference = base / d.detection.reference
    return cfg


def _from_gateway(name: str, d: DefenseVariant, base: Path, source: str) -> DefenseVariant:
    """The defense a gateway tier applies, read from the gateway's own configuration file."""
    from extractguard.gateway.config import load_config

    assert d.gateway is not None
    if d.model_fields_set - {"gateway", "description", "variant"}:
        extra = ", ".join(sorted(d.model_fields_set - {"gateway", "description", "variant"}))
        raise ConfigurationError(f"{source}: defenses.{name}: takes its settings from gateway.tier; drop {extra}")
    path = d.gateway.config if d.gateway.config.is_absolute() else base / d.gateway.config
    gw = load_config(path)
    tier = gw.tiers.get(d.gateway.tier)
    if tier is None:
        raise ConfigurationError(f"{source}: defenses.{name}: gateway {path.name} has no tier {d.gateway.tier!r} "
                                 f"(tiers: {', '.join(gw.tiers)})")
    return DefenseVariant(description=d.description or f"tier {d.gateway.tier} of {path.name}", output=tier.output,
                          defenses=tier.defenses, watermark=tier.watermark, detection=tier.detection,
                          variant=d.variant,  # a remote defense keeps its gateway: the watermark verdict reads its record
                          gateway=GatewayTierRef(config=path, tier=d.gateway.tier) if d.variant is not None else None)


def parse_matrix_config(data: Any, source: str = "assessment config") -> MatrixConfig:
    if not isinstance(data, dict):
        raise ConfigurationError(f"{source}: expected a YAML mapping at the top level")
    try:
        return MatrixConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(f"{source}: {_format_error(exc)}") from None


# -- the target, its data and the honest traffic ----------------------------------------------
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


# -- the gateway pipeline, in process --------------------------------------------------------
class _Clock:
    """Simulated time: a stream of rows at a constant pace (rows per second)."""

    def __init__(self, rows_per_second: float) -> None:
        self.rate = rows_per_second
        self.rows = 0

    def advance(self, n: int) -> float:
        self.rows += n
        return self.rows / self.rate


class PipelineTarget:
    """A target answering one account as a gateway tier would: detection, defenses, watermark.

    The output mode is applied by the :class:`~extractguard.oracle.Oracle` wrapped around it,
    last, as in the gateway.  Also keeps the detection timeline: the query count at which each
    detector signal first fired and at which each graduated response would have started.
    """

    def __init__(self, target: Any, chain: Any, rng: np.random.Generator, *, account: str, watermark: Any = None,
                 record: Any = None, monitor: Any = None, detection: DetectionConfig | None = None,
                 rows_per_second: float = 10.0) -> None:
        self._target = target
        self.schema = target.schema
        self.chain, self.rng, self.account = chain, rng, account
        self.watermark, self.record = watermark, record
        self.monitor, self.detection = monitor, detection
        self.clock = _Clock(rows_per_second)
        self.action = "none"
        #: first query count at which each action started (rows served before that request)
        self.action_at: dict[str, int] = {}
        self.first_alarm: dict[str, int] = {}
        self.max_level = 0.0
        self.explanation = ""
        self.requests_challenged = 0
        self.rows_throttled = 0
        self.rows = 0
        self.served_before_suspension: int | None = None

    def predict(self, X: np.ndarray) -> Any:
        from extractguard.oracle.targets import Prediction

        pred = self._target.predict(X)
        n = len(X)
        if self.monitor is not None and self.detection is not None:
            # What this request costs under the sanction in force when it arrives.
            if self.action == "challenge":
                self.requests_challenged += 1
            elif self.action == "throttle":
                self.rows_throttled += n
            risk = self.monitor.observe(self.account, X, pred.probabilities, ts=self.clock.advance(n))
            self.max_level = max(self.max_level, risk.level)
            self.first_alarm = dict(risk.first_alarm)
            if risk.fired:
                self.explanation = self.explanation or risk.explain()
            wanted = self.detection.action_for(risk.level)
            for a in ACTIONS[1:ACTIONS.index(wanted) + 1]:
                if a in self.detection.responses:
                    self.action_at.setdefault(a, self.rows + n)  # decided on this request, as first_flag
            if wanted == "suspend" and self.served_before_suspension is None:
                # the gateway refuses the request that triggers a suspension: the attacker keeps only the rows before it
                self.served_before_suspension = self.rows
            if ACTIONS.index(wanted) > ACTIONS.index(self.action):
                self.action = wanted
        self.rows += n
        p = self.chain.apply(pred.probabilities, X, self.rng) if self.chain.defenses else pred.probabilities
        logits = pred.logits if not self.chain.defenses else None
        if self.watermark is not None:
            p, marks = self.watermark.apply(p, X, self.account)
            logits = None
            if self.record is not None:
                self.record.add(self.account, X, marks)
        return Prediction(p, logits)


def _master_key(seed: int) -> bytes:
    # A simulation key, reproducible from the seed; a deployed gateway uses a random secret file.
    return hashlib.sha256(f"extractguard-assess-matrix/{seed}".encode()).digest()


def _build_pipeline(prep: Prepared, variant: DefenseVariant, account: str, seed: int, workdir: Path,
                    rows_per_second: float) -> PipelineTarget:
    from extractguard.defenses import build_chain
    from extractguard.detect import build_monitor
    from extractguard.watermark import AnswerWatermark, WatermarkRecord

    target = prep.target
    chain = build_chain(variant.defenses).fit(target, prep.owner_data)
    wm = rec = None
    if variant.watermark is not None:
        w = variant.watermark
        wm = AnswerWatermark.from_config(_master_key(seed), w, target.schema.low, target.schema.high)
        rec = WatermarkRecord(workdir / f"watermarks-{account}.db")
    monitor = None
    if variant.detection is not None:
        dc = variant.detection
        ref = prep.reference_X
        if dc.reference is not None:
            from extractguard.gateway.detection import load_reference

            ref = load_reference(dc.reference, target.schema.n_features)
        monitor = build_monitor(target, ref, detectors=dc.detectors, baseline_rows_per_hour=dc.baseline_rows_per_hour,
                                params=dc.params, seed=dc.seed)
    return PipelineTarget(target, chain, np.random.default_rng(seed), account=account, watermark=wm, record=rec,
                          monitor=monitor, detection=variant.detection, rows_per_second=rows_per_second)


def _timeline(pipe: PipelineTarget) -> dict[str, Any]:
    if pipe.monitor is None:
        return {"enabled": False}
    return {
        "enabled": True,
        "first_flag": pipe.first_alarm and min(pipe.first_alarm.values()) or None,
        "signals": dict(sorted(pipe.first_alarm.items(), key=lambda kv: kv[1])),
        "responses": {a: pipe.action_at.get(a) for a in ACTIONS[1:] if pipe.detection and a in pipe.detection.responses},
        "served_before_suspension": pipe.served_before_suspension,
        "max_level": round(pipe.max_level, 4),
        "explanation": pipe.explanation or "no signal fired",
    }


def honest_utility(prep: Prepared, variant: DefenseVariant, seed: int, workdir: Path, rows_per_hour: float) -> dict[str, Any]:
    """What honest users get through this defense: agreement with the real model, accuracy,
    L1 distance of the served scores, and whether their account was flagged (a false positive)."""
    from extractguard.evaluate.metrics import accuracy, fidelity, mean_l1
    from extractguard.oracle import Oracle

    pipe = _build_pipeline(prep, variant, "honest-user", seed + 7, workdir, rows_per_hour / 3600.0)
    oracle = Oracle(pipe, output=variant.output)
    X = prep.honest_X
    served_parts, rng = [], np.random.default_rng(seed + 3)
    i = 0
    while i < len(X):  # honest requests carry a few rows each (1 + geometric, mean 2)
        k = min(int(rng.geometric(0.5)), len(X) - i)
        served_parts.append(oracle.query(X[i:i + k]).soft_labels())
        i += k
    served = np.concatenate(served_parts)
    if pipe.record is not None:
        pipe.record.close()
    real = prep.target.predict(X).probabilities
    det = _timeline(pipe)
    out: dict[str, Any] = {
        "rows": int(len(X)),
        "agreement": round(fidelity(real, served), 6),
        "accuracy": None if prep.honest_y is None else round(accuracy(prep.honest_y, served), 6),
        "model_accuracy": None if prep.honest_y is None else round(accuracy(prep.honest_y, real), 6),
        "mean_l1": round(mean_l1(real, served), 6),
        "flagged": bool(det.get("first_flag")) if det["enabled"] else None,
        "detection": det,
    }
    return out


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


def run_cell(cfg_json: str, attack_name: str, defense_name: str) -> dict[str, Any]:
    """One attack against one defense, end to end; a plain dict (crosses process boundaries)."""
    import torch

    from extractguard.attacks import create_attack
    from extractguard.evaluate.metrics import ProbeSet
    from extractguard.oracle import Oracle

    cfg = MatrixConfig.model_validate_json(cfg_json)
    variant = cfg.defenses[defense_name]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core per cell: results independent of how many cells run at once
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    try:
        prep = _prepared(cfg_json)
        seed = cfg.seed  # the same attack seed in every cell: a paired comparison across defenses
        with tempfile.TemporaryDirectory(prefix="eg-matrix-") as tmp:
            work = Path(tmp)
            honest = honest_utility(prep, variant, cfg.seed, work, cfg.honest.rows_per_hour)
            account = f"attacker-{attack_name}"
            pipe = _build_pipeline(prep, variant, account, cfg.seed, work, cfg.attacker_rows_per_second)
            probe = ProbeSet.from_target(prep.target, prep.probe_X, prep.probe_y)
            ladder = list(cfg.budgets)
            oracle = Oracle(pipe, output=variant.output, budget=ladder[-1], price_per_query=cfg.price_per_query)
            attack = create_attack(attack_name, pool=prep.pool, surrogate=cfg.surrogate, seed=seed)

            def score(cp: Any) -> dict[str, Any]:
                point = checkpoint_point(cp, probe, cfg.price_per_query)
                if pipe.record is not None:
                    point.update(watermark_point(pipe.record, pipe.account, cp.surrogate, prep.target.schema, cfg.alpha))
                return point

            # The attacker's own time: querying (through the simulated gateway) and training its copies.
            points, error, a_wall, a_cpu = fit_scored(attack, oracle, ladder, score)
            stats = oracle.stats()
            detection = _timeline(pipe)
            if pipe.record is not None:
                pipe.record.close()
    finally:
        torch.set_num_threads(threads)
    wall, cpu = time.perf_counter() - t_wall, time.process_time() - t_cpu
    enforced = _enforced(points, detection)
    pow_hashes = pipe.requests_challenged * (2 ** variant.detection.challenge_bits) if variant.detection else 0
    throttle_wait = _throttle_wait(pipe.rows_throttled, variant.detection)
    return {
        "attack": attack_name,
        "defense": defense_name,
        "paper": attack.paper,
        "output": str(variant.output),
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


def _enforced(points: list[dict[str, Any]], detection: dict[str, Any]) -> dict[str, Any]:
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


def _throttle_wait(rows: int, detection: DetectionConfig | None) -> float:
    """Seconds an attacker would wait to get ``rows`` rows through the throttle limit."""
    if not rows or detection is None:
        return 0.0
    from limits import parse

    item = parse(detection.throttle_limit)
    return rows / item.amount * item.get_expiry()


_PREPARED: dict[str, Prepared] = {}


def _prepared(cfg_json: str) -> Prepared:
    """One prepared target per process and configuration (workers run several cells)."""
    key = hashlib.sha256(cfg_json.encode()).hexdigest()
    if key not in _PREPARED:
        _PREPARED.clear()
        _PREPARED[key] = prepare(MatrixConfig.model_validate_json(cfg_json))
    return _PREPARED[key]


def _worker_init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


# -- the grid -----------------------------------------------------------------------------------
CellCallback = Callable[[dict[str, Any]], None]


def run_matrix(cfg: MatrixConfig, jobs: int | None = None, on_cell: CellCallback | None = None,
               workdir: Path | None = None, force: bool = False) -> dict[str, Any]:
    """Run every (attack, defense) cell; returns the report as a dict (``report.json``).

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
    prep = _prepared(cfg_json)  # builds and caches the victim once, before any worker needs it
    for name, variant in cfg.defenses.items():
        if variant.detection is not None and variant.detection.reference is None and len(prep.reference_X) < 50:
            raise ConfigurationError(
                f"defense {name!r}: detection calibrates on half the held-out rows, here {len(prep.reference_X)}; it needs "
                "at least 50 (use a larger dataset or set detection.reference to the owner's held-out rows)"
            )
    cells_spec = [(a, d) for d in cfg.defenses for a in cfg.attacks]
    results: dict[tuple[str, str], dict[str, Any]] = {}
    if jobs <= 1 or len(cells_spec) == 1:
        for a, d in cells_spec:
            results[(a, d)] = run_cell(cfg_json, a, d)
            if on_cell is not None:
                on_cell(results[(a, d)])
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(max_workers=min(jobs, len(cells_spec)), mp_context=mp.get_context("spawn"),
                                 initializer=_worker_init) as pool:
            futures = {pool.submit(run_cell, cfg_json, a, d): (a, d) for a, d in cells_spec}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                if on_cell is not None:
                    on_cell(results[futures[fut]])
    cells = [results[k] for k in cells_spec]
    defenses = {}
    for name, variant in cfg.defenses.items():
        first = next(c for c in cells if c["defense"] == name)
        defenses[name] = {"spec": variant.model_dump(mode="json", exclude_none=True), "honest": first["honest"]}
    for c in cells:
        c.pop("honest")
    from extractguard.evaluate.metrics import ProbeSet

    probe = ProbeSet.from_target(prep.target, prep.probe_X, prep.probe_y)
    return {
        "kind": "assessment-matrix",
        "target": prep.info,
        "attacks": list(cfg.attacks),
        "budgets": list(cfg.budgets),
        "defenses": defenses,
        "cells": cells,
        "frontier": frontier(cells, defenses, cfg.budgets[-1]),
        "probe_size": int(len(prep.probe_X)),
        "honest_rows": int(len(prep.honest_X)),
        "victim_probe_accuracy": probe.victim_accuracy(),
        "config": json.loads(cfg_json),
        "seed": cfg.seed,
        "jobs": jobs,
        "started_at": started.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - t0, 3),
        "tool": {"extractguard": __version__, "python": platform.python_version()},
    }


def fidelity_at(cell: dict[str, Any], budget: int) -> float | None:
    for p in cell["points"]:
        if p["budget"] == budget:
            return p["fidelity"]
    return None


def frontier(cells: list[dict[str, Any]], defenses: dict[str, Any], budget: int) -> list[dict[str, Any]]:
    """One point per defense: the best attack's stolen fidelity at ``budget`` (no enforcement)
    and, when the suspension is enforced, vs the honest users' agreement with the real model;
    ``pareto`` marks the defenses no other defense beats on both (lower fidelity, higher utility)."""
    pts = []
    for name, d in defenses.items():
        fids = [fidelity_at(c, budget) for c in cells if c["defense"] == name]
        fids = [f for f in fids if f is not None]
        enf = []
        for c in cells:
            if c["defense"] != name:
                continue
            f = fidelity_at(c, budget)
            if c["enforced"]["suspended_at"] is not None:
                f = c["enforced"]["fidelity"] or 0.0
            if f is not None:
                enf.append(f)
        pts.append({"defense": name, "budget": budget, "utility": d["honest"]["agreement"],
                    "fidelity": max(fids) if fids else None, "fidelity_enforced": max(enf) if enf else None})
    for p in pts:
        if p["fidelity"] is None:
            p["pareto"] = False
            continue
        p["pareto"] = not any(
            q is not p and q["fidelity"] is not None and q["fidelity"] <= p["fidelity"] and q["utility"] >= p["utility"]
            and (q["fidelity"] < p["fidelity"] or q["utility"] > p["utility"]) for q in pts
        )
    return pts
