"""Query access to a model: schemas, answers in every output mode, budgets and cost."""

from extractguard.oracle.answer import Answer, OutputSpec, softmax
from extractguard.oracle.budget import BudgetLadder
from extractguard.oracle.oracle import MemoryTranscript, Oracle, OracleStats, Transcript
from extractguard.oracle.pipeline import AnswerPipeline, AnswerWithheldError, Clock, OutputStage, PacedClock, Served, WallClock
from extractguard.oracle.schema import InputSchema
from extractguard.oracle.targets import (
    CallableTarget,
    OnnxTarget,
    Prediction,
    SklearnTarget,
    Target,
    TorchTarget,
)

__all__ = [
    "Answer",
    "AnswerPipeline",
    "AnswerWithheldError",
    "BudgetLadder",
    "CallableTarget",
    "Clock",
    "InputSchema",
    "MemoryTranscript",
    "OnnxTarget",
    "Oracle",
    "OracleStats",
    "OutputSpec",
    "OutputStage",
    "PacedClock",
    "Prediction",
    "Served",
    "SklearnTarget",
    "Target",
    "TorchTarget",
    "Transcript",
    "WallClock",
    "softmax",
]
