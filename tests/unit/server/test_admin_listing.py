"""The admin API's streamed listings (StreamModels, StreamVModels,
StreamResources) over a real gRPC server, instance and SQLite store: the
same entries as the unary calls, in chunks under the message limit, from
one snapshot however the mesh changes while they are read."""

from __future__ import annotations

import contextlib
import json
import pathlib
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from meshserve.controller import ResourceStore
from meshserve.mesh import Instance
from meshserve.protocol._pb import meshserve_admin_pb2 as admin
from meshserve.protocol._pb import meshserve_admin_pb2_grpc as admin_grpc
from meshserve.registry import ModelRecord, Registry, VModelRecord
from meshserve.registry._records import encode_record
from meshserve.registry._registry import MODELS_PREFIX, VMODELS_PREFIX
from meshserve.server._chunks import MAX_CHUNK_BYTES, MAX_CHUNK_ITEMS, chunked
from meshserve.server._grpc_management import AdminService
from meshserve.settings import CacheSettings
from meshserve.store import PutOp, SqliteStore, Store
from tests.fakes import FakeRuntime

# More than two chunks' worth, so that the client reads while the server
# still has some to send.
COUNT = MAX_CHUNK_ITEMS * 2 + 500


def _isvc(name: str) -> bytes:
    document = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}}}},
    }
    return json.dumps(document).encode()


async def _seed(store: Store, *, names: list[str]) -> None:
    """Models, vmodels on them, and InferenceServices, one of each per name,
    written in three transactions (registering one by one is the slow path
    this does not test)."""
    await store.txn(
        (),
        [
            PutOp(MODELS_PREFIX + n, encode_record(ModelRecord(model_id=n, type="fake")))
            for n in names
        ],
    )
    await store.txn(
        (),
        [
            PutOp(
                VMODELS_PREFIX + f"v-{n}",
                encode_record(
                    VModelRecord(vmodel_id=f"v-{n}", active_model_id=n, target_model_id=n)
                ),
            )
            for n in names
        ],
    )
    await store.txn((), [PutOp(f"resources/InferenceService/default/{n}", _isvc(n)) for n in names])


@contextlib.asynccontextmanager
async def _admin(
    tmp_path: pathlib.Path, *, names: list[str]
) -> AsyncIterator[tuple[admin_grpc.AdminStub, Instance, ResourceStore]]:
    async with SqliteStore.open(tmp_path / "store.db") as store:
        await _seed(store, names=names)
        async with (
            Registry.open(store) as registry,
            Instance.open(
                instance_id="i-1",
                registry=registry,
                runtime=FakeRuntime(),
                settings=CacheSettings(),
            ) as instance,
        ):
            resources = ResourceStore(store)
            server = grpc.aio.server()
            admin_grpc.add_AdminServicer_to_server(
                AdminService(instance, resources=resources), server
            )
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            try:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    yield admin_grpc.AdminStub(channel), instance, resources
            finally:
                await server.stop(None)


def _names(count: int, *, prefix: str = "m") -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(count)]


async def test_streamed_listings_hold_what_the_unary_calls_do_in_chunks(
    tmp_path: pathlib.Path,
) -> None:
    names = _names(COUNT)
    async with _admin(tmp_path, names=names) as (stub, _, _):
        models = [r async for r in stub.StreamModels(admin.ListModelsRequest())]
        vmodels = [r async for r in stub.StreamVModels(admin.ListVModelsRequest())]
        request = admin.GetResourcesRequest(kind="isvc")
        resources = [r async for r in stub.StreamResources(request)]

        assert [len(r.models) for r in models] == [1000, 1000, 500]
        assert [m for r in models for m in r.models] == list(
            (await stub.ListModels(admin.ListModelsRequest())).models
        )
        assert [m.vModelIds for r in models for m in r.models][:2] == [["v-m-00000"], ["v-m-00001"]]
        assert [v.vModelId for r in vmodels for v in r.vModels] == [f"v-{n}" for n in names]
        documents = [d for r in resources for d in r.documents]
        assert documents == list((await stub.GetResources(request)).documents)
        assert [json.loads(d)["metadata"]["name"] for d in documents] == names
        assert all(r.ByteSize() <= MAX_CHUNK_BYTES for r in [*models, *vmodels, *resources])


async def test_a_listing_read_while_models_come_and_go_has_each_once_in_order(
    tmp_path: pathlib.Path,
) -> None:
    names = _names(COUNT)
    async with _admin(tmp_path, names=names) as (stub, instance, _):
        call = stub.StreamModels(admin.ListModelsRequest())
        first = await call.read()
        assert isinstance(first, admin.ListModelsResponse)
        # Before, inside and after what was read, and one that was listed goes.
        for added in ("a-new", "m-00000-new", "m-02000-new", "z-new"):
            await instance.register_model(added, type="fake", path="/x")
        await instance.delete_vmodel("v-m-02400")
        await instance.unregister_model("m-02400")
        rest = []
        while (reply := await call.read()) is not grpc.aio.EOF:
            rest.append(reply)

        listed = [m.modelId for r in [first, *rest] for m in r.models]
        assert listed == names  # the snapshot the call started with
        after = [
            m.modelId async for r in stub.StreamModels(admin.ListModelsRequest()) for m in r.models
        ]
        assert after == sorted(
            {*names, "a-new", "m-00000-new", "m-02000-new", "z-new"} - {"m-02400"}
        )


async def test_one_model_by_id(tmp_path: pathlib.Path) -> None:
    async with _admin(tmp_path, names=_names(3)) as (stub, _, _):
        one = await stub.ListModels(admin.ListModelsRequest(modelId="m-00001"))
        none = await stub.ListModels(admin.ListModelsRequest(modelId="absent"))
    assert [m.modelId for m in one.models] == ["m-00001"]
    assert [m.vModelIds for m in one.models] == [["v-m-00001"]]
    assert list(none.models) == []


async def test_a_bad_streamed_listing_ends_with_its_status(tmp_path: pathlib.Path) -> None:
    async with _admin(tmp_path, names=[]) as (stub, _, _):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            _ = [r async for r in stub.StreamResources(admin.GetResourcesRequest(kind="pods"))]
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "unknown kind 'pods'" in (refused.value.details() or "")
        assert [r async for r in stub.StreamModels(admin.ListModelsRequest())] == []


def test_chunks_keep_order_and_both_limits() -> None:
    sizes = [3, 3, 3, 10, 1, 1, 1, 1, 1]
    chunks = list(chunked(sizes, size_of=lambda n: n, max_bytes=7, max_items=3))
    assert chunks == [[3, 3], [3], [10], [1, 1, 1], [1, 1]]
    assert [n for chunk in chunks for n in chunk] == sizes
    assert list(chunked([], size_of=lambda n: n)) == []
