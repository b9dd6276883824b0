"""Open Inference Protocol (KServe v2 / Triton / MLServer) JSON, both directions.

One codec serves the remote oracle (client side) and the gateway (server side), so both agree
on tensor names and shapes.  Conventions for a classifier's outputs:

- ``probabilities``: FP64 ``[n, C]`` (full or rounded probabilities)
- ``logits``: FP64 ``[n, C]``
- ``label``: INT64 ``[n]`` (present in every mode)
- ``top_k_indices``: INT64 ``[n, k]`` and ``top_k_values``: FP64 ``[n, k]``

Spec: https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/ (REST, JSON).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from extractguard.errors import InputValidationError
from extractguard.oracle.answer import Answer, OutputSpec

_DTYPES: dict[str, Any] = {
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "BOOL": np.bool_,
}


def _tensor(name: str, arr: np.ndarray, datatype: str) -> dict[str, Any]:
    return {"name": name, "shape": list(arr.shape), "datatype": datatype, "data": arr.reshape(-1).tolist()}


def encode_request(
    X: np.ndarray,
    input_name: str = "input",
    request_id: str | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """Client side: a batch of flat float rows as an inference request body.

    With ``input_shape`` (e.g. ``(1, 28, 28)``) the tensor is declared as ``[n, *input_shape]``,
    which servers such as Triton need for image models; the data stays row-major either way.
    """
    arr = np.asarray(X, dtype=np.float64)
    if input_shape is not None:
        arr = arr.reshape(arr.shape[0], *input_shape)
    body: dict[str, Any] = {"inputs": [_tensor(input_name, arr, "FP64")]}
    if request_id is not None:
        body["id"] = request_id
    return body


def decode_request(body: Any, n_features: int, max_rows: int | None = None) -> np.ndarray:
    """Server side: validate a request body and return float64 rows ``(n, n_features)``.

    Raises :class:`InputValidationError` with a message fit for a 400 response.
    """
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise InputValidationError("body must be a JSON object with a non-empty 'inputs' list")
    tensor = body["inputs"][0]
    if not isinstance(tensor, dict):
        raise InputValidationError("'inputs[0]' must be an object with name, shape, datatype and data")
    shape, datatype, data = tensor.get("shape"), tensor.get("datatype"), tensor.get("data")
    if not isinstance(shape, list) or not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise InputValidationError("'shape' must be a list of positive integers")
    if datatype not in _DTYPES or datatype == "BOOL":
        raise InputValidationError(f"'datatype' must be a numeric tensor type such as FP32, got {datatype!r}")
    if not isinstance(data, list):
        raise InputValidationError("'data' must be a list of numbers")
    n = shape[0]
    width = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    if len(shape) == 1:
        n, width = 1, shape[0]
    if max_rows is not None and n > max_rows:
        raise InputValidationError(f"batch of {n} rows exceeds the limit of {max_rows} rows per request")
    if width != n_features:
        raise InputValidationError(f"each row must have {n_features} features, got shape {shape}")
    flat = data
    if flat and isinstance(flat[0], list):  # some clients send nested lists
        flat = np.asarray(flat, dtype=object).reshape(-1).tolist()
    if len(flat) != n * width:
        raise InputValidationError(f"'data' has {len(flat)} values but shape {shape} needs {n * width}")
    # Fast path for what json.loads produces (exact int/float types, checked at C speed); the
    # per-value check only runs for other inputs (numpy scalars, bools, strings).
    if not set(map(type, flat)) <= {int, float} and not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat
    ):
        raise InputValidationError("'data' must contain only numbers")
    try:
        arr = np.asarray(flat, dtype=np.float64).reshape(n, width)
    except OverflowError:  # an integer literal beyond float64 (JSON allows any length)
        raise InputValidationError("'data' contains a number too large for float64") from None
    if not np.all(np.isfinite(arr)):
        raise InputValidationError("'data' contains NaN or infinite values")
    return arr


def encode_response(answer: Answer, model_name: str, request_id: str | None = None) -> dict[str, Any]:
    """Server side: an :class:`Answer` as an inference response body."""
    outputs = [_tensor("label", answer.labels.astype(np.int64), "INT64")]
    if answer.scores is not None:
        name = "logits" if answer.spec.kind == "logits" else "probabilities"
        outputs.append(_tensor(name, np.asarray(answer.scores, dtype=np.float64), "FP64"))
    if answer.top_indices is not None and answer.top_values is not None:
        outputs.append(_tensor("top_k_indices", answer.top_indices.astype(np.int64), "INT64"))
        outputs.append(_tensor("top_k_values", np.asarray(answer.top_values, dtype=np.float64), "FP64"))
    body: dict[str, Any] = {"model_name": model_name, "outputs": outputs}
    if request_id is not None:
        body["id"] = request_id
    return body


def decode_response(body: Any, n_rows: int, n_classes: int, spec: OutputSpec) -> Answer:
    """Client side: rebuild the :class:`Answer` a server sent for ``n_rows`` inputs.

    Raises :class:`InputValidationError` when the server's body does not match the protocol or
    the expected sizes: a wrong-sized answer must never be silently used.
    """
    if not isinstance(body, dict) or not isinstance(body.get("outputs"), list):
        raise InputValidationError("response is not an inference response (no 'outputs' list)")
    tensors: dict[str, np.ndarray] = {}
    for t in body["outputs"]:
        if not isinstance(t, dict) or "name" not in t or "data" not in t or "shape" not in t:
            raise InputValidationError("response output tensors need name, shape and data")
        try:
            tensors[str(t["name"])] = np.asarray(t["data"], dtype=np.float64).reshape(t["shape"])
        except (ValueError, TypeError):
            raise InputValidationError(f"response tensor {t.get('name')!r} does not match its shape") from None
    scores = tensors.get("logits" if spec.kind == "logits" else "probabilities")
    if scores is not None and scores.shape != (n_rows, n_classes):
        raise InputValidationError(f"response scores have shape {scores.shape}, expected {(n_rows, n_classes)}")
    labels = tensors.get("label")
    if labels is None and scores is not None:
        labels = scores.argmax(axis=1)
    if labels is None:
        raise InputValidationError("response has neither 'label' nor scores")
    labels = labels.reshape(-1).astype(np.int64)
    if labels.shape[0] != n_rows:
        raise InputValidationError(f"response has {labels.shape[0]} labels for {n_rows} inputs")
    top_i, top_v = tensors.get("top_k_indices"), tensors.get("top_k_values")
    return Answer(
        spec=spec,
        n_classes=n_classes,
        labels=labels,
        scores=scores,
        top_indices=None if top_i is None else top_i.astype(np.int64),
        top_values=top_v,
    )
