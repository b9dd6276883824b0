"""Query access to a model: schemas, answers in every output mode, budgets and cost."""

from extractguard.oracle.answer import Answer, OutputSpec, softmax
from extractguard.oracle.budget import BudgetLadder
from extractguard.oracle.oracle import MemoryTranscript, Oracle, OracleStats, Transcript
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
    "BudgetLadder",
    "CallableTarget",
    "InputSchema",
    "MemoryTranscript",
    "OnnxTarget",
    "Oracle",
    "OracleStats",
    "OutputSpec",
    "Prediction",
    "SklearnTarget",
    "Target",
    "TorchTarget",
    "Transcript",
    "softmax",
]
