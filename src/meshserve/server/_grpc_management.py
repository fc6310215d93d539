"""ModelMesh's management API (``mmesh.ModelMesh``) and meshserve's admin
service, over an :class:`~meshserve.mesh.Instance`."""

from __future__ import annotations

import contextlib

import grpc.aio
import orjson

from meshserve.controller import CLUSTER, Applied, ResourceKey, ResourceStore
from meshserve.mesh import Instance, ModelStatus, VModelStatus
from meshserve.protocol._pb import meshserve_admin_pb2 as admin
from meshserve.protocol._pb import meshserve_admin_pb2_grpc as admin_grpc
from meshserve.protocol._pb import model_mesh_pb2 as mm
from meshserve.protocol._pb import model_mesh_pb2_grpc as mm_grpc
from meshserve.protocol.routing import routing_headers_from_grpc
from meshserve.protocol.status import reports_errors
from meshserve.security import may_see_model
from meshserve.server import _admin_resources
from meshserve.server._chunks import chunked

__all__ = ["AdminService", "ModelMeshService", "model_status_to_proto", "vmodel_status_to_proto"]

_Status = mm.ModelStatusInfo.ModelStatus
_VStatus = mm.VModelStatusInfo.VModelStatus


def model_status_to_proto(status: ModelStatus) -> mm.ModelStatusInfo:
    return mm.ModelStatusInfo(
        status=_Status.Value(status.state.value),
        errors=list(status.errors),
        modelCopyInfos=[
            mm.ModelStatusInfo.ModelCopyInfo(
                location=copy.location,
                copyStatus=_Status.Value(copy.state.value),
                time=copy.time_ms,
            )
            for copy in status.copies
        ],
    )


def vmodel_status_to_proto(status: VModelStatus) -> mm.VModelStatusInfo:
    message = mm.VModelStatusInfo(
        status=_VStatus.Value(status.state.value),
        activeModelId=status.active_model_id,
        targetModelId=status.target_model_id,
        owner=status.owner,
    )
    if status.active_status is not None:
        message.activeModelStatus.CopyFrom(model_status_to_proto(status.active_status))
    if status.target_status is not None:
        message.targetModelStatus.CopyFrom(model_status_to_proto(status.target_status))
    return message


class ModelMeshService(mm_grpc.ModelMeshServicer):
    """``internal``: served on the instance-to-instance port, where the hop
    headers (a placement's ``mm-dest``) are honoured."""

    def __init__(self, instance: Instance, *, internal: bool = False) -> None:
        self._instance = instance
        self._internal = internal

    @reports_errors
    async def registerModel(
        self, request: mm.RegisterModelRequest, context: grpc.aio.ServicerContext
    ) -> mm.ModelStatusInfo:
        info = request.modelInfo
        status = await self._instance.register_model(
            request.modelId,
            type=info.type,
            path=info.path,
            key=info.key,
            load_now=request.loadNow,
            sync=request.sync,
            last_used_ms=request.lastUsedTime,
        )
        return model_status_to_proto(status)

    @reports_errors
    async def unregisterModel(
        self, request: mm.UnregisterModelRequest, context: grpc.aio.ServicerContext
    ) -> mm.UnregisterModelResponse:
        await self._instance.unregister_model(request.modelId)
        return mm.UnregisterModelResponse()

    @reports_errors
    async def getModelStatus(
        self, request: mm.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> mm.ModelStatusInfo:
        return model_status_to_proto(self._instance.model_status(request.modelId))

    @reports_errors
    async def ensureLoaded(
        self, request: mm.EnsureLoadedRequest, context: grpc.aio.ServicerContext
    ) -> mm.ModelStatusInfo:
        status = await self._instance.ensure_loaded(
            request.modelId,
            last_used_ms=request.lastUsedTime,
            sync=request.sync,
            headers=routing_headers_from_grpc(
                context.invocation_metadata(), internal=self._internal
            ),
        )
        return model_status_to_proto(status)

    @reports_errors
    async def setVModel(
        self, request: mm.SetVModelRequest, context: grpc.aio.ServicerContext
    ) -> mm.VModelStatusInfo:
        info = request.modelInfo if request.HasField("modelInfo") else None
        status = await self._instance.set_vmodel(
            request.vModelId,
            target_model_id=request.targetModelId,
            owner=request.owner,
            update_only=request.updateOnly,
            model_type=info.type if info is not None else "",
            model_path=info.path if info is not None else "",
            model_key=info.key if info is not None else "",
            auto_delete_target=request.autoDeleteTargetModel,
            load_now=request.loadNow,
            force=request.force,
            sync=request.sync,
            expected_target_model_id=request.expectedTargetModelId,
        )
        return vmodel_status_to_proto(status)

    @reports_errors
    async def deleteVModel(
        self, request: mm.DeleteVModelRequest, context: grpc.aio.ServicerContext
    ) -> mm.DeleteVModelResponse:
        await self._instance.delete_vmodel(request.vModelId, owner=request.owner)
        return mm.DeleteVModelResponse()

    @reports_errors
    async def getVModelStatus(
        self, request: mm.GetVModelStatusRequest, context: grpc.aio.ServicerContext
    ) -> mm.VModelStatusInfo:
        return vmodel_status_to_proto(
            self._instance.vmodel_status(request.vModelId, owner=request.owner)
        )


class AdminService(admin_grpc.AdminServicer):
    """meshserve's admin API: listings of the instance's models and vmodels,
    and the mesh's resources (``resources`` seals the Secrets applied)."""

    def __init__(self, instance: Instance, *, resources: ResourceStore) -> None:
        self._instance = instance
        self._resources = resources

    def _model_summaries(self, request: admin.ListModelsRequest) -> list[admin.ModelSummary]:
        return [
            admin.ModelSummary(
                modelId=m.model_id,
                type=m.type,
                path=m.path,
                status=m.status.state.value,
                errors=list(m.status.errors),
                sizeBytes=m.size_bytes,
                lastUsedTime=max(m.last_used_ms, 0),
                copies=m.copies,
                loadCount=m.load_count,
                evictionCount=m.eviction_count,
                lastLoadMillis=m.last_load_ms,
                autoDelete=m.auto_delete,
                vModelIds=list(m.vmodels),
                pullMillis=m.pull_ms,
                pullBytes=m.pull_bytes,
                pullTotalBytes=m.pull_total_bytes,
                pulledFromCache=m.pulled_from_cache,
            )
            for m in self._instance.list_models(only=request.modelId or None)
            if _visible(m.model_id)
        ]

    def _vmodel_summaries(self) -> list[admin.VModelSummary]:
        return [
            admin.VModelSummary(
                vModelId=name,
                status=status.state.value,
                activeModelId=status.active_model_id,
                targetModelId=status.target_model_id,
                owner=status.owner,
            )
            for name, status in self._instance.list_vmodels()
            if _visible(name)
        ]

    async def _documents(self, request: admin.GetResourcesRequest) -> list[str]:
        documents = await _admin_resources.get_resources(
            self._resources, kind=request.kind, namespace=request.namespace, name=request.name
        )
        return [orjson.dumps(document).decode() for document in documents]

    @reports_errors
    async def ListModels(
        self, request: admin.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> admin.ListModelsResponse:
        return admin.ListModelsResponse(models=self._model_summaries(request))

    @reports_errors
    async def StreamModels(
        self, request: admin.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> None:
        # Written through the context (as WatchResources), so that
        # reports_errors can end the call with the mapped status.
        for chunk in chunked(self._model_summaries(request), size_of=_message_size):
            await context.write(admin.ListModelsResponse(models=chunk))

    @reports_errors
    async def ListVModels(
        self, request: admin.ListVModelsRequest, context: grpc.aio.ServicerContext
    ) -> admin.ListVModelsResponse:
        return admin.ListVModelsResponse(vModels=self._vmodel_summaries())

    @reports_errors
    async def StreamVModels(
        self, request: admin.ListVModelsRequest, context: grpc.aio.ServicerContext
    ) -> None:
        for chunk in chunked(self._vmodel_summaries(), size_of=_message_size):
            await context.write(admin.ListVModelsResponse(vModels=chunk))

    @reports_errors
    async def ApplyResources(
        self, request: admin.ApplyResourcesRequest, context: grpc.aio.ServicerContext
    ) -> admin.ApplyResourcesResponse:
        applied = await _admin_resources.apply_resources(self._resources, request.documents)
        return admin.ApplyResourcesResponse(
            applied=[
                admin.AppliedResource(
                    ref=_ref(key),
                    created=outcome is Applied.CREATED,
                    unchanged=outcome is Applied.UNCHANGED,
                )
                for key, outcome in applied
            ]
        )

    @reports_errors
    async def GetResources(
        self, request: admin.GetResourcesRequest, context: grpc.aio.ServicerContext
    ) -> admin.GetResourcesResponse:
        return admin.GetResourcesResponse(documents=await self._documents(request))

    @reports_errors
    async def StreamResources(
        self, request: admin.GetResourcesRequest, context: grpc.aio.ServicerContext
    ) -> None:
        for chunk in chunked(await self._documents(request), size_of=len):
            await context.write(admin.GetResourcesResponse(documents=chunk))

    @reports_errors
    async def WatchResources(
        self, request: admin.GetResourcesRequest, context: grpc.aio.ServicerContext
    ) -> None:
        # Written through the context, so that this stays a coroutine that
        # reports_errors can end with the mapped status.
        listings = _admin_resources.watch_resources(
            self._resources, kind=request.kind, namespace=request.namespace, name=request.name
        )
        # aclosing: a caller that goes away stops the store watches at once.
        async with contextlib.aclosing(listings):
            async for documents in listings:
                await context.write(
                    admin.GetResourcesResponse(
                        documents=[orjson.dumps(d).decode() for d in documents]
                    )
                )

    @reports_errors
    async def DeleteResources(
        self, request: admin.DeleteResourcesRequest, context: grpc.aio.ServicerContext
    ) -> admin.DeleteResourcesResponse:
        keys = [
            _admin_resources.resource_key(ref.kind, ref.namespace, ref.name) for ref in request.refs
        ]
        deleted = await _admin_resources.delete_resources(self._resources, keys)
        return admin.DeleteResourcesResponse(
            results=[admin.DeletedResource(ref=_ref(key), deleted=done) for key, done in deleted]
        )


def _ref(key: ResourceKey) -> admin.ResourceRef:
    namespace = "" if key.namespace == CLUSTER else key.namespace
    return admin.ResourceRef(kind=key.kind, namespace=namespace, name=key.name)


def _message_size(message: admin.ModelSummary | admin.VModelSummary) -> int:
    return int(message.ByteSize())


def _visible(name: str) -> bool:
    """Whether the caller may see ``name`` in a listing (everything, when
    authentication is off)."""
    return may_see_model(name)
