"""The admin API's resource calls (server._admin_resources) over a real
sqlite store: apply's bookkeeping, validation before any write, server-side
sealing, and the per-namespace checks with their counted refusals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from meshserve import errors
from meshserve.controller import Applied, ResourceKey, ResourceStore
from meshserve.resources import SEALED_DATA_FIELD
from meshserve.security import (
    Principal,
    Role,
    SealingKey,
    acting_as,
    check_action,
    may_see_namespace,
)
from meshserve.server._admin_resources import (
    apply_resources,
    delete_resources,
    get_resources,
    resource_key,
    watch_resources,
)
from meshserve.settings import StorageSettings
from meshserve.storage import LocalRoots
from meshserve.store import SqliteStore

SECRET_VALUE = "a-credential-that-must-not-leak"


def _isvc(name: str, *, namespace: str = "default", uri: str = "pvc://c/m.skops") -> str:
    return json.dumps(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "annotations": {"serving.kserve.io/deploymentMode": "ModelMesh"},
            },
            "spec": {
                "predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri}}
            },
        }
    )


def _secret(namespace: str = "default") -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "storage-config", "namespace": namespace},
            "stringData": {"s3": SECRET_VALUE},
        }
    )


def _cluster_runtime(name: str = "shared-rt") -> str:
    return json.dumps(
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "ClusterServingRuntime",
            "metadata": {"name": name},
            "spec": {
                "multiModel": True,
                "supportedModelFormats": [{"name": "sklearn"}],
                "containers": [{"name": "server", "image": "example.test/srv:1"}],
            },
        }
    )


@pytest.fixture
async def store(tmp_path: pathlib.Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore.open(tmp_path / "store.db") as opened:
        yield opened


@pytest.fixture
def resources(store: SqliteStore) -> ResourceStore:
    return ResourceStore(store, sealing_key=SealingKey.generate())


async def _stored(store: SqliteStore) -> bytes:
    result = await store.range("")
    return b"".join(kv.key.encode() + kv.value for kv in result.kvs)


@contextmanager
def _as(role: Role, *namespaces: str) -> Iterator[list[tuple[str, str]]]:
    denials: list[tuple[str, str]] = []
    principal = Principal(name="caller", role=role, namespaces=namespaces)
    with acting_as(principal, method="/m", on_denied=lambda k, m: denials.append((k, m))):
        yield denials


# -- apply's bookkeeping ------------------------------------------------------------


async def test_apply_creates_then_configures_and_bumps_the_generation_on_spec_changes(
    resources: ResourceStore,
) -> None:
    key = ResourceKey("InferenceService", "default", "a")
    assert await apply_resources(resources, [_isvc("a")]) == [(key, Applied.CREATED)]
    first = await resources.get(key)
    assert first is not None
    assert first["metadata"]["generation"] == 1

    assert await apply_resources(resources, [_isvc("a")]) == [(key, Applied.UNCHANGED)]
    same = await resources.get(key)
    assert same is not None
    assert same["metadata"] == first["metadata"]

    labelled: dict[str, Any] = json.loads(_isvc("a"))
    labelled["metadata"]["labels"] = {"team": "x"}
    assert await apply_resources(resources, [json.dumps(labelled)]) == [(key, Applied.CONFIGURED)]
    relabelled = await resources.get(key)
    assert relabelled is not None
    assert relabelled["metadata"]["generation"] == 1  # the spec did not change

    await apply_resources(resources, [_isvc("a", uri="pvc://c/other.skops")])
    changed = await resources.get(key)
    assert changed is not None
    assert changed["metadata"]["generation"] == 2
    for field in ("uid", "creationTimestamp"):
        assert changed["metadata"][field] == first["metadata"][field]


async def test_apply_leaves_the_callers_document_as_it_was(resources: ResourceStore) -> None:
    document: dict[str, Any] = json.loads(_isvc("a"))
    await resources.apply(document)
    assert "generation" not in document["metadata"]


async def test_one_invalid_document_is_named_and_nothing_is_written(
    resources: ResourceStore, store: SqliteStore
) -> None:
    bad = json.loads(_isvc("broken"))
    bad["spec"]["predictor"]["model"]["modelFormat"] = "sklearn"
    with pytest.raises(errors.InvalidResourceError) as raised:
        await apply_resources(resources, [_isvc("fine"), json.dumps(bad)])
    assert raised.value.document == 1
    assert "inferenceservice/broken" in str(raised.value)
    assert "spec.predictor.model.modelFormat" in str(raised.value)
    with pytest.raises(errors.InvalidResourceError, match=r"document 0.*not valid JSON"):
        await apply_resources(resources, ["{not json"])
    assert await _stored(store) == b""


async def test_secrets_are_sealed_by_the_server(
    resources: ResourceStore, store: SqliteStore
) -> None:
    await apply_resources(resources, [_secret()])
    assert SECRET_VALUE.encode() not in await _stored(store)
    (shown,) = await get_resources(resources, kind="secret", namespace="default", name="")
    assert SEALED_DATA_FIELD not in shown
    assert shown["data"] == {"s3": f"<sealed, {len(SECRET_VALUE)} bytes>"}


async def test_without_a_sealing_key_a_secret_is_a_failed_precondition(
    store: SqliteStore,
) -> None:
    keyless = ResourceStore(store)
    with pytest.raises(errors.PreconditionFailedError, match="secret/storage-config") as raised:
        await apply_resources(keyless, [_isvc("with-it"), _secret()])
    assert "no sealing key" in str(raised.value)
    assert SECRET_VALUE not in str(raised.value)
    assert await _stored(store) == b""


# -- get --------------------------------------------------------------------------


async def test_get_merges_status_and_lists_the_shipped_cluster_runtimes(
    resources: ResourceStore,
) -> None:
    await apply_resources(resources, [_isvc("b"), _isvc("a"), _isvc("c", namespace="team-a")])
    key = ResourceKey("InferenceService", "default", "a")
    await resources.put_status(key, {"available": True})
    listed = await get_resources(resources, kind="isvc", namespace="default", name="")
    assert [d["metadata"]["name"] for d in listed] == ["a", "b"]
    assert listed[0]["status"] == {"available": True}
    assert "status" not in listed[1]
    everywhere = await get_resources(resources, kind="isvc", namespace="", name="")
    assert len(everywhere) == 3
    runtimes = await get_resources(
        resources, kind="ClusterServingRuntime", namespace="team-a", name=""
    )
    assert "meshserve-builtin" in {d["metadata"]["name"] for d in runtimes}
    with pytest.raises(errors.InvalidRequestError, match="unknown kind"):
        await get_resources(resources, kind="pod", namespace="", name="")


async def test_a_watch_gives_the_listing_again_after_each_change(
    resources: ResourceStore,
) -> None:
    await apply_resources(resources, [_isvc("a")])
    listings = watch_resources(resources, kind="isvc", namespace="default", name="")
    async with contextlib.aclosing(listings):
        first = await anext(listings)
        assert [d["metadata"]["name"] for d in first] == ["a"]
        await resources.put_status(ResourceKey("InferenceService", "default", "a"), {"x": 1})
        second = await asyncio.wait_for(anext(listings), 10)
        assert second[0]["status"] == {"x": 1}
        await apply_resources(resources, [_isvc("b")])
        third = await asyncio.wait_for(anext(listings), 10)
        assert [d["metadata"]["name"] for d in third] == ["a", "b"]


# -- who may ------------------------------------------------------------------------


async def test_an_editor_writes_in_its_namespaces_only_and_refusals_are_counted(
    resources: ResourceStore, store: SqliteStore
) -> None:
    with _as("editor", "team-a") as denials:
        await apply_resources(resources, [_isvc("a", namespace="team-a")])
        with pytest.raises(errors.PermissionDeniedError, match="team-b"):
            await apply_resources(
                resources, [_isvc("x", namespace="team-a"), _isvc("y", namespace="team-b")]
            )
        with pytest.raises(errors.PermissionDeniedError, match="may not admin"):
            await apply_resources(resources, [_secret("team-a")])
        with pytest.raises(errors.PermissionDeniedError):
            await apply_resources(resources, [_cluster_runtime()])
    assert denials == [("forbidden", "/m")] * 3
    stored = await resources.list()
    assert list(stored) == [ResourceKey("InferenceService", "team-a", "a")]


async def test_an_admin_of_some_namespaces_cannot_change_cluster_runtimes(
    resources: ResourceStore,
) -> None:
    with _as("admin", "team-a"):
        await apply_resources(resources, [_secret("team-a")])
        with pytest.raises(errors.PermissionDeniedError, match="_cluster"):
            await apply_resources(resources, [_cluster_runtime()])
    with _as("admin", "*"):
        await apply_resources(resources, [_cluster_runtime()])
        key = resource_key("clusterservingruntime", "", "shared-rt")
        assert await delete_resources(resources, [key]) == [(key, True)]


async def test_listings_show_the_namespaces_a_caller_may_see(resources: ResourceStore) -> None:
    await apply_resources(
        resources, [_isvc("a", namespace="team-a"), _isvc("b", namespace="team-b")]
    )
    with _as("viewer", "team-a") as denials:
        listed = await get_resources(resources, kind="isvc", namespace="", name="")
        assert [d["metadata"]["namespace"] for d in listed] == ["team-a"]
        watched = watch_resources(resources, kind="isvc", namespace="", name="")
        async with contextlib.aclosing(watched):
            assert await anext(watched) == listed
        with pytest.raises(errors.PermissionDeniedError):
            await get_resources(resources, kind="isvc", namespace="team-b", name="b")
        runtimes = await get_resources(
            resources, kind="clusterservingruntime", namespace="", name=""
        )
        assert runtimes
        with pytest.raises(errors.PermissionDeniedError):
            await delete_resources(resources, [resource_key("isvc", "team-a", "a")])
        with pytest.raises(errors.PermissionDeniedError):
            await anext(watch_resources(resources, kind="isvc", namespace="team-b", name=""))
    assert denials == [("forbidden", "/m")] * 3
    assert len(await resources.list()) == 2


async def test_a_delete_is_all_or_nothing(resources: ResourceStore) -> None:
    await apply_resources(
        resources, [_isvc("a", namespace="team-a"), _isvc("b", namespace="team-b")]
    )
    keys = [resource_key("isvc", "team-a", "a"), resource_key("isvc", "team-b", "b")]
    with _as("editor", "team-a"), pytest.raises(errors.PermissionDeniedError):
        await delete_resources(resources, keys)
    assert len(await resources.list()) == 2
    assert await delete_resources(resources, [*keys, resource_key("isvc", "", "gone")]) == [
        (keys[0], True),
        (keys[1], True),
        (ResourceKey("InferenceService", "default", "gone"), False),
    ]


@pytest.mark.parametrize(
    ("kind", "namespace", "name"),
    [("pod", "default", "x"), ("isvc", "default", ""), ("isvc", "a/b", "x"), ("isvc", "", "a/b")],
)
def test_refs_that_name_no_resource_are_invalid(kind: str, namespace: str, name: str) -> None:
    with pytest.raises(errors.InvalidRequestError):
        resource_key(kind, namespace, name)


def test_check_action_and_may_see_namespace_without_an_auth_layer() -> None:
    check_action("admin", namespace="anything")
    assert may_see_namespace("anything")


# -- model locations known bad at apply time ------------------------------------------


def _predictor(name: str, *, path: str) -> str:
    return json.dumps(
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "Predictor",
            "metadata": {"name": name},
            "spec": {"modelType": {"name": "sklearn"}, "path": path},
        }
    )


def _isvc_at(name: str, path: str, **storage: Any) -> str:
    document = json.loads(_isvc(name))
    model = document["spec"]["predictor"]["model"]
    del model["storageUri"]
    model["storage"] = {"path": path, **storage}
    return json.dumps(document)


def _rooted(store: SqliteStore, tmp_path: pathlib.Path, **settings: Any) -> ResourceStore:
    roots = LocalRoots.for_resources(StorageSettings(**settings))
    return ResourceStore(store, sealing_key=SealingKey.generate(), local_roots=roots)


@pytest.mark.parametrize(
    ("document", "said"),
    [
        (_isvc("b", uri="models/m.skops"), "no scheme"),
        (_isvc("b", uri="file:///etc/passwd"), "'file' is not supported"),
        (_isvc("b", uri="pvc://c/../other/m.skops"), "escapes its root"),
        (_isvc_at("b", "../m.skops", key="s3"), "escapes its root"),
        (_predictor("b", path="/etc/passwd"), "outside the allowed roots"),
        (_predictor("b", path="relative/m.skops"), "must be absolute"),
        (_predictor("b", path="/pvc/../etc/passwd"), "escapes its root"),
        (_isvc_at("b", "/etc/passwd"), "outside the allowed roots"),
    ],
)
async def test_a_location_known_bad_is_refused_and_nothing_is_written(
    store: SqliteStore, tmp_path: pathlib.Path, document: str, said: str
) -> None:
    resources = _rooted(store, tmp_path, pvc_root=tmp_path / "pvc")
    with pytest.raises(errors.InvalidResourceError, match=said) as refused:
        await apply_resources(resources, [_isvc("a"), document])
    assert "(inferenceservice/b)" in str(refused.value) or "(predictor/b)" in str(refused.value)
    assert await _stored(store) == b""


async def test_a_local_path_is_served_only_under_the_configured_roots(
    store: SqliteStore, tmp_path: pathlib.Path
) -> None:
    inside = str(tmp_path / "pvc" / "claim" / "m.skops")
    claimed = str(tmp_path / "mine" / "m.skops")
    nothing = _rooted(store, tmp_path)
    with pytest.raises(errors.InvalidResourceError, match="no local paths are allowed"):
        await apply_resources(nothing, [_predictor("a", path=inside)])

    rooted = _rooted(
        store, tmp_path, pvc_root=tmp_path / "pvc", pvc_claims={"m": tmp_path / "mine"}
    )
    applied = await apply_resources(rooted, [_predictor("a", path=inside), _isvc_at("b", claimed)])
    assert [outcome for _, outcome in applied] == [Applied.CREATED, Applied.CREATED]


async def test_an_inference_service_for_another_controller_is_not_checked(
    resources: ResourceStore,
) -> None:
    document = json.loads(_isvc("kserve", uri="hf://org/model"))
    del document["metadata"]["annotations"]
    assert await apply_resources(resources, [json.dumps(document)])
