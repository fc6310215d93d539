"""The router alone (not running: no membership, no upkeep), over a real
SQLite registry, a scripted runtime and a fake peer link (no other
instance runs)."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from meshserve import errors
from meshserve._clock import ManualClock
from meshserve._ids import InstanceId, ModelId, VModelId
from meshserve.mesh._cache import ModelCache
from meshserve.mesh._copies import Copies
from meshserve.mesh._instance_state import InstanceState, Lifecycle
from meshserve.mesh._parts import build_parts
from meshserve.mesh._router import Router
from meshserve.mesh._suspects import Suspects
from meshserve.metrics import NullMetrics
from meshserve.payloads import Payload, PayloadKind
from meshserve.protocol.inference import InferenceRequest, InferenceResponse, ModelMetadata
from meshserve.protocol.routing import Metadata, RoutingHeaders
from meshserve.registry import (
    CopyRecord,
    CopyState,
    InstanceRecord,
    ModelRecord,
    Registry,
    VModelRecord,
)
from meshserve.settings import CacheSettings, MeshSettings
from meshserve.store import SqliteStore
from tests.fakes import FakeModel, FakeRuntime

PEER = InstanceId("i-2")
PEER_ADDRESS = "127.0.0.1:1"
PEER_DATA_ADDRESS = "127.0.0.1:2"
LABELS = ("mt:fake",)


@dataclass
class FakePeers:
    """A ``PeerLink`` that answers from memory, refuses as unreachable, or
    hangs (never answers) for the addresses in ``hanging``."""

    unreachable: bool = False
    hanging: set[str] = field(default_factory=set)
    calls: list[tuple[str, bytes, dict[str, str | bytes]]] = field(default_factory=list)
    timeouts: list[float | None] = field(default_factory=list)
    data_addresses: list[str] = field(default_factory=list)

    async def infer(
        self,
        address: str,
        body: bytes,
        metadata: Metadata,
        *,
        timeout_s: float | None = None,
        data_address: str = "",
    ) -> bytes:
        self.calls.append((address, body, dict(metadata)))
        self.data_addresses.append(data_address)
        self.timeouts.append(timeout_s)
        if self.unreachable:
            raise errors.PeerUnreachableError(f"{address} did not answer")
        if address in self.hanging:
            await asyncio.Event().wait()
        return (
            f"from-{address}:".encode() + body if address != PEER_ADDRESS else b"from-peer:" + body
        )

    async def infer_decoded(
        self,
        address: str,
        request: InferenceRequest,
        metadata: Metadata,
        *,
        timeout_s: float | None = None,
        data_address: str = "",
    ) -> InferenceResponse:
        raise AssertionError("not used here")

    async def model_metadata(
        self, address: str, model_id: str, metadata: Metadata, *, timeout_s: float | None = None
    ) -> ModelMetadata:
        raise AssertionError("not used here")

    async def ensure_loaded(
        self, address: str, model_id: str, metadata: Metadata, *, sync: bool, last_used_ms: int
    ) -> None:
        raise AssertionError("not used here")

    async def live(self, address: str, *, timeout_s: float) -> None:
        if self.unreachable or address in self.hanging:
            raise errors.PeerTimeoutError(f"{address} did not answer")


@dataclass
class RecordingSink:
    """A ``PayloadSink`` that keeps what it is offered."""

    offered: list[Payload] = field(default_factory=list)

    def wants(self, model_id: str, vmodel_id: str | None, method: str) -> bool:
        return True

    def offer(self, payload: Payload) -> None:
        self.offered.append(payload)


@dataclass
class Routed:
    router: Router
    registry: Registry
    runtime: FakeRuntime
    peers: FakePeers
    lifecycle: Lifecycle
    suspects: Suspects
    copies: Copies
    payloads: RecordingSink


@pytest.fixture
async def routed(tmp_path: pathlib.Path) -> AsyncIterator[Routed]:
    clock = ManualClock()
    runtime = FakeRuntime()
    peers = FakePeers()
    payloads = RecordingSink()
    async with (
        SqliteStore.open(tmp_path / "store.db") as store,
        Registry.open(store) as registry,
        store.lease(30.0) as lease,
    ):
        # The other instance, as its records would say: it holds "there".
        await registry.put_instance(
            InstanceRecord(
                instance_id=PEER,
                address=PEER_ADDRESS,
                capacity_bytes=10**9,
                labels=LABELS,
                data_address=PEER_DATA_ADDRESS,
            ),
            lease=lease.id,
        )
        for model_id in ("here", "there"):
            await registry.create_model(
                ModelRecord(model_id=ModelId(model_id), type="fake", path=f"/{model_id}")
            )
        await registry.put_copy(
            CopyRecord(
                model_id=ModelId("there"), instance_id=PEER, state=CopyState.LOADED, time_ms=1
            ),
            lease=lease.id,
        )
        runtime_status = await runtime.status()
        cache = ModelCache(
            runtime=runtime, status=runtime_status, settings=CacheSettings(), clock=clock
        )
        parts = build_parts(
            instance_id=InstanceId("i-1"),
            registry=registry,
            runtime=runtime,
            cache=cache,
            settings=CacheSettings(),
            mesh=MeshSettings(),
            clock=clock,
            metrics=NullMetrics(),
            labels=LABELS,
            peers=peers,
            payloads=payloads,
        )
        background = parts.background
        try:
            yield Routed(
                parts.router,
                registry,
                runtime,
                peers,
                parts.lifecycle,
                parts.suspects,
                parts.copies,
                payloads,
            )
        finally:
            await background.close()
            await cache.close()


async def test_a_model_loaded_on_a_peer_is_forwarded_there_with_the_hop_state(
    routed: Routed,
) -> None:
    model_id = routed.router.resolve("there", RoutingHeaders())
    assert await routed.router.infer_grpc(model_id, b"body") == b"from-peer:body"
    [(address, body, metadata)] = routed.peers.calls
    assert (address, body) == (PEER_ADDRESS, b"body")
    assert metadata["mm-model-id-bin"] == b"there"
    assert metadata["mm-hops"] == "1"
    assert metadata["mm-exclude"] == "i-1"
    assert "mm-dest" not in metadata  # a copy exists there: nothing to place
    assert routed.runtime.load_calls == []
    # The peer's data port, as its record publishes it, carries the forward.
    assert routed.peers.data_addresses == [PEER_DATA_ADDRESS]


async def test_the_instance_called_offers_the_request_and_response_once(
    routed: Routed,
) -> None:
    assert await routed.router.infer_grpc("there", b"body") == b"from-peer:body"
    request, response = routed.payloads.offered
    assert (request.kind, request.body(), request.status) == (PayloadKind.REQUEST, b"body", "")
    assert (response.kind, response.body(), response.status) == (
        PayloadKind.RESPONSE,
        b"from-peer:body",
        "OK",
    )
    assert request.id == response.id and request.model_id == "there"
    assert request.method == "inference.GRPCInferenceService/ModelInfer"
    # The instance it was forwarded to offers nothing: one inference, once.
    routed.payloads.offered.clear()
    headers = RoutingHeaders(model_id="here", hops=1, exclude=(PEER,), dest="i-1")
    assert await routed.router.infer_grpc("here", b"x", headers=headers) == b"here:x"
    assert routed.payloads.offered == []


async def test_a_failed_inference_offers_its_status_as_the_response(routed: Routed) -> None:
    routed.runtime.models["/here"] = FakeModel(fail=errors.CorruptModelError("not a model"))
    routed.peers.unreachable = True  # placement falls back to this instance, which fails
    with pytest.raises(errors.MeshServeError):
        await routed.router.infer_grpc("here", b"x")
    request, response = routed.payloads.offered
    assert request.id == response.id
    assert (response.kind, response.body()) == (PayloadKind.RESPONSE, b"")
    assert response.status not in ("", "OK")


async def test_a_model_loaded_nowhere_is_placed_where_there_is_most_room(
    routed: Routed,
) -> None:
    # The peer has a thousand times this instance's room: placement picks it,
    # and the forwarded request tells it to load the model (mm-dest).
    assert await routed.router.infer_grpc("here", b"x") == b"from-peer:x"
    [(address, _, metadata)] = routed.peers.calls
    assert address == PEER_ADDRESS
    assert metadata["mm-dest"] == PEER
    assert routed.runtime.load_calls == []


async def test_a_request_placed_here_by_a_peer_is_loaded_and_served_here(
    routed: Routed,
) -> None:
    headers = RoutingHeaders(model_id="here", hops=1, exclude=(PEER,), dest="i-1")
    assert await routed.router.infer_grpc("here", b"x", headers=headers) == b"here:x"
    assert routed.runtime.load_calls == ["here"]
    assert routed.peers.calls == []
    assert routed.router.model_ready("here")


async def test_an_unreachable_peer_is_skipped_and_the_model_placed_here(routed: Routed) -> None:
    routed.peers.unreachable = True
    assert await routed.router.infer_grpc("there", b"x") == b"there:x"
    assert len(routed.peers.calls) == 1
    assert routed.runtime.load_calls == ["there"]
    # Marked unreachable: the next request does not try it again.
    assert await routed.router.infer_grpc("there", b"y") == b"there:y"
    assert len(routed.peers.calls) == 1


async def test_a_forwarded_request_is_never_forwarded_past_the_hop_limit(
    routed: Routed,
) -> None:
    headers = RoutingHeaders(model_id="there", hops=MeshSettings().max_attempts - 1, exclude=())
    with pytest.raises(errors.UnavailableError, match="hop limit"):
        await routed.router.infer_grpc("there", b"x", headers=headers)
    assert routed.peers.calls == []


async def test_readiness_follows_the_lifecycle(routed: Routed) -> None:
    assert not routed.router.server_ready()
    routed.lifecycle.advance(InstanceState.SERVING)
    assert routed.router.server_ready()
    routed.lifecycle.advance(InstanceState.DRAINING)
    assert not routed.router.server_ready()


async def _namespaced(registry: Registry, vmodel_id: str, model_id: str) -> None:
    await registry.create_model(
        ModelRecord(model_id=ModelId(model_id), type="fake", path=f"/{model_id}")
    )
    await registry.create_vmodel(
        VModelRecord(
            vmodel_id=VModelId(vmodel_id),
            active_model_id=ModelId(model_id),
            target_model_id=ModelId(model_id),
        )
    )


async def test_a_plain_name_found_in_one_namespace_only_resolves_there(routed: Routed) -> None:
    # As a client of that namespace's Service names it (no namespace selected).
    await _namespaced(routed.registry, "team-a/iris", "team-a/iris__isvc-1")
    assert routed.router.resolve("iris", RoutingHeaders()) == "team-a/iris__isvc-1"
    # The default namespace's own model of a name comes first.
    assert routed.router.resolve("here", RoutingHeaders()) == "here"


async def test_a_plain_name_in_several_namespaces_asks_for_one(routed: Routed) -> None:
    await _namespaced(routed.registry, "team-a/dup", "team-a/dup__isvc-1")
    await _namespaced(routed.registry, "team-b/dup", "team-b/dup__isvc-2")
    with pytest.raises(errors.ModelNotFoundError) as missing:
        routed.router.resolve("dup", RoutingHeaders())
    assert "namespaces team-a, team-b each have one" in str(missing.value)
    assert "mm-namespace" in str(missing.value)
    with pytest.raises(errors.ModelNotFoundError) as unknown:
        routed.router.resolve("nowhere", RoutingHeaders())
    assert str(unknown.value) == "model 'nowhere' is not registered"


# -- faults: peers that hang or leave, a runtime that restarts ---------------

OTHER = InstanceId("i-3")
OTHER_ADDRESS = "127.0.0.1:2"


@contextlib.asynccontextmanager
async def _other_peer(registry: Registry, state: CopyState) -> AsyncIterator[None]:
    """A third instance holding a copy of "there" in ``state`` (LOADING
    makes it the second choice after the first peer's LOADED copy)."""
    async with registry.store.lease(30.0) as lease:
        await registry.put_instance(
            InstanceRecord(
                instance_id=OTHER, address=OTHER_ADDRESS, capacity_bytes=10**9, labels=LABELS
            ),
            lease=lease.id,
        )
        await registry.put_copy(
            CopyRecord(model_id=ModelId("there"), instance_id=OTHER, state=state, time_ms=1),
            lease=lease.id,
        )
        await _until(lambda: registry.copies("there").get(OTHER) is not None)
        yield


async def _until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_hung_peer_costs_one_hop_deadline_then_is_avoided(routed: Routed) -> None:
    routed.peers.hanging.add(PEER_ADDRESS)
    headers = RoutingHeaders(timeout_s=0.5)
    async with _other_peer(routed.registry, CopyState.LOADING):
        started = time.monotonic()
        reply = await routed.router.infer_grpc("there", b"x", headers=headers)
        assert reply == f"from-{OTHER_ADDRESS}:x".encode()
        # 0.5 s left is under hopDeadlineMinS: the hop gets all of it, not more.
        assert routed.peers.timeouts[0] == pytest.approx(0.5)
        assert time.monotonic() - started < 2.0
        assert PEER in routed.suspects
        # The next request does not pay the hop deadline again.
        await routed.router.infer_grpc("there", b"y", headers=headers)
    assert [address for address, _, _ in routed.peers.calls] == [
        PEER_ADDRESS,
        OTHER_ADDRESS,
        OTHER_ADDRESS,
    ]


async def test_a_suspect_peer_is_used_again_once_it_answers(routed: Routed) -> None:
    routed.peers.hanging.add(PEER_ADDRESS)
    async with _other_peer(routed.registry, CopyState.LOADING):
        await routed.router.infer_grpc("there", b"x", headers=RoutingHeaders(timeout_s=0.3))
        assert PEER in routed.suspects
        routed.peers.hanging.clear()  # SIGCONT
        await _until(lambda: PEER not in routed.suspects)
        assert await routed.router.infer_grpc("there", b"y") == b"from-peer:y"


async def test_a_forward_whose_peer_leaves_the_mesh_is_retried_elsewhere(
    routed: Routed,
) -> None:
    # No client deadline: the hop deadline is long, the lease going cuts it.
    routed.peers.hanging.add(PEER_ADDRESS)
    forward = asyncio.ensure_future(routed.router.infer_grpc("there", b"x"))
    await _until(lambda: bool(routed.peers.calls))
    started = time.monotonic()
    await routed.registry.store.delete_prefix(f"instances/{PEER}")
    assert await forward == b"there:x"  # placed and served here
    assert time.monotonic() - started < 2.0


async def test_a_copy_here_whose_runtime_restarts_sends_requests_to_a_copy_elsewhere(
    routed: Routed,
) -> None:
    placed = RoutingHeaders(model_id="there", hops=1, exclude=(PEER,), dest="i-1")
    assert await routed.router.infer_grpc("there", b"x", headers=placed) == b"there:x"
    routed.runtime.restarting = True
    assert await routed.router.infer_grpc("there", b"y") == b"from-peer:y"


async def test_with_no_copy_elsewhere_a_request_waits_for_the_restarting_runtime(
    routed: Routed,
) -> None:
    placed = RoutingHeaders(model_id="here", hops=1, exclude=(PEER,), dest="i-1")
    assert await routed.router.infer_grpc("here", b"x", headers=placed) == b"here:x"
    routed.runtime.restarting = True
    held = asyncio.ensure_future(routed.router.infer_grpc("here", b"y"))
    await asyncio.sleep(0.3)
    assert not held.done()
    routed.runtime.restarting = False
    assert await held == b"here:y"
    assert routed.peers.calls == []


async def test_back_from_a_hang_only_the_copies_reloaded_elsewhere_since_are_dropped(
    routed: Routed,
) -> None:
    # This instance held "here" and "there"; while it was away the peer
    # loaded "there" again (a newer copy), and held "here" from before.
    for model_id in ("here", "there"):
        placed = RoutingHeaders(model_id=model_id, hops=1, exclude=(PEER,), dest="i-1")
        await routed.router.infer_grpc(model_id, b"x", headers=placed)
    async with routed.registry.store.lease(30.0) as lease:
        newer = int(time.time() * 1000) + 60_000
        for model_id, time_ms in (("there", newer), ("here", 1)):
            await routed.registry.put_copy(
                CopyRecord(
                    model_id=ModelId(model_id),
                    instance_id=PEER,
                    state=CopyState.LOADED,
                    time_ms=time_ms,
                ),
                lease=lease.id,
            )
        await _until(lambda: routed.registry.copies("there")[PEER].time_ms == newer)
        await _until(lambda: PEER in routed.registry.copies("here"))
        assert await routed.copies.drop_replaced() == ["there"]
    assert routed.runtime.unload_calls == ["there"]
    assert routed.copies.here("here")


async def test_a_suspect_peer_whose_lease_goes_is_forgotten(routed: Routed) -> None:
    routed.peers.hanging.add(PEER_ADDRESS)
    routed.suspects.mark(PEER)
    assert PEER in routed.suspects
    await routed.registry.store.delete_prefix(f"instances/{PEER}")
    await _until(lambda: PEER not in routed.suspects)
