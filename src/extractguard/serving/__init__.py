"""The answer pipeline shared by the gateway and the assessment: detection, defense chain,
keyed watermark and output mode, in that order, for one account's batch at a given time.

Layer: below :mod:`extractguard.gateway` and :mod:`extractguard.evaluate`, above
:mod:`extractguard.oracle`, :mod:`extractguard.defenses`, :mod:`extractguard.watermark` and
:mod:`extractguard.detect`.
"""

from extractguard.oracle.pipeline import Clock, PacedClock, Served, WallClock
from extractguard.serving.detection import (
    WITHHELD_REASONS,
    Detection,
    Escalation,
    Withheld,
    load_reference,
    reference_rows,
    suspended_message,
)
from extractguard.serving.pipeline import AnswerPolicy, Decision, DecisionSink, ServingPipeline

__all__ = [
    "WITHHELD_REASONS",
    "AnswerPolicy",
    "Clock",
    "Decision",
    "DecisionSink",
    "Detection",
    "Escalation",
    "PacedClock",
    "Served",
    "ServingPipeline",
    "WallClock",
    "Withheld",
    "load_reference",
    "reference_rows",
    "suspended_message",
]
