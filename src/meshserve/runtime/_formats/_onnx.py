"""ONNX models, run by onnxruntime on the CPU.

Each session runs its operators on one thread (``intra_op_num_threads=1``).
A runtime holds many models and serves concurrent requests from a pool of
worker threads; if every session also spread each request over all cores,
two busy models on a 2-core machine would fight over the same cores and
latency would swing with whatever else is running. With one thread per
request, throughput comes from concurrent requests and a request's latency
does not depend on its neighbours.

Inputs are fed by name and must match the model's datatypes exactly (no
silent casts: an FP64 tensor sent to an FP32 input is an error that names
the input). skl2onnx classifiers exported with their default ZipMap give
probabilities as a sequence of maps; that output is converted to an FP32
tensor [N, K] in the order of the map's keys. Export with
``options={id(model): {"zipmap": False}}`` to get a plain tensor instead.
Outputs of other non-tensor types are left out of metadata and results.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from meshserve.errors import (
    TensorError,
    UnsupportedModelError,
)
from meshserve.protocol.datatypes import Datatype, numpy_dtype
from meshserve.protocol.inference import Tensor, TensorMetadata
from meshserve.runtime._formats import _sizing
from meshserve.runtime._formats._artifact import Artifact
from meshserve.runtime._formats._imports import require
from meshserve.runtime._formats._library_errors import load_failed, predict_failure
from meshserve.runtime._formats._tabular import select_outputs
from meshserve.runtime._formats._text import bytes_array, quoted

__all__ = ["OnnxModel", "load"]

log = logging.getLogger(__name__)

_TENSOR_TYPES: dict[str, Datatype] = {
    "tensor(bool)": Datatype.BOOL,
    "tensor(uint8)": Datatype.UINT8,
    "tensor(uint16)": Datatype.UINT16,
    "tensor(uint32)": Datatype.UINT32,
    "tensor(uint64)": Datatype.UINT64,
    "tensor(int8)": Datatype.INT8,
    "tensor(int16)": Datatype.INT16,
    "tensor(int32)": Datatype.INT32,
    "tensor(int64)": Datatype.INT64,
    "tensor(float16)": Datatype.FP16,
    "tensor(float)": Datatype.FP32,
    "tensor(double)": Datatype.FP64,
    "tensor(bfloat16)": Datatype.BF16,
    "tensor(string)": Datatype.BYTES,
}
# ZipMap's output: one {class: probability} map per row.
_ZIPMAP_PREFIX = "seq(map("


@dataclass(frozen=True, slots=True)
class _Output:
    meta: TensorMetadata
    zipmap: bool


def load(artifact: Artifact) -> OnnxModel:
    ort = require("onnxruntime", model_type="onnx", extra="onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(
            str(artifact.path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise load_failed("onnx", artifact.path, exc) from exc
    inputs = []
    for node in session.get_inputs():
        datatype = _TENSOR_TYPES.get(node.type)
        if datatype is None:
            raise UnsupportedModelError(
                f"onnx model {artifact.path} has input '{node.name}' of type {node.type}, "
                "which the v2 protocol cannot carry"
            )
        inputs.append(TensorMetadata(node.name, datatype, _shape(node.shape)))
    outputs = []
    for node in session.get_outputs():
        datatype = _TENSOR_TYPES.get(node.type)
        if datatype is not None:
            outputs.append(_Output(TensorMetadata(node.name, datatype, _shape(node.shape)), False))
        elif node.type.startswith(_ZIPMAP_PREFIX) and node.type.endswith("tensor(float)))"):
            outputs.append(_Output(TensorMetadata(node.name, Datatype.FP32, (-1, -1)), True))
        else:
            log.warning(
                "onnx model %s: output '%s' of type %s is not a tensor; it is not served",
                artifact.path,
                node.name,
                node.type,
            )
    return OnnxModel(
        session=session,
        metadata_inputs=tuple(inputs),
        outputs=tuple(outputs),
        size_bytes=_sizing.apply(_sizing.ONNX_RULE, artifact.disk_size),
    )


def _shape(dims: Sequence[Any]) -> tuple[int, ...]:
    """Symbolic (str) and unknown (None) dimensions become -1."""
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in dims)


@dataclass(frozen=True, slots=True)
class OnnxModel:
    """A loaded ONNX model (see :class:`LoadedModel`)."""

    session: Any
    metadata_inputs: tuple[TensorMetadata, ...]
    outputs: tuple[_Output, ...]
    size_bytes: int
    platform: str = "onnxruntime_onnx"

    @property
    def metadata_outputs(self) -> tuple[TensorMetadata, ...]:
        return tuple(output.meta for output in self.outputs)

    def predict(self, inputs: Sequence[Tensor], *, outputs: Sequence[str] = ()) -> list[Tensor]:
        feed = self._feed(inputs)
        by_name = {output.meta.name: output for output in self.outputs}
        names = select_outputs(list(by_name), outputs)
        try:
            results = self.session.run(names, feed)
        except Exception as exc:
            raise predict_failure("onnxruntime", exc) from exc
        return [_tensor(by_name[name], value) for name, value in zip(names, results, strict=True)]

    def _feed(self, inputs: Sequence[Tensor]) -> dict[str, np.ndarray]:
        expected = {meta.name: meta for meta in self.metadata_inputs}
        feed: dict[str, np.ndarray] = {}
        for tensor in inputs:
            meta = expected.get(tensor.name)
            if meta is None:
                raise TensorError(
                    tensor.name,
                    f"unexpected input; this model's inputs are {quoted(list(expected))}",
                )
            if tensor.name in feed:
                raise TensorError(tensor.name, "sent more than once")
            feed[tensor.name] = _input_array(meta, tensor)
        missing = [name for name in expected if name not in feed]
        if missing:
            raise TensorError(missing[0], "required input is missing")
        return feed


def _input_array(meta: TensorMetadata, tensor: Tensor) -> np.ndarray:
    if tensor.datatype is not meta.datatype:
        raise TensorError(tensor.name, f"expects {meta.datatype}, got {tensor.datatype}")
    shape = tensor.shape
    fits = len(shape) == len(meta.shape) and all(
        want in (-1, got) for want, got in zip(meta.shape, shape, strict=True)
    )
    if not fits:
        raise TensorError(tensor.name, f"expects shape {list(meta.shape)}, got {list(shape)}")
    if meta.datatype is Datatype.BYTES:
        # onnxruntime wants str elements for tensor(string).
        try:
            decoded: np.ndarray = np.vectorize(_text, otypes=[object])(tensor.data)
            return decoded
        except UnicodeDecodeError as exc:
            raise TensorError(tensor.name, f"is not valid UTF-8: {exc}") from exc
    return np.ascontiguousarray(tensor.data, dtype=numpy_dtype(meta.datatype))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _tensor(output: _Output, value: Any) -> Tensor:
    meta = output.meta
    if output.zipmap:
        rows: list[dict[Any, float]] = list(value)
        keys = list(rows[0]) if rows else []
        data = np.array([[row[k] for k in keys] for row in rows], dtype=np.float32)
        return Tensor(meta.name, meta.datatype, data.reshape(len(rows), len(keys)))
    array = np.asarray(value)
    if meta.datatype is Datatype.BYTES:
        return Tensor(meta.name, meta.datatype, bytes_array(array))
    return Tensor(meta.name, meta.datatype, array)
