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

import contextlib
import functools
import json
import pathlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import click

from meshserve._resource_refs import Applied, ResourceKey
from meshserve.cli._client import (
    CallOptions,
    CannotConnectError,
    Connection,
    default_data_dir,
    endpoints_file_entry,
    pass_call_options,
)
from meshserve.protocol._pb import meshserve_admin_pb2 as admin

__all__ = ["Listing", "ResourceAccess", "ResourceTarget", "pass_resource_target"]

T = TypeVar("T")
_REWATCH_S = 0.2
"""Pause before watching again after the connection dropped."""

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
        replies = self._conn.listing(
            self._conn.admin.StreamResources,
            self._conn.admin.GetResources,
            admin.GetResourcesRequest(kind=kind, namespace=namespace or "", name=name or ""),
        )
        return [json.loads(document) for reply in replies for document in reply.documents]

    def delete(self, keys: Sequence[ResourceKey]) -> list[tuple[ResourceKey, bool]]:
        refs = [admin.ResourceRef(kind=k.kind, namespace=k.namespace, name=k.name) for k in keys]
        reply = self._conn.call(
            self._conn.admin.DeleteResources, admin.DeleteResourcesRequest(refs=refs)
        )
        return [(_key(entry.ref), entry.deleted) for entry in reply.results]

    def watch(self, kind: str, *, namespace: str | None, show: Callable[[Listing], None]) -> None:
        request = admin.GetResourcesRequest(kind=kind, namespace=namespace or "")
        while True:
            answered = False
            try:
                for reply in self._conn.stream(self._conn.admin.WatchResources, request):
                    answered = True
                    show([json.loads(document) for document in reply.documents])
                return
            except CannotConnectError:
                # A server that answered, then dropped the connection (a
                # shared port ages connections out; an instance restarted):
                # watch again, which starts with the whole listing. One that
                # never answered is down.
                if not answered:
                    raise
                time.sleep(_REWATCH_S)


def _outcome(entry: admin.AppliedResource) -> Applied:
    if entry.created:
        return Applied.CREATED
    return Applied.UNCHANGED if entry.unchanged else Applied.CONFIGURED


def _key(ref: admin.ResourceRef) -> ResourceKey:
    return ResourceKey.named(ref.kind, ref.namespace, ref.name)


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
            # Imported here: the store, the controller's resource store and
            # the settings (pydantic) are for --store only.
            from meshserve.cli._store_access import store_settings
            from meshserve.cli._store_resources import StoreAccess

            yield StoreAccess(store_settings(self.data_dir, self.store, self.root_prefix))
            return
        if self.root_prefix is not None:
            raise click.UsageError("--root-prefix goes with --store (a server knows its own)")
        with self.call_options.connect(self.grpc or self._up_address()) as conn:
            yield ServerAccess(conn)

    def _up_address(self) -> str:
        data_dir = self.data_dir or default_data_dir()
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
