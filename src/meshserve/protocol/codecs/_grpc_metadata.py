"""ModelMetadata <-> ModelMetadataResponse."""

from __future__ import annotations

from meshserve.errors import TensorError
from meshserve.protocol._pb import grpc_predict_v2_pb2 as pb
from meshserve.protocol.codecs._checks import parse_datatype, shape_text
from meshserve.protocol.inference import ModelMetadata, TensorMetadata

__all__ = ["metadata_from_proto", "metadata_to_proto"]

_Entry = pb.ModelMetadataResponse.TensorMetadata


def metadata_to_proto(metadata: ModelMetadata) -> pb.ModelMetadataResponse:
    """The ModelMetadataResponse describing ``metadata``."""
    return pb.ModelMetadataResponse(
        name=metadata.name,
        versions=metadata.versions,
        platform=metadata.platform,
        inputs=[_entry(t) for t in metadata.inputs],
        outputs=[_entry(t) for t in metadata.outputs],
    )


def metadata_from_proto(message: pb.ModelMetadataResponse) -> ModelMetadata:
    """The ModelMetadata a ModelMetadataResponse describes.

    Raises TensorError for an unknown datatype or a dimension below -1.
    """
    return ModelMetadata(
        name=message.name,
        platform=message.platform,
        versions=tuple(message.versions),
        inputs=tuple(_tensor(e) for e in message.inputs),
        outputs=tuple(_tensor(e) for e in message.outputs),
    )


def _entry(tensor: TensorMetadata) -> _Entry:
    return _Entry(name=tensor.name, datatype=tensor.datatype.value, shape=tensor.shape)


def _tensor(entry: _Entry) -> TensorMetadata:
    shape = tuple(entry.shape)
    if any(dim < -1 for dim in shape):
        raise TensorError(
            entry.name,
            f"metadata shape {shape_text(shape)} has a dimension below -1; "
            "expected sizes >= 0, or -1 for a variable dimension",
        )
    return TensorMetadata(
        name=entry.name, datatype=parse_datatype(entry.name, entry.datatype), shape=shape
    )
