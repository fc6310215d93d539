"""The contract every loaded model meets, whatever its format."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from meshserve.protocol.inference import Tensor, TensorMetadata

__all__ = ["LoadedModel"]


class LoadedModel(Protocol):
    """A model in memory, ready to predict.

    ``predict`` is synchronous and may block for as long as the library
    takes; hosts call it from worker threads. Errors are
    :mod:`meshserve.errors` types: ``TensorError`` / ``InvalidRequestError``
    for bad inputs or unknown output names, ``InferenceError`` when the
    library itself fails.
    """

    @property
    def platform(self) -> str:
        """The v2 metadata platform, e.g. ``sklearn`` or ``onnxruntime_onnx``."""
        ...

    @property
    def metadata_inputs(self) -> tuple[TensorMetadata, ...]: ...

    @property
    def metadata_outputs(self) -> tuple[TensorMetadata, ...]: ...

    @property
    def size_bytes(self) -> int:
        """Memory the model holds, as measured (or best estimated) after load."""
        ...

    def predict(self, inputs: Sequence[Tensor], *, outputs: Sequence[str] = ()) -> list[Tensor]:
        """Run the model; ``outputs`` names the outputs wanted (empty: all)."""
        ...
