"""The watermark applied in-process: what the gateway does, without HTTP (assessments, benchmarks)."""

from __future__ import annotations

import numpy as np

from extractguard.oracle.schema import InputSchema
from extractguard.oracle.targets import Prediction, Target
from extractguard.watermark.keyed import AnswerWatermark
from extractguard.watermark.record import WatermarkRecord


class WatermarkedTarget:
    """A target whose answers to ``account`` carry the keyed watermark, recorded like the gateway does.

    The same :class:`AnswerWatermark.apply` and :class:`WatermarkRecord.add` calls as the gateway's
    ``infer`` route, so a copy stolen through this target is marked exactly as one stolen through
    a deployed gateway would be.
    """

    def __init__(self, target: Target, watermark: AnswerWatermark, account: str, record: WatermarkRecord | None = None) -> None:
        self._target = target
        self.watermark = watermark
        self.account = account
        self.record = record
        self.schema: InputSchema = target.schema

    def predict(self, X: np.ndarray) -> Prediction:
        p, decision = self.watermark.apply(self._target.predict(X).probabilities, X, self.account)
        if self.record is not None:
            self.record.add(self.account, X, decision)
        return Prediction(p)
