"""How far a model's concurrent requests are merged: ``maxBatchSize`` and
``maxBatchDelayMs``, from the runtime's settings or the model's own key."""

from __future__ import annotations

from dataclasses import dataclass

from meshserve.errors import UnsupportedModelError, quote_client_value
from meshserve.protocol.model_key import ModelKey
from meshserve.settings import RuntimeSettings

__all__ = ["MAX_BATCH_DELAY_KEY", "MAX_BATCH_SIZE_KEY", "BatchLimits"]

MAX_BATCH_SIZE_KEY = "max_batch_size"
"""The model key field that overrides ``runtime.maxBatchSize`` for one model
(the controller writes it from the resource's annotations)."""

MAX_BATCH_DELAY_KEY = "max_batch_delay_ms"
"""The model key field that overrides ``runtime.maxBatchDelayMs``."""


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """``max_batch_size`` requests at most in one runtime call (1: no
    batching); a batch that is not full waits up to ``max_batch_delay_ms``
    for more (0: never waits, it takes what queued while the previous call
    ran)."""

    max_batch_size: int = 1
    max_batch_delay_ms: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.max_batch_size > 1

    @classmethod
    def of_settings(cls, settings: RuntimeSettings) -> BatchLimits:
        return cls(
            max_batch_size=settings.max_batch_size, max_batch_delay_ms=settings.max_batch_delay_ms
        )

    def for_key(self, key: ModelKey) -> BatchLimits:
        """These limits with the model key's overrides; UnsupportedModelError
        naming the field for a value out of range."""
        size = key.extra.get(MAX_BATCH_SIZE_KEY, self.max_batch_size)
        delay = key.extra.get(MAX_BATCH_DELAY_KEY, self.max_batch_delay_ms)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise UnsupportedModelError(
                f"model key's {MAX_BATCH_SIZE_KEY} must be an integer of 1 or more (1: no "
                f"batching), not {quote_client_value(size)}"
            )
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= 1000:
            raise UnsupportedModelError(
                f"model key's {MAX_BATCH_DELAY_KEY} must be a number of milliseconds from 0 "
                f"to 1000, not {quote_client_value(delay)}"
            )
        return BatchLimits(max_batch_size=size, max_batch_delay_ms=float(delay))
