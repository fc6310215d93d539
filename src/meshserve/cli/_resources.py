"""``meshserve apply / get / describe / delete``: ServingRuntime,
InferenceService and Predictor resources, in ModelMesh Serving's YAML.

Resources are written to the mesh's store; the mesh's controller turns them
into vmodels and writes their status back (``get`` shows it).
"""

from __future__ import annotations

import asyncio
import pathlib
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import yaml

from meshserve.cli._output import Table, emit
from meshserve.cli._store_access import store_options, store_settings
from meshserve.control import load_documents
from meshserve.controller import CLUSTER, ResourceKey, ResourceStore, kind_of
from meshserve.errors import InvalidResourceError
from meshserve.server import open_store
from meshserve.settings import Settings

__all__ = ["apply", "delete", "describe", "get"]

T = TypeVar("T")


def _with_store(settings: Settings, work: Callable[[ResourceStore], Awaitable[T]]) -> T:
    async def run() -> T:
        async with open_store(settings) as store:
            return await work(ResourceStore(store))

    return asyncio.run(run())


def _read(path: pathlib.Path) -> str:
    return sys.stdin.read() if str(path) == "-" else path.read_text()


def _documents(file: pathlib.Path) -> list[dict[str, Any]]:
    """Parse and validate every document; warn about fields meshserve keeps
    but does not act on."""
    try:
        resources = load_documents(_read(file))
    except InvalidResourceError as exc:
        raise click.BadParameter(f"{file}: {exc}", param_hint="-f") from None
    documents = []
    for resource in resources:
        for warning in resource.ignored_fields():
            click.echo(
                f"warning: {resource.kind.lower()}/{resource.name}: {warning} (kept, not acted on)",
                err=True,
            )
        documents.append(resource.to_document())
    return documents


@click.command()
@click.option("-f", "--filename", "file", required=True, type=click.Path(path_type=pathlib.Path))
@store_options
def apply(
    file: pathlib.Path, data_dir: pathlib.Path | None, store: str | None, root_prefix: str | None
) -> None:
    """Create or update the resources in FILE (YAML, several documents or a
    List; - reads stdin)."""
    documents = _documents(file)
    if not documents:
        raise click.BadParameter(f"{file}: no resources in it", param_hint="-f")

    async def put_all(resources: ResourceStore) -> list[tuple[ResourceKey, bool]]:
        results = []
        for document in documents:
            key = ResourceKey.of(document)
            existing = await resources.get(key)
            if existing is not None:
                generation = (existing.get("metadata") or {}).get("generation", 1)
                changed = existing.get("spec") != document.get("spec")
                document.setdefault("metadata", {})["generation"] = generation + int(changed)
            else:
                document.setdefault("metadata", {})["generation"] = 1
            await resources.put(document)
            results.append((key, existing is None))
        return results

    settings = store_settings(data_dir, store, root_prefix)
    for key, created in _with_store(settings, put_all):
        click.echo(f"{key.kind.lower()}/{key.name} {'created' if created else 'configured'}")


def _namespace_filter(kind: str, namespace: str | None) -> Callable[[ResourceKey], bool]:
    return lambda key: (
        key.kind == kind and (namespace is None or key.namespace in (namespace, CLUSTER))
    )


@click.command()
@click.argument("kind")
@click.argument("name", required=False)
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-A", "--all-namespaces", is_flag=True)
@click.option("-o", "--output", type=click.Choice(["table", "yaml", "json"]), default="table")
@store_options
def get(
    kind: str,
    name: str | None,
    namespace: str,
    all_namespaces: bool,
    output: str,
    data_dir: pathlib.Path | None,
    store: str | None,
    root_prefix: str | None,
) -> None:
    """List resources of KIND (isvc, predictor, servingruntime,
    clusterservingruntime), or show one, with their status."""
    resolved = _kind(kind)
    wanted = _namespace_filter(resolved, None if all_namespaces else namespace)

    async def read(resources: ResourceStore) -> list[dict[str, Any]]:
        documents = await resources.list(resolved)
        statuses = await resources.statuses()
        found = []
        for key, document in sorted(documents.items()):
            if not wanted(key) or (name is not None and key.name != name):
                continue
            status = statuses.get(key)
            if status is not None:
                document = {**document, "status": status}
            found.append(document)
        return found

    found = _with_store(store_settings(data_dir, store, root_prefix), read)
    if name is not None and not found:
        raise click.ClickException(f"NOT_FOUND: {resolved.lower()} '{name}' not found")
    data: Any = found[0] if name is not None else {"kind": "List", "items": found}
    if output == "yaml":
        click.echo(yaml.safe_dump(data, sort_keys=False), nl=False)
    else:
        emit(output, data=data, table=lambda: _table(resolved, found))


def _table(kind: str, documents: list[dict[str, Any]]) -> Table:
    if kind in ("ServingRuntime", "ClusterServingRuntime"):
        return Table(
            ("NAME", "DISABLED", "MODELTYPE"),
            [
                (
                    d["metadata"]["name"],
                    str(bool(d.get("spec", {}).get("disabled", False))).lower(),
                    ",".join(f["name"] for f in d.get("spec", {}).get("supportedModelFormats", [])),
                )
                for d in documents
            ],
        )
    rows = []
    for d in documents:
        status = d.get("status", {})
        rows.append(
            (
                d["metadata"]["name"],
                status.get("grpcEndpoint", "-"),
                "True" if status.get("available") else "False",
                status.get("activeModelState", "-"),
                status.get("targetModelState", "") or "-",
                status.get("transitionStatus", "-"),
                (status.get("lastFailureInfo") or {}).get("reason", "-"),
            )
        )
    return Table(("NAME", "URL", "READY", "ACTIVE", "TARGET", "TRANSITION", "FAILURE"), rows)


@click.command()
@click.argument("kind")
@click.argument("name")
@click.option("-n", "--namespace", default="default", show_default=True)
@store_options
def describe(
    kind: str,
    name: str,
    namespace: str,
    data_dir: pathlib.Path | None,
    store: str | None,
    root_prefix: str | None,
) -> None:
    """Show one resource as applied, its status, and the fields meshserve
    keeps but does not act on."""
    resolved = _kind(kind)
    key = ResourceKey.named(resolved, namespace, name)

    async def read(resources: ResourceStore) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        return await resources.get(key), await resources.status(key)

    document, status = _with_store(store_settings(data_dir, store, root_prefix), read)
    if document is None:
        raise click.ClickException(f"NOT_FOUND: {resolved.lower()} '{name}' not found")
    click.echo(yaml.safe_dump({**document, "status": status or {}}, sort_keys=False), nl=False)
    (resource,) = load_documents(yaml.safe_dump(document))
    ignored = resource.ignored_fields()
    if ignored:
        click.echo("fields kept but not acted on:")
        for warning in ignored:
            click.echo(f"  - {warning}")


@click.command()
@click.argument("kind", required=False)
@click.argument("name", required=False)
@click.option("-f", "--filename", "file", type=click.Path(path_type=pathlib.Path), default=None)
@click.option("-n", "--namespace", default="default", show_default=True)
@store_options
def delete(
    kind: str | None,
    name: str | None,
    file: pathlib.Path | None,
    namespace: str,
    data_dir: pathlib.Path | None,
    store: str | None,
    root_prefix: str | None,
) -> None:
    """Delete KIND NAME, or every resource in a file (-f). Unknown names
    exit 1."""
    if file is not None:
        keys = [ResourceKey.of(d) for d in _documents(file)]
    elif kind is not None and name is not None:
        keys = [ResourceKey.named(_kind(kind), namespace, name)]
    else:
        raise click.UsageError("give KIND NAME, or -f FILE")

    async def remove(resources: ResourceStore) -> list[tuple[ResourceKey, bool]]:
        return [(key, await resources.delete(key)) for key in keys]

    missing = []
    for key, deleted in _with_store(store_settings(data_dir, store, root_prefix), remove):
        if deleted:
            click.echo(f"{key.kind.lower()}/{key.name} deleted")
        else:
            missing.append(key)
    if missing:
        names = ", ".join(f"{k.kind.lower()}/{k.name}" for k in missing)
        raise click.ClickException(f"NOT_FOUND: {names} not found")


def _kind(name: str) -> str:
    try:
        return kind_of(name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="KIND") from None
