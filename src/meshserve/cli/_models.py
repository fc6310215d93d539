"""``meshserve models``: ModelMesh's model management calls, and the list."""

from __future__ import annotations

import os
import threading

import click
import grpc

from meshserve.cli._client import Connection, ServerError, client_command, pass_connection
from meshserve.cli._namespaces import in_listing, in_namespace, namespace_option
from meshserve.cli._output import Table, age, emit, output_option, proto_json, size
from meshserve.errors import MeshServeError
from meshserve.protocol._pb import meshserve_admin_pb2 as admin
from meshserve.protocol._pb import model_mesh_pb2 as mm

__all__ = ["check_model_status", "copies_cell", "models"]

MODEL_TYPES = ("sklearn", "xgboost", "lightgbm", "onnx")

_Status = mm.ModelStatusInfo.ModelStatus


@click.group()
def models() -> None:
    """Register, inspect, load and unregister models on an instance."""


def check_model_status(name: str, reply: mm.ModelStatusInfo, *, sync: bool) -> None:
    """Exit 1 for an answer that means failure: the model does not exist, or
    a load waited for (``sync``) failed."""
    if reply.status == _Status.NOT_FOUND:
        raise ServerError(f"NOT_FOUND: model '{name}' is not registered")
    if sync and reply.status == _Status.LOADING_FAILED:
        raise ServerError(f"LOADING_FAILED: model '{name}': {'; '.join(reply.errors)}")


def copies_cell(reply: mm.ModelStatusInfo) -> str:
    copies = [f"{c.location}({_Status.Name(c.copyStatus)})" for c in reply.modelCopyInfos]
    return ",".join(copies) or "-"


def _show_status(
    name: str,
    reply: mm.ModelStatusInfo,
    *,
    output: str,
    sync: bool,
    summary: admin.ModelSummary | None = None,
) -> None:
    check_model_status(name, reply, sync=sync)
    data = {"modelId": name, **proto_json(reply)}
    headers: tuple[str, ...] = ("MODEL", "STATUS", "COPIES", "ERRORS")
    row: tuple[str, ...] = (
        name,
        _Status.Name(reply.status),
        copies_cell(reply),
        "; ".join(reply.errors) or "-",
    )
    if summary is not None:
        # meshserve's own field beside the mmesh ones: the last pull from storage.
        data["pull"] = {
            "millis": summary.pullMillis,
            "bytes": summary.pullBytes,
            "totalBytes": summary.pullTotalBytes,
            "fromCache": summary.pulledFromCache,
        }
        headers, row = (*headers, "PULL"), (*row, _pull_cell(summary))
    emit(output, data=data, table=lambda: Table(headers, [row]))


def _parameters(values: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{value!r}: expected NAME=VALUE", param_hint="--param")
        params[name] = text
    return params


def model_location(
    *,
    model_type: str,
    path: str | None,
    uri: str | None,
    storage_key: str | None,
    params: dict[str, str],
) -> tuple[str, str]:
    """The registration's path and model key (ModelMesh's JSON: storage key
    and parameters, never a credential) for the flags given."""
    # Imported here: storage brings the providers' and settings' imports,
    # which `models list` and the other client commands do without.
    from meshserve.storage import build_model_key, is_storage_uri, parse_storage_uri

    if uri is not None and (path is not None or storage_key is not None):
        raise click.UsageError("give either --uri, or --path (with --storage-key for a store)")
    if uri is None and path is None:
        raise click.UsageError(
            "give --path (a local file, or a path in --storage-key's store) or --uri"
        )
    try:
        if uri is not None:
            ref = parse_storage_uri(uri)
            key = build_model_key(model_type=model_type, storage_params={**ref.params, **params})
            return ref.path, key
        assert path is not None
        if storage_key is None and not params:
            # A local file: the instance (on this machine) loads it as it is.
            return (path if is_storage_uri(path) else os.path.abspath(path)), ""
        key = build_model_key(model_type=model_type, storage_key=storage_key, storage_params=params)
    except MeshServeError as exc:
        raise click.BadParameter(str(exc)) from None
    return path, key


@client_command(models)
@click.argument("name")
@click.option("--type", "model_type", required=True, type=click.Choice(MODEL_TYPES))
@click.option(
    "--path",
    default=None,
    help="Local model file or directory (made absolute), or the path inside --storage-key's store.",
)
@click.option("--uri", default=None, help="s3://, gs://, pvc://, https:// URI of the model.")
@click.option("--storage-key", default=None, help="Storage-config key of the store holding --path.")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Storage parameter (bucket, sha256, ...) overriding the key's; repeatable.",
)
@click.option("--load-now", is_flag=True, help="Start loading it now.")
@click.option("--sync", is_flag=True, help="With --load-now: answer when the load has finished.")
@namespace_option
@output_option
@pass_connection
def register(
    conn: Connection,
    name: str,
    namespace: str | None,
    model_type: str,
    path: str | None,
    uri: str | None,
    storage_key: str | None,
    params: tuple[str, ...],
    load_now: bool,
    sync: bool,
    output: str,
) -> None:
    """Register model NAME (registerModel): a local file, or one in a store
    (--uri, or --storage-key with --path). Registering it again with the same
    type, path and key succeeds; with others it is ALREADY_EXISTS."""
    name = in_namespace(name, namespace)
    model_path, key = model_location(
        model_type=model_type,
        path=path,
        uri=uri,
        storage_key=storage_key,
        params=_parameters(params),
    )
    request = mm.RegisterModelRequest(
        modelId=name,
        modelInfo=mm.ModelInfo(type=model_type, path=model_path, key=key),
        loadNow=load_now,
        sync=sync,
    )
    if load_now and sync and key:
        with _PullWatcher(conn, name):
            reply = conn.call(conn.mm.registerModel, request)
    else:
        reply = conn.call(conn.mm.registerModel, request)
    _show_status(name, reply, output=output, sync=sync and load_now)


@client_command(models)
@click.argument("name")
@namespace_option
@output_option
@pass_connection
def status(conn: Connection, name: str, namespace: str | None, output: str) -> None:
    """Show the status of model NAME (getModelStatus); exit 1 if it is not
    registered. NAME may be an InferenceService's (or Predictor's): its
    vmodel's model is shown (`vmodels status NAME` shows the vmodel)."""
    name = in_namespace(name, namespace)
    reply = conn.call(conn.mm.getModelStatus, mm.GetStatusRequest(modelId=name))
    if reply.status == _Status.NOT_FOUND:
        name, reply = _model_of_vmodel(conn, name, reply)
    listed = conn.call(conn.admin.ListModels, admin.ListModelsRequest(modelId=name))
    summary = next((m for m in listed.models if m.modelId == name), None)
    _show_status(name, reply, output=output, sync=False, summary=summary)


def _model_of_vmodel(
    conn: Connection, name: str, reply: mm.ModelStatusInfo
) -> tuple[str, mm.ModelStatusInfo]:
    """For a NAME that is no model: the model of the vmodel NAME (what an
    InferenceService or Predictor is served as), said on stderr; else NAME
    and its NOT_FOUND as they are."""
    vmodel = conn.call(conn.mm.getVModelStatus, mm.GetVModelStatusRequest(vModelId=name))
    if vmodel.status == mm.VModelStatusInfo.VModelStatus.NOT_FOUND:
        return name, reply
    model = vmodel.activeModelId or vmodel.targetModelId
    if not model:
        raise ServerError(
            f"NOT_FOUND: '{name}' is a vmodel with no model yet; see `meshserve vmodels status "
            f"{name}`"
        )
    click.echo(
        f"{name} is a vmodel (an InferenceService or Predictor); its model is {model} "
        f"(`meshserve vmodels status {name}` shows the vmodel)",
        err=True,
    )
    return model, conn.call(conn.mm.getModelStatus, mm.GetStatusRequest(modelId=model))


@client_command(models)
@click.argument("name")
@click.option("--sync", is_flag=True, help="Answer when the load has finished.")
@namespace_option
@output_option
@pass_connection
def ensure_loaded(
    conn: Connection, name: str, sync: bool, namespace: str | None, output: str
) -> None:
    """Load model NAME unless a copy is loaded (ensureLoaded); exit 1 if it
    is not registered, or if --sync and the load failed."""
    name = in_namespace(name, namespace)
    reply = conn.call(conn.mm.ensureLoaded, mm.EnsureLoadedRequest(modelId=name, sync=sync))
    _show_status(name, reply, output=output, sync=sync)


@client_command(models)
@click.argument("name")
@namespace_option
@pass_connection
def unregister(conn: Connection, name: str, namespace: str | None) -> None:
    """Unregister model NAME (unregisterModel). Unknown names succeed (there
    is nothing to do); a model a vmodel uses is FAILED_PRECONDITION."""
    name = in_namespace(name, namespace)
    conn.call(conn.mm.unregisterModel, mm.UnregisterModelRequest(modelId=name))
    click.echo(f"unregistered {name}")


@client_command(models, "list")
@namespace_option
@output_option
@pass_connection
def list_models(conn: Connection, namespace: str | None, output: str) -> None:
    """List registered models, their state and the mesh's view of them
    (Admin.ListModels): the same from every instance of a mesh.

    \b
    COPIES     loaded copies in the mesh
    SIZE       the size of a loaded copy
    LAST-USED  the last request anywhere in the mesh, to within about a
               minute ('-': never requested)
    PULL       this instance's last pull from storage
    The JSON adds this instance's own counters (loadCount, evictionCount,
    lastLoadMillis). -n: only the models of that namespace."""
    replies = conn.listing(
        conn.admin.StreamModels, conn.admin.ListModels, admin.ListModelsRequest()
    )
    reply = admin.ListModelsResponse(
        models=[m for r in replies for m in r.models if in_listing(m.modelId, namespace)]
    )
    emit(
        output,
        data=proto_json(reply),
        table=lambda: Table(
            (
                "MODEL",
                "TYPE",
                "STATUS",
                "COPIES",
                "SIZE",
                "LAST-USED",
                "PULL",
                "VMODELS",
            ),
            [
                (
                    m.modelId,
                    m.type,
                    m.status,
                    str(m.copies),
                    size(m.sizeBytes),
                    age(m.lastUsedTime),
                    _pull_cell(m),
                    ",".join(m.vModelIds) or "-",
                )
                for m in reply.models
            ],
        ),
    )


def _pull_cell(model: admin.ModelSummary) -> str:
    """The last pull from storage: bytes and time, or progress while it runs."""
    if not model.pullBytes:
        return "-"
    if model.status == "LOADING" and not model.pullMillis:
        total = f"/{size(model.pullTotalBytes)}" if model.pullTotalBytes else ""
        return f"{size(model.pullBytes)}{total}..."
    cached = " (cache)" if model.pulledFromCache else ""
    return f"{size(model.pullBytes)} in {model.pullMillis} ms{cached}"


class _PullWatcher:
    """While a synchronous load waits, report its pull from storage on stderr:
    progress as it moves (ListModels every half second), then what it took."""

    _INTERVAL_S = 0.5

    def __init__(self, conn: Connection, name: str) -> None:
        self._conn = conn
        self._name = name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._shown = 0

    def __enter__(self) -> None:
        self._thread.start()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        model = self._summary()
        if model is not None and model.pullMillis:
            cached = " (from the artifact cache)" if model.pulledFromCache else ""
            click.echo(
                f"pulled {self._name}: {size(model.pullBytes)} in {model.pullMillis} ms{cached}",
                err=True,
            )

    def _summary(self) -> admin.ModelSummary | None:
        try:
            reply = self._conn.admin.ListModels(
                admin.ListModelsRequest(modelId=self._name),
                timeout=5,
                metadata=self._conn.auth_metadata or None,
            )
        except grpc.RpcError:
            return None
        return next((m for m in reply.models if m.modelId == self._name), None)

    def _watch(self) -> None:
        while not self._stop.wait(self._INTERVAL_S):
            model = self._summary()
            if model is None or model.pullMillis or model.pullBytes <= self._shown:
                continue
            self._shown = model.pullBytes
            total = f" of {size(model.pullTotalBytes)}" if model.pullTotalBytes else ""
            click.echo(f"pulling {self._name}: {size(model.pullBytes)}{total}", err=True)
