"""``meshserve models``: ModelMesh's model management calls, and the list."""

from __future__ import annotations

import os

import click

from meshserve.cli._client import Connection, ServerError, client_command, pass_connection
from meshserve.cli._output import Table, age, emit, output_option, proto_json, size
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


def _show_status(name: str, reply: mm.ModelStatusInfo, *, output: str, sync: bool) -> None:
    check_model_status(name, reply, sync=sync)
    emit(
        output,
        data={"modelId": name, **proto_json(reply)},
        table=lambda: Table(
            ("MODEL", "STATUS", "COPIES", "ERRORS"),
            [
                (
                    name,
                    _Status.Name(reply.status),
                    copies_cell(reply),
                    "; ".join(reply.errors) or "-",
                )
            ],
        ),
    )


@client_command(models)
@click.argument("name")
@click.option("--type", "model_type", required=True, type=click.Choice(MODEL_TYPES))
@click.option("--path", required=True, help="Model file or directory (made absolute).")
@click.option("--key", default="", help="Storage key (ModelInfo.key).")
@click.option("--load-now", is_flag=True, help="Start loading it now.")
@click.option("--sync", is_flag=True, help="With --load-now: answer when the load has finished.")
@output_option
@pass_connection
def register(
    conn: Connection,
    name: str,
    model_type: str,
    path: str,
    key: str,
    load_now: bool,
    sync: bool,
    output: str,
) -> None:
    """Register model NAME (registerModel). Registering it again with the
    same type, path and key succeeds; with others it is ALREADY_EXISTS."""
    request = mm.RegisterModelRequest(
        modelId=name,
        modelInfo=mm.ModelInfo(type=model_type, path=os.path.abspath(path), key=key),
        loadNow=load_now,
        sync=sync,
    )
    reply = conn.call(conn.mm.registerModel, request)
    _show_status(name, reply, output=output, sync=sync and load_now)


@client_command(models)
@click.argument("name")
@output_option
@pass_connection
def status(conn: Connection, name: str, output: str) -> None:
    """Show the status of model NAME (getModelStatus); exit 1 if it is not
    registered."""
    reply = conn.call(conn.mm.getModelStatus, mm.GetStatusRequest(modelId=name))
    _show_status(name, reply, output=output, sync=False)


@client_command(models)
@click.argument("name")
@click.option("--sync", is_flag=True, help="Answer when the load has finished.")
@output_option
@pass_connection
def ensure_loaded(conn: Connection, name: str, sync: bool, output: str) -> None:
    """Load model NAME unless a copy is loaded (ensureLoaded); exit 1 if it
    is not registered, or if --sync and the load failed."""
    reply = conn.call(conn.mm.ensureLoaded, mm.EnsureLoadedRequest(modelId=name, sync=sync))
    _show_status(name, reply, output=output, sync=sync)


@client_command(models)
@click.argument("name")
@pass_connection
def unregister(conn: Connection, name: str) -> None:
    """Unregister model NAME (unregisterModel). Unknown names succeed (there
    is nothing to do); a model a vmodel uses is FAILED_PRECONDITION."""
    conn.call(conn.mm.unregisterModel, mm.UnregisterModelRequest(modelId=name))
    click.echo(f"unregistered {name}")


@client_command(models, "list")
@output_option
@pass_connection
def list_models(conn: Connection, output: str) -> None:
    """List registered models, their state and cache counters (Admin.ListModels)."""
    reply = conn.call(conn.admin.ListModels, admin.ListModelsRequest())
    emit(
        output,
        data=proto_json(reply),
        table=lambda: Table(
            ("MODEL", "TYPE", "STATUS", "SIZE", "LOADS", "EVICTIONS", "LAST-USED", "VMODELS"),
            [
                (
                    m.modelId,
                    m.type,
                    m.status,
                    size(m.sizeBytes),
                    str(m.loadCount),
                    str(m.evictionCount),
                    age(m.lastUsedTime),
                    ",".join(m.vModelIds) or "-",
                )
                for m in reply.models
            ],
        ),
    )
