"""Quotas per namespace: models registered, and bytes their models take.

A model's namespace is ``security.namespace_of`` of its id (``team-a/fraud``
is in ``team-a``, ids without a prefix in ``default``).

- **Models per namespace** (``limits.modelsPerNamespace``): registering a new
  model id is refused with QuotaExceededError when its namespace already has
  that many models in the registry. Counted in this instance's mirror of the
  registry, so two instances registering at the same moment may each let
  one through.
- **Bytes per namespace** (``limits.namespaceMaxBytes``): a load is refused
  (LoadQuotaExceededError, the model's status LOADING_FAILED) when the
  model's size plus the known sizes of the namespace's other registered
  models is over the quota. A known size is the one a loaded copy last
  measured, wherever in the mesh: each instance writes it to the store
  (``limits/sizes/<model id>``) after a load. A model never loaded counts 0;
  the model being loaded counts its last measured size, or the runtime's
  prediction when it was never loaded. Registration itself is never
  refused for bytes: a model's size is not known before it loads.
"""

from __future__ import annotations

import logging
from typing import Protocol

from meshserve.errors import LoadQuotaExceededError, QuotaExceededError
from meshserve.metrics import MetricsRecorder, NullMetrics
from meshserve.registry import Registry
from meshserve.security import NamespaceOf, namespace_of
from meshserve.settings import LimitsSettings
from meshserve.store import StoreError

__all__ = [
    "SIZES_PREFIX",
    "LoadQuota",
    "NamespaceQuotas",
    "check_model_count",
    "check_namespace_bytes",
]

log = logging.getLogger(__name__)

SIZES_PREFIX = "limits/sizes/"
"""Store keys holding each model's last measured size (decimal bytes)."""


class LoadQuota(Protocol):
    """What the cache asks before a load and tells after one."""

    async def admit_load(self, model_id: str, size_bytes: int) -> None:
        """Raise LoadQuotaExceededError if a load of ``size_bytes`` is over quota."""
        ...

    async def record_size(self, model_id: str, size_bytes: int) -> None:
        """A copy of ``model_id`` loaded and measured ``size_bytes``."""
        ...


def check_model_count(
    registry: Registry,
    *,
    limits: LimitsSettings,
    model_id: str,
    namespace_of: NamespaceOf = namespace_of,
) -> None:
    """Raise QuotaExceededError if registering ``model_id`` (not registered
    yet) would put its namespace over ``limits.models_per_namespace``."""
    quota = limits.models_per_namespace
    if quota <= 0:
        return
    namespace = namespace_of(model_id)
    count = sum(
        1 for other in registry.models if other != model_id and namespace_of(other) == namespace
    )
    if count >= quota:
        raise QuotaExceededError(
            f"cannot register model '{model_id}': namespace '{namespace}' has {count} models, "
            f"its quota (limits.modelsPerNamespace) is {quota}; unregister one first"
        )


def check_namespace_bytes(
    registry: Registry,
    *,
    limits: LimitsSettings,
    model_id: str,
    size_bytes: int,
    known_sizes: dict[str, int],
    namespace_of: NamespaceOf = namespace_of,
) -> None:
    """Raise LoadQuotaExceededError if loading ``model_id`` (``size_bytes``
    when its size is not in ``known_sizes``) would take its namespace's
    registered models over ``limits.namespace_max_bytes``."""
    quota = limits.namespace_max_bytes
    if quota <= 0:
        return
    namespace = namespace_of(model_id)
    others = {
        other: known_sizes.get(other, 0)
        for other in registry.models
        if other != model_id and namespace_of(other) == namespace
    }
    used = sum(others.values())
    size = known_sizes.get(model_id, size_bytes)
    if used + size > quota:
        sized = sum(1 for value in others.values() if value)
        raise LoadQuotaExceededError(
            f"model '{model_id}' ({size} bytes) would take namespace '{namespace}' to "
            f"{used + size} bytes, over its quota (limits.namespaceMaxBytes) of {quota} "
            f"bytes: {used} bytes are taken by {sized} other model(s)"
        )


class NamespaceQuotas:
    """One instance's quotas: checks registrations, admits loads (it is the
    cache's :class:`LoadQuota`), and shares measured sizes through the store.
    Every refusal is counted in ``meshserve_limit_rejected``."""

    def __init__(
        self,
        *,
        registry: Registry,
        limits: LimitsSettings,
        metrics: MetricsRecorder | None = None,
        namespace_of: NamespaceOf = namespace_of,
    ) -> None:
        self._registry = registry
        self._limits = limits
        self._metrics = metrics or NullMetrics()
        self._namespace_of = namespace_of
        self._measured: dict[str, int] = {}
        """Sizes this instance measured: used when the store cannot be read."""

    def check_registration(self, model_id: str) -> None:
        """Raise QuotaExceededError if a new ``model_id`` is over its
        namespace's model count."""
        try:
            check_model_count(
                self._registry,
                limits=self._limits,
                model_id=model_id,
                namespace_of=self._namespace_of,
            )
        except QuotaExceededError:
            self._metrics.limit_rejected("models_per_namespace")
            raise

    async def admit_load(self, model_id: str, size_bytes: int) -> None:
        if self._limits.namespace_max_bytes <= 0:
            return
        try:
            check_namespace_bytes(
                self._registry,
                limits=self._limits,
                model_id=model_id,
                size_bytes=size_bytes,
                known_sizes=await self._known_sizes(),
                namespace_of=self._namespace_of,
            )
        except QuotaExceededError:
            self._metrics.limit_rejected("namespace_bytes")
            raise

    async def record_size(self, model_id: str, size_bytes: int) -> None:
        # Written only while a byte quota is set: nothing reads them otherwise.
        if self._limits.namespace_max_bytes <= 0 or size_bytes <= 0:
            return
        self._measured[model_id] = size_bytes
        try:
            await self._registry.store.put(SIZES_PREFIX + model_id, str(size_bytes).encode())
        except StoreError as exc:
            log.warning("could not record the size of %s for quotas: %s", model_id, exc)

    async def _known_sizes(self) -> dict[str, int]:
        try:
            listed = await self._registry.store.range(SIZES_PREFIX)
        except StoreError as exc:
            log.warning("reading model sizes for quotas failed (%s); using this instance's", exc)
            return dict(self._measured)
        sizes = dict(self._measured)
        for kv in listed.kvs:
            try:
                sizes[kv.key[len(SIZES_PREFIX) :]] = int(kv.value)
            except ValueError:
                log.warning("ignoring a malformed size record %s", kv.key)
        return sizes
