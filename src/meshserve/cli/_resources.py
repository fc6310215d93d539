"""``meshserve apply / get / describe / delete``: ServingRuntime,
InferenceService and Predictor resources, in ModelMesh Serving's YAML, and
the Secrets holding each namespace's storage-config.

The commands go through the server's admin API (``_resource_access``): it
checks the caller's credential and scope, validates the documents again,
and seals Secrets with its key before they reach the store. The mesh's
controller turns the resources into vmodels and writes their status back
(``get`` shows it). ``--store`` opens a store directly instead, for
operators who hold its credentials.

Documents are parsed here first too, so that a bad file is named before
anything is sent and the fields meshserve keeps but does not act on are
warned about. ``get`` and ``describe`` show a Secret's keys and lengths,
never a value.
"""

from __future__ import annotations

import contextlib
import datetime
import pathlib
import sys
from collections.abc import Callable
from typing import Any

import click
import yaml

from meshserve._resource_refs import READY, ResourceKey, find_condition, kind_of
from meshserve.cli._client import ServerError
from meshserve.cli._output import Table, emit
from meshserve.cli._resource_access import Listing, ResourceTarget, pass_resource_target
from meshserve.errors import InvalidResourceError

__all__ = ["apply", "delete", "describe", "get"]


_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def _read(path: pathlib.Path) -> str:
    return sys.stdin.read() if str(path) == "-" else path.read_text()


def _files(path: pathlib.Path) -> list[pathlib.Path]:
    """``path``, or for a directory its .yaml/.yml/.json files in name order
    (not recursive), as ``kubectl apply -f DIR`` reads them."""
    if str(path) == "-" or not path.is_dir():
        return [path]
    return sorted(p for p in path.iterdir() if p.suffix in _MANIFEST_SUFFIXES and p.is_file())


def _documents(
    file: pathlib.Path, *, namespace: str | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Parse and validate every document of a file or directory, in
    ``namespace`` (-n) when given; warn about fields meshserve keeps but
    does not act on. Also the Kubernetes objects it does not manage
    (``Kind/name``), which are skipped. A bad document exits 1 before
    anything is sent."""
    # Imported here, as in describe: the schemas (pydantic) cost more to
    # import than `get` takes to run.
    from meshserve.resources import load_manifest

    resources = []
    skipped = []
    for path in _files(file):
        try:
            manifest = load_manifest(_read(path))
        except InvalidResourceError as exc:
            raise click.ClickException(f"{path}: {exc}") from None
        resources += manifest.resources
        skipped += manifest.skipped
    documents = []
    for resource in resources:
        for warning in resource.ignored_fields():
            click.echo(
                f"warning: {resource.kind.lower()}/{resource.name}: {warning} (kept, not acted on)",
                err=True,
            )
        documents.append(_in_namespace(resource.to_document(), namespace))
    return documents, skipped


def _in_namespace(document: dict[str, Any], namespace: str | None) -> dict[str, Any]:
    """``document`` in ``namespace`` (-n), as kubectl does: one without a
    namespace gets it; one with another is refused."""
    if namespace is None or document.get("kind") == "ClusterServingRuntime":
        return document
    metadata = document.get("metadata") or {}
    stated = metadata.get("namespace")
    if stated is None:
        return {**document, "metadata": {**metadata, "namespace": namespace}}
    if stated != namespace:
        raise click.ClickException(
            f"the namespace of {str(document.get('kind')).lower()}/{metadata.get('name')} "
            f"({stated!r}) does not match --namespace {namespace!r}; pass -n {stated} or "
            "remove metadata.namespace from the file"
        )
    return document


def _skipped_lines(skipped: list[str]) -> list[str]:
    return [f"skipped: {name} (not managed by meshserve)" for name in skipped]


_namespace_option = click.option(
    "-n",
    "--namespace",
    default=None,
    help="The namespace of the resources [default: 'default', or each document's own].",
)


@click.command()
@click.option("-f", "--filename", "file", required=True, type=click.Path(path_type=pathlib.Path))
@_namespace_option
@pass_resource_target
def apply(file: pathlib.Path, namespace: str | None, target: ResourceTarget) -> None:
    """Create or update the resources in FILE (YAML, several documents or a
    List; a directory: its .yaml/.yml/.json files; - reads stdin). Objects
    of kinds meshserve does not manage (a Service, a Deployment...) are
    skipped and listed. A document refused (invalid, or a storage location
    that cannot be served) exits 1 with nothing applied."""
    documents, skipped = _documents(file, namespace=namespace)
    if not documents:
        raise click.ClickException(
            "\n".join([f"{file}: no resources meshserve manages in it", *_skipped_lines(skipped)])
        )
    with target.open() as resources:
        applied = resources.apply(documents)
    for key, outcome in applied:
        click.echo(f"{key.kind.lower()}/{key.name} {outcome.value}")
    for line in _skipped_lines(skipped):
        click.echo(line)


@click.command()
@click.argument("kind")
@click.argument("name", required=False)
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-A", "--all-namespaces", is_flag=True)
@click.option("-o", "--output", type=click.Choice(["table", "yaml", "json"]), default="table")
@click.option(
    "-w",
    "--watch",
    is_flag=True,
    help="After the list, print a row (table) or document each time one changes, until Ctrl-C.",
)
@pass_resource_target
def get(
    kind: str,
    name: str | None,
    namespace: str,
    all_namespaces: bool,
    output: str,
    watch: bool,
    target: ResourceTarget,
) -> None:
    """List resources of KIND (isvc, predictor, servingruntime,
    clusterservingruntime, secret), or show one, with their status. A
    Secret shows its keys and their lengths, never a value. The
    ClusterServingRuntimes meshserve ships are listed with the applied ones.
    With -A, every namespace the credential may see."""
    resolved = _kind(kind)
    scope = None if all_namespaces else namespace
    if watch:
        printer = _WatchPrinter(output=output, kind=resolved)
        with contextlib.suppress(KeyboardInterrupt), target.open() as resources:
            resources.watch(resolved, namespace=scope, show=printer.show)
        return
    with target.open() as resources:
        found = resources.get(resolved, namespace=scope, name=name)
    if name is not None and not found:
        raise ServerError(f"NOT_FOUND: {resolved.lower()} '{name}' not found")
    data: Any = found[0] if name is not None else {"kind": "List", "items": found}
    _print(output, data, lambda: _table(resolved, found))


def _print(output: str, data: Any, table: Callable[[], Table]) -> None:
    if output == "yaml":
        click.echo(yaml.safe_dump(data, sort_keys=False), nl=False)
    else:
        emit(output, data=data, table=table)


class _WatchPrinter:
    """kubectl's ``get -w``: everything once, then what changes (a table
    prints its header once; each change is a row, or a document)."""

    def __init__(self, *, output: str, kind: str) -> None:
        self._output = output
        self._kind = kind
        self._shown: dict[str, Any] = {}
        self._header = True

    def show(self, found: Listing) -> None:
        fresh = []
        for document in found:
            key = ResourceKey.of(document).path()
            if self._shown.get(key) != document:
                self._shown[key] = document
                fresh.append(document)
        if not fresh and not self._header:
            return
        if self._output == "table":
            lines = _table(self._kind, fresh).render().splitlines()
            click.echo("\n".join(lines if self._header else lines[1:]))
        else:
            for document in fresh:
                _print(self._output, document, lambda: _table(self._kind, []))
        self._header = False


def _age(document: dict[str, Any]) -> str:
    """kubectl's AGE: 45s, 12m, 3h, 2d."""
    created = (document.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return "-"
    try:
        moment = datetime.datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    except ValueError:
        return "-"
    seconds = max(0, int((datetime.datetime.now(datetime.UTC) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _table(kind: str, documents: list[dict[str, Any]]) -> Table:
    """The CRDs' printer columns."""
    if kind == "Secret":
        return Table(
            ("NAME", "TYPE", "DATA", "AGE"),
            [
                (
                    d["metadata"]["name"],
                    d.get("type", "Opaque"),
                    str(len(d.get("data", {}))),
                    _age(d),
                )
                for d in documents
            ],
        )
    if kind in ("ServingRuntime", "ClusterServingRuntime"):
        return Table(
            ("NAME", "DISABLED", "MODELTYPE", "CONTAINERS", "AGE"),
            [
                (
                    d["metadata"]["name"],
                    str(bool(d.get("spec", {}).get("disabled", False))).lower(),
                    ",".join(f["name"] for f in d.get("spec", {}).get("supportedModelFormats", [])),
                    ",".join(c["name"] for c in d.get("spec", {}).get("containers", [])) or "-",
                    _age(d),
                )
                for d in documents
            ],
        )
    rows = []
    for d in documents:
        status = d.get("status") or {}
        if kind == "Predictor":
            # v1alpha1 Predictor's columns: its flat status.
            model_type = (d.get("spec", {}).get("modelType") or {}).get("name", "-")
            second = (model_type, "True" if status.get("available") else "False")
            model = status
        else:
            # KServe's: .status.url, .status.conditions[?(@.type=='Ready')].status,
            # and ModelMesh's .status.modelStatus.
            ready = find_condition(status, READY) or {}
            second = (status.get("url") or "-", ready.get("status") or "Unknown")
            model_status = status.get("modelStatus") or {}
            model = {
                **(model_status.get("states") or {}),
                "transitionStatus": model_status.get("transitionStatus"),
            }
        rows.append(
            (
                d["metadata"]["name"],
                *second,
                model.get("activeModelState") or "-",
                model.get("targetModelState") or "-",
                model.get("transitionStatus") or "-",
                _age(d),
            )
        )
    second_header = ("TYPE", "AVAILABLE") if kind == "Predictor" else ("URL", "READY")
    return Table(("NAME", *second_header, "ACTIVEMODEL", "TARGETMODEL", "TRANSITION", "AGE"), rows)


@click.command()
@click.argument("kind")
@click.argument("name")
@click.option("-n", "--namespace", default="default", show_default=True)
@pass_resource_target
def describe(kind: str, name: str, namespace: str, target: ResourceTarget) -> None:
    """Show one resource as applied, its status, and the fields meshserve
    keeps but does not act on."""
    from meshserve.resources import load_documents

    resolved = _kind(kind)
    with target.open() as resources:
        found = resources.get(resolved, namespace=namespace, name=name)
    if not found:
        raise ServerError(f"NOT_FOUND: {resolved.lower()} '{name}' not found")
    (document,) = found
    if resolved == "Secret":
        # No status; the fields are checked without the (redacted) values.
        click.echo(yaml.safe_dump(document, sort_keys=False), nl=False)
        applied = {k: v for k, v in document.items() if k != "data"}
    else:
        status = document.get("status") or {}
        click.echo(yaml.safe_dump({**document, "status": status}, sort_keys=False), nl=False)
        applied = {k: v for k, v in document.items() if k != "status"}
    (resource,) = load_documents(yaml.safe_dump(applied))
    ignored = resource.ignored_fields()
    if ignored:
        click.echo("fields kept but not acted on:")
        for warning in ignored:
            click.echo(f"  - {warning}")


@click.command()
@click.argument("kind", required=False)
@click.argument("name", required=False)
@click.option("-f", "--filename", "file", type=click.Path(path_type=pathlib.Path), default=None)
@_namespace_option
@pass_resource_target
def delete(
    kind: str | None,
    name: str | None,
    file: pathlib.Path | None,
    namespace: str | None,
    target: ResourceTarget,
) -> None:
    """Delete KIND NAME, or every resource in a file (-f: the resources it
    names, as for apply; objects meshserve does not manage are skipped).
    Unknown names exit 1."""
    skipped: list[str] = []
    if file is not None:
        if kind is not None:
            raise click.UsageError("give KIND NAME, or -f FILE, not both")
        documents, skipped = _documents(file, namespace=namespace)
        keys = [ResourceKey.of(d) for d in documents]
    elif kind is not None and name is not None:
        keys = [ResourceKey.named(_kind(kind), namespace or "default", name)]
    else:
        raise click.UsageError("give KIND NAME, or -f FILE")
    with target.open() as resources:
        results = resources.delete(keys)
    missing = []
    for key, deleted in results:
        if deleted:
            click.echo(f"{key.kind.lower()}/{key.name} deleted")
        else:
            missing.append(key)
    for line in _skipped_lines(skipped):
        click.echo(line)
    if missing:
        names = ", ".join(f"{k.kind.lower()}/{k.name}" for k in missing)
        raise ServerError(f"NOT_FOUND: {names} not found")


def _kind(name: str) -> str:
    try:
        return kind_of(name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="KIND") from None
