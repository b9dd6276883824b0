"""Adapters that turn a model we own into a uniform "probabilities for rows" function.

A target is the victim as the *owner* holds it.  Attacks never get one: they get an
:class:`~extractguard.oracle.Oracle`, which answers through a target without exposing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Protocol, runtime_checkable

import numpy as np

from extractguard.errors import ExtractGuardError, ModelLoadError
from extractguard.oracle.answer import softmax
from extractguard.oracle.schema import InputSchema

ScoreKind = Literal["probabilities", "logits", "labels"]


@dataclass(frozen=True)
class Prediction:
    """Full model output for a batch: probabilities, and logits when the model has them."""

    probabilities: np.ndarray
    logits: np.ndarray | None = None


@runtime_checkable
class Target(Protocol):
    """Anything that maps validated flat rows to class probabilities."""

    schema: InputSchema

    def predict(self, X: np.ndarray) -> Prediction:
        """Probabilities (and logits if known) for rows already validated by the schema."""
        ...


def _check_scores(scores: np.ndarray, n: int, n_classes: int, source: str) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        scores = scores[:, None]
    if scores.ndim == 2 and scores.shape[1] == 1 and n_classes == 2:
        # One output for two classes is a binary logit z: as two-class logits that is [0, z].
        scores = np.column_stack([np.zeros(scores.shape[0]), scores[:, 0]])
    if scores.shape[0] != n:
        raise ExtractGuardError(f"{source} returned {scores.shape[0]} rows for {n} inputs")
    if scores.shape[1] != n_classes:
        raise ExtractGuardError(
            f"{source} returned {scores.shape[1]} scores per row, but the schema says {n_classes} classes"
        )
    if not np.all(np.isfinite(scores)):
        raise ExtractGuardError(f"{source} returned NaN or infinite scores")
    return scores


def _to_prediction(scores: np.ndarray, kind: ScoreKind, n_classes: int) -> Prediction:
    if kind == "logits":
        return Prediction(softmax(scores), scores)
    if kind == "labels":
        labels = np.asarray(scores).reshape(-1).astype(np.int64)
        p = np.zeros((labels.shape[0], n_classes))
        p[np.arange(labels.shape[0]), labels] = 1.0
        return Prediction(p)
    return Prediction(scores)


class SklearnTarget:
    """A fitted scikit-learn classifier (``predict_proba`` or ``decision_function``)."""

    def __init__(self, estimator: Any, schema: InputSchema) -> None:
        if not hasattr(estimator, "predict"):
            raise ModelLoadError(f"{type(estimator).__name__} is not a classifier (no predict method)")
        self._estimator = estimator
        self.schema = schema
        width = getattr(estimator, "n_features_in_", None)
        if width is not None and int(width) != schema.n_features:
            raise ModelLoadError(
                f"the model was fitted on {width} features but the schema says {schema.n_features}"
            )
        classes = getattr(estimator, "classes_", None)
        if classes is not None and len(classes) != schema.n_classes:
            raise ModelLoadError(f"the model has {len(classes)} classes but the schema says {schema.n_classes}")

    def predict(self, X: np.ndarray) -> Prediction:
        est = self._estimator
        n, c = X.shape[0], self.schema.n_classes
        if hasattr(est, "predict_proba"):
            p = _check_scores(est.predict_proba(X), n, c, "the model")
            logits = None
            if hasattr(est, "decision_function") and not hasattr(est, "tree_"):
                d = np.asarray(est.decision_function(X), dtype=np.float64)
                # Binary linear models give one margin; as logits that is [0, margin].
                logits = np.column_stack([np.zeros(n), d]) if d.ndim == 1 else d
            return Prediction(p, logits)
        if hasattr(est, "decision_function"):
            d = np.asarray(est.decision_function(X), dtype=np.float64)
            d = np.column_stack([np.zeros(n), d]) if d.ndim == 1 else d
            return _to_prediction(_check_scores(d, n, c, "the model"), "logits", c)
        classes = list(getattr(est, "classes_", range(c)))
        labels = np.array([classes.index(v) for v in est.predict(X)])
        return _to_prediction(labels, "labels", c)


class TorchTarget:
    """A PyTorch module (``nn.Module`` or TorchScript) that maps rows to logits or probabilities."""

    def __init__(
        self, module: Any, schema: InputSchema, outputs: ScoreKind = "logits", batch_size: int = 1024
    ) -> None:
        import torch

        self._module = module
        self.schema = schema
        self._outputs: ScoreKind = outputs
        self._batch_size = batch_size
        self._torch = torch
        module.eval()
        first = next(iter(module.parameters()), None)
        self._dtype = first.dtype if first is not None else torch.float32

    def predict(self, X: np.ndarray) -> Prediction:
        torch = self._torch
        chunks = []
        with torch.no_grad():
            for start in range(0, X.shape[0], self._batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(X[start : start + self._batch_size])).to(self._dtype)
                xb = xb.reshape(xb.shape[0], *self.schema.input_shape)
                chunks.append(self._module(xb).detach().cpu().numpy())
        scores = _check_scores(np.concatenate(chunks), X.shape[0], self.schema.n_classes, "the model")
        return _to_prediction(scores, self._outputs, self.schema.n_classes)


class OnnxTarget:
    """An ONNX file served by onnxruntime.

    scikit-learn models converted by skl2onnx return ``[label, probabilities]``; PyTorch exports
    return logits.  We take the last floating-point output of width ``n_classes`` and decide from
    its values whether it holds probabilities (rows on the simplex) unless ``outputs`` says.
    """

    def __init__(
        self,
        path_or_bytes: str | Path | bytes,
        schema: InputSchema,
        outputs: ScoreKind | Literal["auto"] = "auto",
        output_name: str | None = None,
    ) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            src = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
            self._session = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types per failure
            raise ModelLoadError(f"not a loadable ONNX model: {str(exc).splitlines()[0]}") from None
        self.schema = schema
        inp = self._session.get_inputs()[0]
        self._input_name = inp.name
        self._input_rank = len(inp.shape)
        self._input_type = np.float64 if "double" in inp.type else np.float32
        self._output_name = output_name
        self._outputs = outputs

    @staticmethod
    def declared_width(path_or_bytes: str | Path | bytes) -> tuple[int, ...] | None:
        """Per-row input shape written in the file, when it is fully known."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            src = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
            sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelLoadError(f"not a loadable ONNX model: {str(exc).splitlines()[0]}") from None
        dims = sess.get_inputs()[0].shape[1:]
        if dims and all(isinstance(d, int) and d > 0 for d in dims):
            return tuple(int(d) for d in dims)
        return None

    def predict(self, X: np.ndarray) -> Prediction:
        n, c = X.shape[0], self.schema.n_classes
        feed = X.astype(self._input_type)
        if self._input_rank > 2:
            feed = feed.reshape(n, *self.schema.input_shape)
        outs = self._session.run(None, {self._input_name: feed})
        names = [o.name for o in self._session.get_outputs()]
        if self._output_name is not None:
            if self._output_name not in names:
                raise ExtractGuardError(f"the ONNX model has no output {self._output_name!r}; it has {names}")
            scores = outs[names.index(self._output_name)]
        else:
            scores = None
            for out in reversed(outs):
                arr = np.asarray(out) if not isinstance(out, list) else None
                if arr is not None and arr.dtype.kind == "f" and arr.ndim == 2 and arr.shape[1] == c:
                    scores = arr
                    break
                if isinstance(out, list) and out and isinstance(out[0], dict):  # skl2onnx ZipMap
                    keys = sorted(out[0].keys())
                    scores = np.array([[row[k] for k in keys] for row in out])
                    break
            if scores is None:
                raise ExtractGuardError(
                    f"the ONNX model has no output with {c} scores per row (outputs: {names})"
                )
        scores = _check_scores(scores, n, c, "the ONNX model")
        kind = self._outputs
        if kind == "auto":
            on_simplex = np.all(scores >= -1e-6) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3)
            kind = "probabilities" if on_simplex else "logits"
        return _to_prediction(scores, kind, c)


class CallableTarget:
    """A plain Python function ``f(X) -> scores`` (probabilities, logits or labels)."""

    def __init__(
        self, fn: Callable[[np.ndarray], Any], schema: InputSchema, outputs: ScoreKind = "probabilities"
    ) -> None:
        self._fn = fn
        self.schema = schema
        self._outputs: ScoreKind = outputs

    def predict(self, X: np.ndarray) -> Prediction:
        raw = np.asarray(self._fn(X))
        if self._outputs == "labels":
            labels = raw.reshape(-1)
            if labels.shape[0] != X.shape[0]:
                raise ExtractGuardError(f"the function returned {labels.shape[0]} labels for {X.shape[0]} inputs")
            if np.any((labels < 0) | (labels >= self.schema.n_classes)):
                raise ExtractGuardError("the function returned a label outside 0..n_classes-1")
            return _to_prediction(labels, "labels", self.schema.n_classes)
        scores = _check_scores(raw, X.shape[0], self.schema.n_classes, "the function")
        return _to_prediction(scores, self._outputs, self.schema.n_classes)
