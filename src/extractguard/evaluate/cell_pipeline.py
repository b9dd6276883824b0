"""A matrix cell's answer pipeline: the gateway's answer step for one account, in process, on a simulated clock."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from extractguard.detect.policy import ACTIONS, DetectionConfig

if TYPE_CHECKING:
    from extractguard.evaluate.matrix_config import DefenseVariant
    from extractguard.evaluate.matrix_data import Prepared


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


def build_cell_pipeline(prep: Prepared, variant: DefenseVariant, account: str, seed: int, workdir: Path,
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


def timeline(pipe: PipelineTarget) -> dict[str, Any]:
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
