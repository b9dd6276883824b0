"""What a target reveals for each query, and how much of it.

Real APIs return full probability vectors, logits, rounded scores, the top-k classes or only a
label.  :class:`OutputSpec` names that choice; :class:`Answer` carries exactly what was revealed,
and :meth:`Answer.soft_labels` turns any of it into the best probability estimate an attacker
can train on, so attacks degrade gracefully instead of needing one code path per mode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from extractguard.errors import ConfigurationError

OutputKind = Literal["probabilities", "logits", "rounded", "top_k", "label"]
_KINDS: tuple[str, ...] = ("probabilities", "logits", "rounded", "top_k", "label")


@dataclass(frozen=True)
class OutputSpec:
    """How much of the model's output the caller sees.

    ``rounded`` keeps ``decimals`` digits of each probability; ``top_k`` reveals the ``k`` most
    likely classes with their probabilities; ``label`` only the predicted class.
    """

    kind: OutputKind = "probabilities"
    k: int = 1
    decimals: int = 2

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigurationError(f"unknown output mode {self.kind!r}; choose one of {', '.join(_KINDS)}")
        if self.k < 1:
            raise ConfigurationError(f"top-k needs k >= 1, got {self.k}")
        if self.decimals < 0:
            raise ConfigurationError(f"rounding needs decimals >= 0, got {self.decimals}")

    @classmethod
    def parse(cls, text: str) -> OutputSpec:
        """Parse ``probabilities``, ``logits``, ``label``, ``top-3``/``top3``, ``rounded:2``."""
        t = text.strip().lower().replace("_", "-")
        if t in ("probabilities", "probs", "proba", "probability"):
            return cls("probabilities")
        if t in ("logits", "logit"):
            return cls("logits")
        if t in ("label", "labels", "label-only", "hard"):
            return cls("label")
        m = re.fullmatch(r"top-?(\d+)", t)
        if m:
            return cls("top_k", k=int(m.group(1)))
        m = re.fullmatch(r"round(?:ed)?(?::(\d+))?", t)
        if m:
            return cls("rounded", decimals=int(m.group(1) or 2))
        raise ConfigurationError(
            f"unknown output mode {text!r}; use probabilities, logits, rounded:N, top-K or label"
        )

    def __str__(self) -> str:
        if self.kind == "top_k":
            return f"top-{self.k}"
        if self.kind == "rounded":
            return f"rounded:{self.decimals}"
        return self.kind

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """A pydantic field typed ``OutputSpec`` reads the text form once and writes it back canonical.

        Configuration files (target.yaml, gateway.yaml, assess.yaml) hold ``output: top-3``; the
        validated model holds an :class:`OutputSpec`, and dumps (reports, worker hand-offs) hold
        ``str(spec)`` again.  pydantic is imported here, not at module level, so the oracle stays
        light for callers that never validate a file.
        """
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            _validate_output,
            json_schema_input_schema=core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(str, when_used="always"),
        )


def _validate_output(value: Any) -> OutputSpec:
    """pydantic validator of an ``OutputSpec`` field: text is parsed, a spec passes as it is."""
    if isinstance(value, OutputSpec):
        return value
    if not isinstance(value, str):
        raise ValueError(f"output must be text such as probabilities, logits, rounded:N, top-K or label, got {value!r}")
    try:
        return OutputSpec.parse(value)
    except ConfigurationError as exc:
        raise ValueError(str(exc)) from None


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Answer:
    """The revealed output for a batch of ``n`` rows.

    ``labels`` (top-1 class) is present in every mode.  ``scores`` is the full revealed vector
    (probabilities, rounded probabilities or logits) or ``None``; ``top_indices``/``top_values``
    are set in top-k mode.
    """

    spec: OutputSpec
    n_classes: int
    labels: np.ndarray
    scores: np.ndarray | None = None
    top_indices: np.ndarray | None = None
    top_values: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @classmethod
    def from_probabilities(
        cls, probabilities: np.ndarray, spec: OutputSpec, logits: np.ndarray | None = None
    ) -> Answer:
        """Build the answer a target in mode ``spec`` gives for these true probabilities."""
        p = np.asarray(probabilities, dtype=np.float64)
        n, c = p.shape
        labels = p.argmax(axis=1).astype(np.int64)
        if spec.kind == "probabilities":
            return cls(spec, c, labels, scores=p)
        if spec.kind == "logits":
            if logits is None:
                # A target that only has probabilities reveals log-probabilities: logits up to a
                # per-row constant, which is all softmax can tell apart anyway.
                logits = np.log(np.clip(p, 1e-300, None))
            return cls(spec, c, labels, scores=np.asarray(logits, dtype=np.float64))
        if spec.kind == "rounded":
            return cls(spec, c, labels, scores=np.round(p, spec.decimals))
        if spec.kind == "top_k":
            k = min(spec.k, c)
            idx = np.argsort(-p, axis=1, kind="stable")[:, :k]
            vals = np.take_along_axis(p, idx, axis=1)
            return cls(spec, c, labels, top_indices=idx.astype(np.int64), top_values=vals)
        return cls(spec, c, labels)

    def soft_labels(self) -> np.ndarray:
        """Best probability estimate from what was revealed, shape (n, n_classes).

        Rounded vectors are renormalised; top-k spreads the unrevealed mass evenly over the
        other classes; label-only gives one-hot rows.
        """
        n, c = len(self), self.n_classes
        if self.spec.kind == "logits":
            assert self.scores is not None
            return softmax(self.scores)
        if self.spec.kind in ("probabilities", "rounded"):
            assert self.scores is not None
            s = np.clip(self.scores, 0.0, None)
            total = s.sum(axis=1, keepdims=True)
            out = np.where(total > 0, s / np.where(total > 0, total, 1.0), 0.0)
            empty = total[:, 0] <= 0
            out[empty, self.labels[empty]] = 1.0
            return out
        out = np.zeros((n, c))
        if self.spec.kind == "top_k":
            assert self.top_indices is not None and self.top_values is not None
            k = self.top_indices.shape[1]
            rest = np.clip(1.0 - self.top_values.sum(axis=1), 0.0, None)
            if c > k:
                out += (rest / (c - k))[:, None]
            np.put_along_axis(out, self.top_indices, self.top_values, axis=1)
            out /= out.sum(axis=1, keepdims=True)
            return out
        out[np.arange(n), self.labels] = 1.0
        return out

    @property
    def is_soft(self) -> bool:
        """Whether the answer carries more than the label."""
        return self.spec.kind != "label"

    def to_records(self) -> list[dict[str, object]]:
        """One JSON-friendly dict per row: what would travel over the wire."""
        rows: list[dict[str, object]] = []
        for i in range(len(self)):
            rec: dict[str, object] = {"label": int(self.labels[i])}
            if self.scores is not None:
                rec["scores"] = [float(v) for v in self.scores[i]]
            if self.top_indices is not None and self.top_values is not None:
                rec["top_k"] = [[int(j), float(v)] for j, v in zip(self.top_indices[i], self.top_values[i])]
            rows.append(rec)
        return rows
