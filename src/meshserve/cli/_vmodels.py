"""``meshserve vmodels``: ModelMesh's virtual models (stable names whose
target model can be swapped without downtime)."""

from __future__ import annotations

import os

import click

from meshserve.cli._client import Connection, ServerError, client_command, pass_connection
from meshserve.cli._models import MODEL_TYPES, check_model_status
from meshserve.cli._namespaces import in_listing, in_namespace, namespace_option
from meshserve.cli._output import Table, emit, output_option, proto_json
from meshserve.protocol._pb import meshserve_admin_pb2 as admin
from meshserve.protocol._pb import model_mesh_pb2 as mm

__all__ = ["vmodels"]

_VStatus = mm.VModelStatusInfo.VModelStatus
_Status = mm.ModelStatusInfo.ModelStatus

_owner_option = click.option(
    "--owner", default="", help="Only a vmodel with this owner (empty: any owner)."
)


@click.group()
def vmodels() -> None:
    """Create, retarget, inspect and delete vmodels on an instance."""


def _model_status_cell(reply: mm.VModelStatusInfo, field: str) -> str:
    return _Status.Name(getattr(reply, field).status) if reply.HasField(field) else "-"


def _show_status(
    vname: str, reply: mm.VModelStatusInfo, *, owner: str, output: str, sync: bool
) -> None:
    if reply.status == _VStatus.NOT_FOUND:
        whose = f" with owner '{owner}'" if owner else ""
        raise ServerError(f"NOT_FOUND: vmodel '{vname}'{whose} does not exist")
    if sync and reply.status == _VStatus.TRANSITION_FAILED:
        errors = "; ".join(reply.targetModelStatus.errors)
        raise ServerError(f"TRANSITION_FAILED: vmodel '{vname}': {errors}")
    if sync and reply.HasField("activeModelStatus"):
        check_model_status(reply.activeModelId, reply.activeModelStatus, sync=True)
    emit(
        output,
        data={"vModelId": vname, **proto_json(reply)},
        table=lambda: Table(
            ("VMODEL", "STATUS", "ACTIVE", "ACTIVE-STATUS", "TARGET", "TARGET-STATUS", "OWNER"),
            [
                (
                    vname,
                    _VStatus.Name(reply.status),
                    reply.activeModelId,
                    _model_status_cell(reply, "activeModelStatus"),
                    reply.targetModelId,
                    _model_status_cell(reply, "targetModelStatus"),
                    reply.owner or "-",
                )
            ],
        ),
    )


@client_command(vmodels, "set")
@click.argument("vname")
@click.option("--target", required=True, metavar="MODEL", help="The model it should serve.")
@click.option(
    "--type",
    "model_type",
    type=click.Choice(MODEL_TYPES),
    default=None,
    help="With --path: register the target too; it is deleted when no vmodel uses it.",
)
@click.option("--path", default=None, help="With --type: the target's file or directory.")
@_owner_option
@click.option("--load-now", is_flag=True, help="Load the target now.")
@click.option("--force", is_flag=True, help="Switch to the target at once, loaded or not.")
@click.option("--sync", is_flag=True, help="Answer when the transition has finished.")
@click.option(
    "--expected-target", default="", metavar="MODEL", help="Fail unless this is the target now."
)
@click.option("--update-only", is_flag=True, help="Fail if the vmodel does not exist.")
@namespace_option
@output_option
@pass_connection
def set_vmodel(
    conn: Connection,
    vname: str,
    namespace: str | None,
    target: str,
    model_type: str | None,
    path: str | None,
    owner: str,
    load_now: bool,
    force: bool,
    sync: bool,
    expected_target: str,
    update_only: bool,
    output: str,
) -> None:
    """Create vmodel VNAME or point it at --target (setVModel). Until the
    target is loaded the vmodel keeps serving its active model. With -n,
    VNAME, --target and --expected-target are ids of that namespace."""
    vname, target = in_namespace(vname, namespace), in_namespace(target, namespace)
    expected_target = in_namespace(expected_target, namespace)
    if (model_type is None) != (path is None):
        raise click.UsageError("--type and --path go together")
    request = mm.SetVModelRequest(
        vModelId=vname,
        targetModelId=target,
        owner=owner,
        updateOnly=update_only,
        loadNow=load_now,
        force=force,
        sync=sync,
        expectedTargetModelId=expected_target,
    )
    if model_type is not None and path is not None:
        request.modelInfo.CopyFrom(mm.ModelInfo(type=model_type, path=os.path.abspath(path)))
        request.autoDeleteTargetModel = True
    reply = conn.call(conn.mm.setVModel, request)
    _show_status(vname, reply, owner=owner, output=output, sync=sync)


@client_command(vmodels)
@click.argument("vname")
@_owner_option
@namespace_option
@output_option
@pass_connection
def status(conn: Connection, vname: str, owner: str, namespace: str | None, output: str) -> None:
    """Show the status of vmodel VNAME (getVModelStatus); exit 1 if it does
    not exist (or has another owner than --owner)."""
    vname = in_namespace(vname, namespace)
    reply = conn.call(
        conn.mm.getVModelStatus, mm.GetVModelStatusRequest(vModelId=vname, owner=owner)
    )
    _show_status(vname, reply, owner=owner, output=output, sync=False)


@client_command(vmodels)
@click.argument("vname")
@_owner_option
@namespace_option
@pass_connection
def delete(conn: Connection, vname: str, owner: str, namespace: str | None) -> None:
    """Delete vmodel VNAME (deleteVModel). Unknown names succeed; another
    owner than --owner is FAILED_PRECONDITION."""
    vname = in_namespace(vname, namespace)
    conn.call(conn.mm.deleteVModel, mm.DeleteVModelRequest(vModelId=vname, owner=owner))
    click.echo(f"deleted {vname}")


@client_command(vmodels, "list")
@namespace_option
@output_option
@pass_connection
def list_vmodels(conn: Connection, namespace: str | None, output: str) -> None:
    """List vmodels and their active and target models (Admin.ListVModels);
    -n: only those of that namespace."""
    replies = conn.listing(
        conn.admin.StreamVModels, conn.admin.ListVModels, admin.ListVModelsRequest()
    )
    reply = admin.ListVModelsResponse(
        vModels=[v for r in replies for v in r.vModels if in_listing(v.vModelId, namespace)]
    )
    emit(
        output,
        data=proto_json(reply),
        table=lambda: Table(
            ("VMODEL", "STATUS", "ACTIVE", "TARGET", "OWNER"),
            [
                (v.vModelId, v.status, v.activeModelId, v.targetModelId, v.owner or "-")
                for v in reply.vModels
            ],
        ),
    )
