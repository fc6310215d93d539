"""``--store``: the resource commands on the store itself, with no server
and no authorisation (see ``_resource_access``), imported only then."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import click

from meshserve.controller import Applied, ResourceKey, ResourceStore
from meshserve.errors import InvalidResourceError
from meshserve.resources import parse_resource
from meshserve.security import SealingKey, SealingKeyError, load_sealing_key
from meshserve.settings import Settings
from meshserve.store import open_store

__all__ = ["StoreAccess"]

T = TypeVar("T")
# _resource_access's Listing (imported from there, this module would close
# an import cycle).
Listing = list[dict[str, Any]]


class StoreAccess:
    """The store itself (``--store``): no server, no authorisation."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def _run(
        self,
        work: Callable[[ResourceStore], Awaitable[T]],
        *,
        sealing_key: SealingKey | None = None,
    ) -> T:
        async def run() -> T:
            async with open_store(self._settings) as store:
                return await work(ResourceStore(store, sealing_key=sealing_key))

        return asyncio.run(run())

    def apply(self, documents: Sequence[dict[str, Any]]) -> list[tuple[ResourceKey, Applied]]:
        secrets = [
            f"secret/{ResourceKey.of(d).name}" for d in documents if d.get("kind") == "Secret"
        ]
        sealing_key = self._sealing_key(secrets) if secrets else None

        async def apply_all(resources: ResourceStore) -> list[tuple[ResourceKey, Applied]]:
            # The storage checks the API makes, but for local roots: this
            # store's server knows its own (its controller refuses those).
            for document in documents:
                try:
                    resources.admit(parse_resource(document))
                except InvalidResourceError as exc:
                    key = ResourceKey.of(document)
                    raise click.ClickException(f"{key.kind.lower()}/{key.name}: {exc}") from None
            return [(ResourceKey.of(d), await resources.apply(d)) for d in documents]

        return self._run(apply_all, sealing_key=sealing_key)

    def _sealing_key(self, secrets: list[str]) -> SealingKey:
        """The key that seals the Secrets being applied; refused before
        anything is written when there is none."""
        settings = self._settings
        try:
            key = load_sealing_key(settings.security, data_dir=settings.data_dir)
        except SealingKeyError as exc:
            raise click.ClickException(str(exc)) from None
        if key is None:
            raise click.ClickException(
                f"cannot apply {', '.join(secrets)}: a Secret's values are sealed before they "
                "are stored, and there is no sealing key. Give the --data-dir of the `meshserve "
                "up` that made <data dir>/sealing.key, or set security.sealingKeyFile "
                "(MESHSERVE_SECURITY__SEALING_KEY_FILE) or MESHSERVE_SECURITY__SEALING_KEY"
            )
        return key

    def get(self, kind: str, *, namespace: str | None, name: str | None) -> Listing:
        return self._run(lambda resources: resources.shown(kind, namespace=namespace, name=name))

    def delete(self, keys: Sequence[ResourceKey]) -> list[tuple[ResourceKey, bool]]:
        async def remove(resources: ResourceStore) -> list[tuple[ResourceKey, bool]]:
            return [(key, await resources.delete(key)) for key in keys]

        return self._run(remove)

    def watch(self, kind: str, *, namespace: str | None, show: Callable[[Listing], None]) -> None:
        async def run() -> None:
            async with open_store(self._settings) as store:
                listings = ResourceStore(store).watch_shown(kind, namespace=namespace)
                async with contextlib.aclosing(listings):
                    async for listing in listings:
                        show(listing)

        asyncio.run(run())
