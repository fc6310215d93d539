"""The adaptive batching annotations of a resource.

Neither ModelMesh Serving nor its ServingRuntime has batching (KServe's
``spec.predictor.batcher`` is a sidecar of the serverless mode, MLServer's
``max_batch_size`` / ``max_batch_time`` live in its model-settings.json), so
meshserve reads its own annotations, on a ServingRuntime or
ClusterServingRuntime (every model it serves) and on an InferenceService or
Predictor (that model; wins over its runtime's):

    serving.meshserve.io/maxBatchSize: "16"       # 1 turns batching off
    serving.meshserve.io/maxBatchDelayMs: "2"     # 0: never wait for more

They travel to the runtime in the model key (``max_batch_size``,
``max_batch_delay_ms``); the built-in runtime applies them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from meshserve.errors import InvalidResourceError, quote_client_value

__all__ = ["MAX_BATCH_DELAY_ANNOTATION", "MAX_BATCH_SIZE_ANNOTATION", "batch_overrides"]

MAX_BATCH_SIZE_ANNOTATION = "serving.meshserve.io/maxBatchSize"
MAX_BATCH_DELAY_ANNOTATION = "serving.meshserve.io/maxBatchDelayMs"
_MAX_DELAY_MS = 1000.0


def batch_overrides(annotations: Mapping[str, str]) -> dict[str, int | float]:
    """The model key fields ``annotations`` set (none when they set none);
    InvalidResourceError naming the annotation for a value out of range."""
    out: dict[str, int | float] = {}
    size = annotations.get(MAX_BATCH_SIZE_ANNOTATION)
    if size is not None:
        field = f"metadata.annotations[{MAX_BATCH_SIZE_ANNOTATION}]"
        try:
            out["max_batch_size"] = int(size.strip())
        except ValueError:
            raise InvalidResourceError(
                f"{quote_client_value(size)} is not an integer", field=field
            ) from None
        if out["max_batch_size"] < 1:
            raise InvalidResourceError("must be 1 or more (1: no batching)", field=field)
    delay = annotations.get(MAX_BATCH_DELAY_ANNOTATION)
    if delay is not None:
        field = f"metadata.annotations[{MAX_BATCH_DELAY_ANNOTATION}]"
        try:
            value = float(delay.strip())
        except ValueError:
            raise InvalidResourceError(
                f"{quote_client_value(delay)} is not a number of milliseconds", field=field
            ) from None
        if not (math.isfinite(value) and 0 <= value <= _MAX_DELAY_MS):
            raise InvalidResourceError(
                f"must be from 0 to {_MAX_DELAY_MS:.0f} milliseconds", field=field
            )
        out["max_batch_delay_ms"] = value
    return out
