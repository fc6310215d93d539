"""Inference requests and responses as meshserve holds them in memory.

Codecs (``meshserve.protocol.codecs``) turn the gRPC, REST JSON and binary
forms into these records and back; runtimes only ever see these.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from meshserve.protocol.datatypes import Datatype

__all__ = [
    "InferenceRequest",
    "InferenceResponse",
    "ModelMetadata",
    "ParameterValue",
    "Parameters",
    "RequestedOutput",
    "Tensor",
    "TensorMetadata",
]

ParameterValue = bool | int | float | str
Parameters = dict[str, ParameterValue]


@dataclass(slots=True)
class Tensor:
    """A named tensor. ``data`` has the tensor's shape and the numpy dtype of
    ``datatype`` (object arrays of ``bytes`` for BYTES)."""

    name: str
    datatype: Datatype
    data: np.ndarray
    parameters: Parameters = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.data.shape)


@dataclass(slots=True)
class RequestedOutput:
    """An output the caller asked for by name (all outputs when none are)."""

    name: str
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class InferenceRequest:
    model_name: str
    inputs: list[Tensor]
    model_version: str = ""
    id: str = ""
    parameters: Parameters = field(default_factory=dict)
    outputs: list[RequestedOutput] = field(default_factory=list)


@dataclass(slots=True)
class InferenceResponse:
    model_name: str
    outputs: list[Tensor]
    model_version: str = ""
    id: str = ""
    parameters: Parameters = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TensorMetadata:
    """A model input or output; -1 in ``shape`` marks a variable dimension."""

    name: str
    datatype: Datatype
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    platform: str
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]
    versions: tuple[str, ...] = ()
