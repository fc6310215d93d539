"""Where ``meshserve apply / get / describe / delete`` read and write
resources: the server's admin API, or (``--store``) the store itself.

Through the API (the default) a server checks the caller's credential and
scope like any other call, validates the documents, and seals Secrets with
its own key. The server is the one ``--grpc`` names, or the ``meshserve
up`` of ``--data-dir`` (its endpoints.json).

``--store URL`` opens the store directly: a break-glass path for operators
who hold the store's own credentials (etcd's, or the sqlite file). It
bypasses the API and its authorisation; Secrets are sealed here, with the
key the settings give.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import pathlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import click

from meshserve.cli._client import (
    CallOptions,
    CannotConnectError,
    Connection,
    endpoints_file_entry,
    pass_call_options,
)
from meshserve.cli._store_access import store_settings
from meshserve.controller import Applied, ResourceKey, ResourceStore
from meshserve.errors import InvalidResourceError
from meshserve.protocol._pb import meshserve_admin_pb2 as admin
from meshserve.resources import parse_resource
from meshserve.security import SealingKey, SealingKeyError, load_sealing_key
from meshserve.settings import Settings, load_settings
from meshserve.store import open_store

__all__ = ["ResourceAccess", "ResourceTarget", "pass_resource_target"]

T = TypeVar("T")
_Command = TypeVar("_Command", bound=Callable[..., None])

Listing = list[dict[str, Any]]


class ResourceAccess(Protocol):
    """What the resource commands do, wherever the resources are."""

    def apply(self, documents: Sequence[dict[str, Any]]) -> list[tuple[ResourceKey, Applied]]:
        """Create or update each document; what that did to each."""
        ...

    def get(self, kind: str, *, namespace: str | None, name: str | None) -> Listing:
        """The ``kind`` resources as ``get`` shows them (status merged in,
        Secrets redacted); ``namespace`` None: all (the caller may see)."""
        ...

    def delete(self, keys: Sequence[ResourceKey]) -> list[tuple[ResourceKey, bool]]:
        """Delete each key; False for those that did not exist."""
        ...

    def watch(self, kind: str, *, namespace: str | None, show: Callable[[Listing], None]) -> None:
        """Call ``show`` with the listing now and after each change, until
        Ctrl-C (changes close together may come as one listing)."""
        ...


class ServerAccess:
    """The admin API of a running server."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def apply(self, documents: Sequence[dict[str, Any]]) -> list[tuple[ResourceKey, Applied]]:
        reply = self._conn.call(
            self._conn.admin.ApplyResources,
            admin.ApplyResourcesRequest(documents=[json.dumps(d) for d in documents]),
        )
        return [(_key(entry.ref), _outcome(entry)) for entry in reply.applied]

    def get(self, kind: str, *, namespace: str | None, name: str | None) -> Listing:
        reply = self._conn.call(
            self._conn.admin.GetResources,
            admin.GetResourcesRequest(kind=kind, namespace=namespace or "", name=name or ""),
        )
        return [json.loads(document) for document in reply.documents]

    def delete(self, keys: Sequence[ResourceKey]) -> list[tuple[ResourceKey, bool]]:
        refs = [admin.ResourceRef(kind=k.kind, namespace=k.namespace, name=k.name) for k in keys]
        reply = self._conn.call(
            self._conn.admin.DeleteResources, admin.DeleteResourcesRequest(refs=refs)
        )
        return [(_key(entry.ref), entry.deleted) for entry in reply.results]

    def watch(self, kind: str, *, namespace: str | None, show: Callable[[Listing], None]) -> None:
        request = admin.GetResourcesRequest(kind=kind, namespace=namespace or "")
        for reply in self._conn.stream(self._conn.admin.WatchResources, request):
            show([json.loads(document) for document in reply.documents])


def _outcome(entry: admin.AppliedResource) -> Applied:
    if entry.created:
        return Applied.CREATED
    return Applied.UNCHANGED if entry.unchanged else Applied.CONFIGURED


def _key(ref: admin.ResourceRef) -> ResourceKey:
    return ResourceKey.named(ref.kind, ref.namespace, ref.name)


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


@dataclass(frozen=True, slots=True)
class ResourceTarget:
    """The options that say where the resources are."""

    data_dir: pathlib.Path | None
    store: str | None
    root_prefix: str | None
    grpc: str | None
    call_options: CallOptions

    @contextlib.contextmanager
    def open(self) -> Iterator[ResourceAccess]:
        """The store (``--store``), or the API of the server ``--grpc`` or
        the data dir names; CannotConnectError (exit 3) if none is found."""
        if self.store is not None:
            yield StoreAccess(store_settings(self.data_dir, self.store, self.root_prefix))
            return
        if self.root_prefix is not None:
            raise click.UsageError("--root-prefix goes with --store (a server knows its own)")
        with self.call_options.connect(self.grpc or self._up_address()) as conn:
            yield ServerAccess(conn)

    def _up_address(self) -> str:
        data_dir = load_settings(overrides={"data_dir": self.data_dir}).data_dir
        address = endpoints_file_entry("grpc", path=data_dir / "endpoints.json")
        if address is None:
            raise CannotConnectError(
                f"the `meshserve up` of {data_dir}",
                "it has no endpoints.json (is it running?); give the --data-dir of a running "
                "`meshserve up`, or --grpc HOST:PORT (or --store URL to open a store directly)",
            )
        return address


_TARGET_OPTIONS = (
    click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=pathlib.Path),
        default=None,
        help="Data dir of the running `up` whose API to use  [default: ./.meshserve]",
    ),
    click.option(
        "--grpc",
        "--endpoint",
        "grpc",
        envvar="MESHSERVE_ENDPOINT",
        default=None,
        metavar="HOST:PORT",
        help="gRPC address of a server, in place of the --data-dir's (env MESHSERVE_ENDPOINT; "
        "a --data-dir given on the command line wins over the env).",
    ),
    click.option(
        "--store",
        default=None,
        metavar="URL",
        help="Break-glass: open this store (etcd://HOST:PORT or sqlite:///PATH) directly, with "
        "its own credentials, bypassing the API and its authorisation.",
    ),
    click.option("--root-prefix", default=None, help="With --store: the namespace inside it."),
)


def _env_beaten_by_data_dir() -> bool:
    """MESHSERVE_ENDPOINT set, and --data-dir on the command line: the
    explicit option names the server (as --endpoint would beat the env)."""
    context = click.get_current_context()
    return (
        context.get_parameter_source("grpc") is click.core.ParameterSource.ENVIRONMENT
        and context.get_parameter_source("data_dir") is click.core.ParameterSource.COMMANDLINE
    )


def pass_resource_target(command: _Command) -> _Command:
    """Add the options that say where the resources are (and how to call a
    server: --timeout, TLS, --token) and hand the command a
    ``target: ResourceTarget`` instead."""

    @pass_call_options
    @functools.wraps(command)
    def wrapper(
        *args: Any,
        data_dir: pathlib.Path | None,
        grpc: str | None,
        store: str | None,
        root_prefix: str | None,
        call_options: CallOptions,
        **kwargs: Any,
    ) -> None:
        target = ResourceTarget(
            data_dir=data_dir,
            store=store,
            root_prefix=root_prefix,
            grpc=None if _env_beaten_by_data_dir() else grpc,
            call_options=call_options,
        )
        command(*args, target=target, **kwargs)

    decorated: Callable[..., None] = wrapper
    for option in reversed(_TARGET_OPTIONS):
        decorated = option(decorated)
    return cast(_Command, decorated)
