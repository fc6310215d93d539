"""The request path: which model a request means, and where it runs.

``resolve`` turns a name (or the ``mm-model-id`` / ``mm-vmodel-id``
headers) into a registered model id. ``infer``, ``infer_grpc`` and
``model_metadata`` then route: a model loaded here is served here; one
loaded on another instance is forwarded there (raw bytes, over that
instance's internal port); one loaded nowhere goes where placement says,
which loads it, then serves. Routing reads only the registry's in-memory
mirror. Each request is metered (ModelMesh's api_request and invoke
metrics) and counted for the scale-up rates.

A forward has a hop deadline (``_hop``): a short share of the client's
remaining time for a loaded copy. A hop that times out marks its peer
suspect (``_suspects``: avoided until it answers again) and the request is
retried elsewhere, as is one whose peer's lease goes while it is in flight.
A request that may have run on that peer thus runs again: inference is
idempotent (ModelMesh retries the same way). A copy here whose runtime is
restarting sends the request to another copy, or holds it until the
runtime is back (within the client's deadline).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import TypeVar

from meshserve import __version__
from meshserve._clock import Clock
from meshserve._ids import InstanceId, ModelId
from meshserve.errors import (
    MeshServeError,
    ModelNotFoundError,
    PeerTimeoutError,
    PeerUnreachableError,
    RuntimeRestartingError,
    UnavailableError,
    quote_client_value,
)
from meshserve.mesh._background import Spawn
from meshserve.mesh._cache import ModelCache
from meshserve.mesh._copies import Copies
from meshserve.mesh._hop import ClientDeadline, Forwards, hop_timeout
from meshserve.mesh._instance_state import Lifecycle
from meshserve.mesh._mesh_view import LOADED, MeshView
from meshserve.mesh._model_names import resolve_name
from meshserve.mesh._payload_tap import INFER_METHOD, tapped
from meshserve.mesh._peers import PeerLink, need_peers
from meshserve.mesh._rates import RateTracker
from meshserve.mesh._suspects import Suspects
from meshserve.metrics import MetricsRecorder
from meshserve.payloads import NO_PAYLOADS, PayloadSink
from meshserve.protocol import codecs
from meshserve.protocol.inference import InferenceRequest, InferenceResponse, ModelMetadata
from meshserve.protocol.routing import (
    NO_HEADERS,
    Metadata,
    RoutingHeaders,
    ServerInfo,
    hop_metadata,
)
from meshserve.protocol.status import grpc_code
from meshserve.registry import CopyState, InstanceRecord, Registry
from meshserve.runtime import Runtime
from meshserve.security import check_inference
from meshserve.settings import MeshSettings
from meshserve.tracing import NULL_SPAN, span
from meshserve.tracing import enabled as tracing_enabled
from meshserve.tracing import names as trace

__all__ = ["Router"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_SERVER_EXTENSIONS = ("binary_tensor_data", "model_repository")

_RESTART_CHECK_S = 0.1
"""How often a request held for this instance's restarting runtime retries."""

Remote = Callable[[InstanceRecord, Metadata, float], Awaitable[T]]
"""A call to a peer: (its record, hop metadata, timeout in seconds)."""


class Router:
    """The front ends' backend (``server.InferenceBackend``): resolve, route,
    serve here or forward, meter."""

    def __init__(
        self,
        *,
        instance_id: InstanceId,
        registry: Registry,
        runtime: Runtime,
        cache: ModelCache,
        copies: Copies,
        view: MeshView,
        peers: PeerLink | None,
        suspects: Suspects,
        rates: RateTracker,
        metrics: MetricsRecorder,
        lifecycle: Lifecycle,
        clock: Clock,
        settings: MeshSettings,
        spawn: Spawn,
        payloads: PayloadSink = NO_PAYLOADS,
    ) -> None:
        """``payloads``: where each inference's request and response go
        (the payload processors), when this instance is the one called."""
        self._instance_id = instance_id
        self._registry = registry
        self._runtime = runtime
        self._cache = cache
        self._copies = copies
        self._view = view
        self._peers = peers
        self._suspects = suspects
        self._rates = rates
        self._metrics = metrics
        self._lifecycle = lifecycle
        self._clock = clock
        self._settings = settings
        self._spawn = spawn
        self._payloads = payloads
        self._forwards = Forwards(registry=registry, spawn=spawn)

    # -- which model -----------------------------------------------------------

    def resolve(self, name: str, headers: RoutingHeaders) -> ModelId:
        """The registered model a request means (headers win over ``name``)."""
        model_id = resolve_name(self._registry, name, headers)
        # With authentication on, a credential limited to some models may
        # use a vmodel only if it may use the model behind it too.
        check_inference(model_id)
        return model_id

    # -- the v2 calls ----------------------------------------------------------

    async def infer(
        self, model_id: str, request: InferenceRequest, *, headers: RoutingHeaders = NO_HEADERS
    ) -> InferenceResponse:
        peers = self._peers
        routed = self._route(
            model_id,
            headers,
            local=lambda: self._runtime.infer(model_id, request),
            remote=lambda peer, metadata, timeout: need_peers(peers).infer_decoded(
                peer.address,
                request,
                metadata,
                timeout_s=timeout,
                data_address=peer.data_address,
            ),
        )
        if not headers.hops and self._payloads.wants(model_id, headers.vmodel_id, INFER_METHOD):
            routed = tapped(
                self._payloads,
                routed,
                model_id=model_id,
                vmodel_id=headers.vmodel_id,
                request=lambda: codecs.request_to_proto(request).SerializeToString(),
                response=_serialized_later,
            )
        return await self._measured("ModelInfer", headers, model_id, routed)

    async def infer_grpc(
        self, model_id: str, body: bytes, *, headers: RoutingHeaders = NO_HEADERS
    ) -> bytes:
        peers = self._peers
        routed = self._route(
            model_id,
            headers,
            local=lambda: self._runtime.infer_grpc(model_id, body),
            remote=lambda peer, metadata, timeout: need_peers(peers).infer(
                peer.address, body, metadata, timeout_s=timeout, data_address=peer.data_address
            ),
        )
        if headers.hops:
            return await routed  # metered by the instance that forwarded it
        if self._payloads.wants(model_id, headers.vmodel_id, INFER_METHOD):
            routed = tapped(
                self._payloads,
                routed,
                model_id=model_id,
                vmodel_id=headers.vmodel_id,
                request=body,
                response=_as_is,
            )
        return await self._measured("ModelInfer", headers, model_id, routed, size=len(body))

    async def model_metadata(
        self, model_id: str, headers: RoutingHeaders = NO_HEADERS
    ) -> ModelMetadata:
        peers = self._peers
        return await self._route(
            model_id,
            headers,
            local=lambda: self._runtime.metadata(model_id),
            remote=lambda peer, metadata, timeout: need_peers(peers).model_metadata(
                peer.address, model_id, metadata, timeout_s=timeout
            ),
        )

    def model_ready(self, model_id: str) -> bool:
        return self._copies.model_ready(model_id)

    def server_ready(self) -> bool:
        return self._lifecycle.ready

    def server_info(self) -> ServerInfo:
        return ServerInfo(name="meshserve", version=__version__, extensions=_SERVER_EXTENSIONS)

    # -- where it runs ---------------------------------------------------------

    def _route(
        self,
        model_id: str,
        headers: RoutingHeaders,
        *,
        local: Callable[[], Awaitable[T]],
        remote: Remote[T],
    ) -> Awaitable[T]:
        """Serve here, forward to a copy elsewhere, or place a new copy."""
        if not tracing_enabled():
            # No span to open: no attributes to build, no extra coroutine.
            return self._route_attempts(model_id, headers, local=local, remote=remote)
        return self._traced_route(model_id, headers, local=local, remote=remote)

    async def _traced_route(
        self,
        model_id: str,
        headers: RoutingHeaders,
        *,
        local: Callable[[], Awaitable[T]],
        remote: Remote[T],
    ) -> T:
        attributes: dict[str, str | int] = {
            trace.INSTANCE_ID: self._instance_id,
            trace.MODEL_ID: model_id,
        }
        if headers.hops:
            attributes[trace.HOPS] = headers.hops
        with span(trace.ROUTE, attributes=attributes):
            return await self._route_attempts(model_id, headers, local=local, remote=remote)

    async def _route_attempts(
        self,
        model_id: str,
        headers: RoutingHeaders,
        *,
        local: Callable[[], Awaitable[T]],
        remote: Remote[T],
    ) -> T:
        deadline = ClientDeadline(headers.timeout_s, clock=self._clock)
        if headers.hops:
            await self._copies.await_record(model_id)
        if headers.dest is not None:
            # Another instance chose this one to load and serve the model.
            return await self._serve_here(model_id, local, vmodel_id=headers.vmodel_id)
        max_attempts = self._settings.max_attempts
        exclude = set(headers.exclude)
        tried: list[str] = []
        for _ in range(max_attempts):
            if self._instance_id not in exclude and self._serves_here(model_id, exclude):
                try:
                    return await self._serve_or_hold(
                        model_id, local, headers=headers, deadline=deadline, exclude=exclude
                    )
                except RuntimeRestartingError as exc:
                    # Another copy serves it meanwhile (or a new one elsewhere).
                    tried.append(f"{self._instance_id}: {exc}")
                    exclude.add(self._instance_id)
                    continue
            target, dest = self._copies.next_target(model_id, exclude)
            if target is None:
                break
            if target.instance_id == self._instance_id:
                try:
                    return await self._serve_here(model_id, local, vmodel_id=headers.vmodel_id)
                except UnavailableError as exc:
                    # No room here after all: let placement try elsewhere.
                    tried.append(f"{self._instance_id}: {exc}")
                    exclude.add(self._instance_id)
                    continue
            hops = headers.hops + 1
            if hops >= max_attempts:
                tried.append(f"hop limit ({max_attempts}) reached")
                break
            metadata = hop_metadata(
                model_id=model_id,
                hops=hops,
                exclude=sorted(exclude | {self._instance_id}),
                dest=dest,
                vmodel_id=headers.vmodel_id,
            )
            if dest is not None:
                self._copies.note_placement(target.instance_id, model_id)
            peer = target.instance_id
            timeout = hop_timeout(
                deadline.remaining(),
                loading=dest is not None or not self._loaded_on(peer, model_id),
                settings=self._settings,
            )
            forward = {
                trace.PEER_INSTANCE_ID: peer,
                trace.SERVER_ADDRESS: target.address,
                trace.MODEL_ID: model_id,
            }
            try:
                with (
                    self._view.forwarding(peer),
                    span(trace.FORWARD, kind="client", attributes=forward),
                ):
                    return await self._forwards.call(
                        functools.partial(remote, target, metadata, timeout),
                        peer=peer,
                        timeout_s=timeout,
                    )
            except PeerTimeoutError as exc:
                self._suspects.mark(peer)
                tried.append(f"{peer}: {exc}")
            except PeerUnreachableError as exc:
                self._view.mark_unreachable(peer)
                tried.append(f"{peer}: {exc}")
            except UnavailableError as exc:
                tried.append(f"{peer}: {exc}")
            exclude.add(peer)
            if deadline.passed():
                tried.append("the client's deadline passed")
                break
        detail = "; ".join(tried) if tried else "no instance can take it"
        raise UnavailableError(
            f"model {quote_client_value(model_id)} could not be served: {detail}"
        )

    def _serves_here(self, model_id: str, exclude: set[str]) -> bool:
        """The copy here serves the request: it is loaded, or loading and no
        loaded copy elsewhere can serve it now (after a runtime restart, say)."""
        if self._cache.is_loaded(model_id):
            return True
        if not self._cache.is_loading(model_id):
            return False
        return not any(
            c.instance_id not in exclude for c in self._view.remote_copies(model_id, states=LOADED)
        )

    def _loaded_on(self, instance_id: str, model_id: str) -> bool:
        copy = self._registry.copies(model_id).get(instance_id)
        return copy is not None and copy.state is CopyState.LOADED

    async def _serve_or_hold(
        self,
        model_id: str,
        local: Callable[[], Awaitable[T]],
        *,
        headers: RoutingHeaders,
        deadline: ClientDeadline,
        exclude: set[str],
    ) -> T:
        """Serve from the copy here; while the runtime restarts, hold the
        request (up to ``runtime_restart_hold_s`` and the client's deadline)
        unless another copy can serve it (RuntimeRestartingError then)."""
        hold_s = self._settings.runtime_restart_hold_s
        remaining = deadline.remaining()
        until = self._clock.monotonic() + (hold_s if remaining is None else min(hold_s, remaining))
        while True:
            try:
                return await self._serve_here(model_id, local, vmodel_id=headers.vmodel_id)
            except RuntimeRestartingError:
                elsewhere = self._view.pick_copy(model_id, exclude | {self._instance_id})
                if elsewhere is not None or self._clock.monotonic() >= until:
                    raise
            await asyncio.sleep(_RESTART_CHECK_S)

    async def _serve_here(
        self, model_id: str, call: Callable[[], Awaitable[T]], *, vmodel_id: str | None
    ) -> T:
        """Run ``call`` on this instance's copy, loading it first if needed."""
        cache = self._cache
        for attempt in range(2):
            previous_use = self._copies.last_used_ms(model_id)
            if not cache.is_loaded(model_id):
                started = self._clock.monotonic()
                with self._span_here(trace.LOAD, model_id, vmodel_id):
                    await cache.ensure_loaded(
                        self._copies.spec(model_id), last_used_ms=self._now_ms()
                    )
                self._metrics.observe_cache_miss(
                    (self._clock.monotonic() - started) * 1000, model_id=model_id
                )
            try:
                with cache.in_use(model_id):
                    started = self._clock.monotonic()
                    with self._span_here(trace.INFER, model_id, vmodel_id):
                        result = await call()
                    self._metrics.observe_invoke(
                        (self._clock.monotonic() - started) * 1000,
                        method="ModelInfer",
                        code="OK",
                        model_id=model_id,
                        vmodel_id=vmodel_id,
                    )
            except ModelNotFoundError:
                # Unregistered meanwhile: report that. Otherwise the runtime
                # lost the model (it restarted): account for it and reload once.
                if attempt or self._registry.model(model_id) is None:
                    raise
                log.warning("runtime no longer has %s; reloading it", model_id)
                cache.forget(model_id)
                if self._view.remote_copies(model_id, states=LOADED):
                    # Another copy serves the request (the router forwards
                    # it) rather than it waiting for the reload.
                    spec = self._copies.spec(model_id)
                    self._spawn(
                        cache.ensure_loaded(spec, last_used_ms=self._now_ms()),
                        name=f"reload:{model_id}",
                    )
                    raise RuntimeRestartingError(
                        f"the runtime lost {quote_client_value(model_id)} (it restarted); "
                        "reloading it"
                    ) from None
                continue
            self._rates.count(model_id)
            self._maybe_second_copy(model_id, previous_use)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _span_here(
        self, name: str, model_id: str, vmodel_id: str | None
    ) -> AbstractContextManager[object]:
        """A span about this instance's copy (its attributes built only
        when tracing is on: this runs on every request)."""
        if not tracing_enabled():
            return NULL_SPAN
        attributes = {trace.INSTANCE_ID: self._instance_id, trace.MODEL_ID: model_id}
        if vmodel_id:
            attributes[trace.VMODEL_ID] = vmodel_id
        return span(name, attributes=attributes)

    def _now_ms(self) -> int:
        return int(self._clock.time() * 1000)

    def _maybe_second_copy(self, model_id: str, previous_use_ms: int) -> None:
        """ModelMesh's second copy: a single-copy model used again a while
        (7 to 40 minutes) after its previous use."""
        if not previous_use_ms:
            return
        age_s = (self._now_ms() - previous_use_ms) / 1000
        settings = self._settings
        if not settings.second_copy_min_age_s <= age_s <= settings.second_copy_max_age_s:
            return
        if self._copies.copy_count(model_id) == 1:
            log.info("%s used again after %.0f s: adding a second copy", model_id, age_s)
            self._spawn(self._copies.add_copy(model_id), name=f"second-copy:{model_id}")

    async def _measured(
        self,
        method: str,
        headers: RoutingHeaders,
        model_id: str,
        work: Awaitable[T],
        *,
        size: int = 0,
    ) -> T:
        """Run an API request, counting it (ModelMesh's api_request metrics)."""
        started = self._clock.monotonic()
        code = "OK"
        response_bytes = None
        try:
            result = await work
            if isinstance(result, bytes):
                response_bytes = len(result)
        except MeshServeError as exc:
            code = grpc_code(exc).name
            raise
        finally:
            self._metrics.observe_api_call(
                (self._clock.monotonic() - started) * 1000,
                method=method,
                code=code,
                model_id=model_id,
                vmodel_id=headers.vmodel_id,
                request_bytes=size,
                response_bytes=response_bytes,
            )
        return result


def _as_is(response: bytes) -> bytes:
    return response


def _serialized_later(response: InferenceResponse) -> Callable[[], bytes]:
    return lambda: codecs.response_to_proto(response).SerializeToString()
