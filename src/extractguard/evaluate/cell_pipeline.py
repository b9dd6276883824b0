"""A matrix cell's answer pipeline: the gateway's own :class:`~extractguard.serving.ServingPipeline`
for one account, behind an :class:`~extractguard.oracle.Oracle` on a simulated clock.

Two differences from a deployment, both deliberate: time is the account's pace (rows at a constant
rate, :class:`~extractguard.oracle.PacedClock`), and the pipeline does not enforce a suspension
(``enforce=False``): the answers a gateway would withhold are still computed, so the report can
show the copy the attacker holds with enforcement and the one it would hold without.  The
detection timeline (the query count at which each signal fired and each graduated response
would have started) is read from the pipeline's decisions.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from extractguard.detect.policy import ACTIONS, DetectionConfig

if TYPE_CHECKING:
    from extractguard.evaluate.matrix_config import DefenseVariant
    from extractguard.evaluate.matrix_data import Prepared
    from extractguard.oracle import Oracle
    from extractguard.serving import Decision, ServingPipeline
    from extractguard.watermark import WatermarkRecord

#: The tier name a cell's detection state is kept under (``tier/account``, as in the gateway).
CELL_TIER = "assessed"


class CellPipeline:
    """One account's answers through a defense, and the detection timeline of its decisions.

    Attach with :meth:`oracle`; the pipeline reports each batch's decision to :meth:`observe`.
    """

    def __init__(self, serving: ServingPipeline, account: str, rows_per_second: float,
                 detection: DetectionConfig | None = None) -> None:
        from extractguard.oracle import PacedClock

        self.serving = serving
        self.account = account
        self.clock = PacedClock(rows_per_second)
        self.detection = detection
        self.record: WatermarkRecord | None = serving.record
        serving.on_decision = self.observe
        #: first query count at which each action started (rows served before that request)
        self.action_at: dict[str, int] = {}
        self.first_alarm: dict[str, int] = {}
        self.max_level = 0.0
        self.explanation = ""
        self.requests_challenged = 0
        self.rows_throttled = 0
        self.rows = 0
        self.served_before_suspension: int | None = None

    def oracle(self, budget: int | None = None, price_per_query: float = 0.0) -> Oracle:
        """The attacker's (or honest user's) door: an Oracle over the pipeline, on this account's clock."""
        from extractguard.oracle import Oracle

        return Oracle(self.serving, budget=budget, price_per_query=price_per_query, account=self.account, clock=self.clock)

    def observe(self, d: Decision) -> None:
        """Account one batch's decision: what it cost under the sanction in force, what it escalated."""
        n = d.rows
        if self.detection is not None and d.risk is not None:
            if d.action == "challenge":
                self.requests_challenged += 1
            elif d.action == "throttle":
                self.rows_throttled += n
            risk = d.risk
            self.max_level = max(self.max_level, risk.level)
            self.first_alarm = dict(risk.first_alarm)
            if risk.fired:
                self.explanation = self.explanation or risk.explain()
            if d.escalation is not None:
                new = d.escalation.action
                for a in ACTIONS[1:ACTIONS.index(new) + 1]:  # a jump past milder responses starts them too
                    if a in self.detection.responses:
                        self.action_at.setdefault(a, self.rows + n)  # decided on this request, as first_flag
                if new == "suspend" and self.served_before_suspension is None:
                    # the gateway refuses the request that triggers a suspension: the attacker keeps only the rows before it
                    self.served_before_suspension = self.rows
        self.rows += n


def master_key(seed: int) -> bytes:
    """A simulation watermark key, reproducible from the seed; a deployed gateway uses a random secret file."""
    return hashlib.sha256(f"extractguard-assess-matrix/{seed}".encode()).digest()


def build_cell_pipeline(prep: Prepared, variant: DefenseVariant, account: str, seed: int, workdir: Path,
                        rows_per_second: float, *, tier: str = CELL_TIER) -> CellPipeline:
    """The gateway pipeline of ``variant`` for ``account`` (chain fitted on the owner's data,
    detectors calibrated on ``prep.reference_X`` unless the variant names its own reference)."""
    from extractguard.serving import Detection, ServingPipeline, load_reference
    from extractguard.watermark import WatermarkRecord

    target = prep.target
    rec = WatermarkRecord(workdir / f"watermarks-{account}.db") if variant.watermark is not None else None
    detection = None
    if variant.detection is not None:
        dc = variant.detection
        ref = prep.reference_X if dc.reference is None else load_reference(dc.reference, target.schema.n_features)
        detection = Detection.build({tier: dc}, target, {tier: ref})
    serving = ServingPipeline.from_policy(target, variant, tier=tier, owner_data=prep.owner_data, rng=np.random.default_rng(seed),
                                          master_key=master_key(seed), record=rec, detection=detection, enforce=False)
    return CellPipeline(serving, account, rows_per_second, variant.detection)


def timeline(pipe: CellPipeline) -> dict[str, Any]:
    """The detection timeline of a cell's account (``{"enabled": False}`` without detection)."""
    if pipe.detection is None:
        return {"enabled": False}
    return {
        "enabled": True,
        "first_flag": pipe.first_alarm and min(pipe.first_alarm.values()) or None,
        "signals": dict(sorted(pipe.first_alarm.items(), key=lambda kv: kv[1])),
        "responses": {a: pipe.action_at.get(a) for a in ACTIONS[1:] if a in pipe.detection.responses},
        "served_before_suspension": pipe.served_before_suspension,
        "max_level": round(pipe.max_level, 4),
        "explanation": pipe.explanation or "no signal fired",
    }
