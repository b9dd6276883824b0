"""Opening the owner's model files: scikit-learn pickles/joblib, ONNX and TorchScript.

Security note: pickle and joblib files run code when loaded.  Load only model files you own or
trust, which is the premise of every ExtractGuard assessment anyway.  ONNX and TorchScript do not
have this problem and are the better choice for files that travel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from extractguard.errors import ExtractGuardError, InputValidationError, ModelLoadError, check_readable_file
from extractguard.oracle.schema import InputSchema
from extractguard.oracle.targets import OnnxTarget, SklearnTarget, Target, TorchTarget

ModelKind = Literal["sklearn", "onnx", "torchscript"]

_SUFFIXES: dict[str, ModelKind] = {
    ".pkl": "sklearn",
    ".pickle": "sklearn",
    ".joblib": "sklearn",
    ".sav": "sklearn",
    ".onnx": "onnx",
    ".pt": "torchscript",
    ".pth": "torchscript",
    ".ts": "torchscript",
    ".torchscript": "torchscript",
}


@dataclass
class LoadedModel:
    """A model file opened but not yet bound to a schema."""

    kind: ModelKind
    path: Path
    model: Any
    declared_shape: tuple[int, ...] | None
    declared_classes: int | None

    def output_width(self, row: np.ndarray) -> int:
        """Number of scores the model returns, found by running it once on one row we own."""
        x = np.asarray(row, dtype=np.float32).reshape(1, -1)
        probe = InputSchema(input_shape=(x.shape[1],), n_classes=2)
        try:
            if self.kind == "onnx":
                sess = OnnxTarget(self.model, probe)._session
                inp = sess.get_inputs()[0]
                feed = x.astype(np.float64 if "double" in inp.type else np.float32)
                if len(inp.shape) > 2 and self.declared_shape:
                    feed = feed.reshape(1, *self.declared_shape)
                outs = sess.run(None, {inp.name: feed})
                for o in reversed(outs):
                    if isinstance(o, list) and o and isinstance(o[0], dict):  # skl2onnx ZipMap
                        return len(o[0])
                arrays = [np.asarray(o) for o in outs if not isinstance(o, list)]
                floats = [a for a in arrays if a.dtype.kind == "f" and a.ndim == 2]
                if not floats:
                    raise ModelLoadError(f"{self.path.name}: no 2-D float output to read scores from")
                return int(floats[-1].shape[1])
            import torch

            shape = self.declared_shape or (x.shape[1],)
            with torch.no_grad():
                out = self.model(torch.from_numpy(x).reshape(1, *shape))
            return int(out.reshape(1, -1).shape[1])
        except ExtractGuardError:
            raise
        except Exception as exc:  # the model's own error: most often a shape mismatch
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputValidationError(
                f"{self.path.name} rejected an input of width {x.shape[1]}: {msg}"
            ) from None


def _sniff(path: Path) -> ModelKind:
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind:
        return kind
    with path.open("rb") as fh:
        head = fh.read(4)
    if head.startswith(b"PK"):
        return "torchscript"
    if head[:1] == b"\x80":
        return "sklearn"
    return "onnx"


def load_model_file(path: str | Path) -> LoadedModel:
    """Open a model file, raising :class:`ModelLoadError` with a one-line reason on failure."""
    p = Path(path)
    check_readable_file(p, "model", ModelLoadError)
    kind = _sniff(p)
    if kind == "sklearn":
        import joblib

        try:
            model = joblib.load(p)
        except Exception as exc:  # unpickling can fail in many ways; all mean "not a usable file"
            raise ModelLoadError(
                f"{p.name} is not a readable scikit-learn pickle/joblib file ({type(exc).__name__}: {str(exc)[:120]})"
            ) from None
        if not hasattr(model, "predict"):
            raise ModelLoadError(f"{p.name} holds a {type(model).__name__}, not a fitted classifier")
        width = getattr(model, "n_features_in_", None)
        classes = getattr(model, "classes_", None)
        return LoadedModel(
            "sklearn", p, model, (int(width),) if width is not None else None, len(classes) if classes is not None else None
        )
    if kind == "onnx":
        shape = OnnxTarget.declared_width(p)  # raises ModelLoadError for non-ONNX bytes
        return LoadedModel("onnx", p, p, shape, None)
    import torch

    try:
        module = torch.jit.load(str(p), map_location="cpu")
    except Exception as exc:
        raise ModelLoadError(
            f"{p.name} is not a TorchScript file ({str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__}); "
            "save models with torch.jit.script(model).save(path)"
        ) from None
    return LoadedModel("torchscript", p, module, None, None)


def build_target(
    loaded: LoadedModel,
    sample: np.ndarray,
    input_shape: tuple[int, ...] | None = None,
    n_classes: int | None = None,
    low: np.ndarray | float | None = None,
    high: np.ndarray | float | None = None,
) -> Target:
    """Bind a loaded model to an input schema, checking ``sample`` (the user's data) fits it.

    The width comes from the file when it declares one, else from ``input_shape``, else from the
    data; bounds default to the data's per-feature range.  Every disagreement is a clear error.
    """
    sample = np.asarray(sample, dtype=np.float64)
    data_width = int(sample.shape[1])
    declared = loaded.declared_shape
    if input_shape is not None and declared is not None and int(np.prod(input_shape)) != int(np.prod(declared)):
        raise InputValidationError(
            f"--input-shape {input_shape} does not match the {int(np.prod(declared))} features {loaded.path.name} declares"
        )
    shape = tuple(input_shape) if input_shape is not None else (declared or (data_width,))
    width = int(np.prod(shape))
    if data_width != width:
        raise InputValidationError(
            f"the data has {data_width} features per row, but {loaded.path.name} expects {width}"
        )
    finite = np.isfinite(sample)
    if not finite.all():
        r, c = np.argwhere(~finite)[0]
        raise InputValidationError(f"the data contains NaN or infinite values (first at row {r}, column {c})")
    if loaded.kind == "torchscript" and input_shape is None and declared is None:
        loaded.declared_shape = shape
    classes = loaded.declared_classes or n_classes or loaded.output_width(sample[0])
    if n_classes is not None and loaded.declared_classes is not None and n_classes != loaded.declared_classes:
        raise InputValidationError(f"--n-classes {n_classes} but {loaded.path.name} has {loaded.declared_classes} classes")
    if classes == 1:
        classes = 2  # a single sigmoid/logit output is a binary classifier
    lo = sample.min(axis=0) if low is None else low
    hi = sample.max(axis=0) if high is None else high
    schema = InputSchema(input_shape=shape, n_classes=int(classes), low=lo, high=hi)
    if loaded.kind == "sklearn":
        return SklearnTarget(loaded.model, schema)
    if loaded.kind == "onnx":
        return OnnxTarget(loaded.model, schema)
    return TorchTarget(loaded.model, schema, outputs="logits")
