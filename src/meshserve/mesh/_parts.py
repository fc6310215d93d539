"""An instance's parts, built and wired together (nothing runs yet).

``Instance`` is a facade over these; tests build them alone (a router
with a fake peer link, say) through :func:`build_parts`.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshserve._clock import Clock
from meshserve._ids import InstanceId
from meshserve.mesh._background import Background
from meshserve.mesh._cache import ModelCache
from meshserve.mesh._copies import Copies
from meshserve.mesh._instance_state import Lifecycle
from meshserve.mesh._membership import Membership
from meshserve.mesh._mesh_view import MeshView
from meshserve.mesh._models import Models
from meshserve.mesh._own_records import OwnRecords
from meshserve.mesh._peers import PeerLink
from meshserve.mesh._quotas import NamespaceQuotas
from meshserve.mesh._rates import RateTracker
from meshserve.mesh._router import Router
from meshserve.mesh._store_contact import StoreContact
from meshserve.mesh._suspects import Suspects
from meshserve.mesh._vmodels import VModelTable
from meshserve.metrics import MetricsRecorder
from meshserve.payloads import NO_PAYLOADS, PayloadSink
from meshserve.registry import Registry
from meshserve.runtime import Runtime
from meshserve.settings import CacheSettings, LimitsSettings, MeshSettings

__all__ = ["Parts", "build_parts"]


@dataclass(frozen=True, slots=True)
class Parts:
    """One instance's parts, each given the others it needs."""

    lifecycle: Lifecycle
    background: Background
    rates: RateTracker
    own: OwnRecords
    suspects: Suspects
    view: MeshView
    membership: Membership
    quotas: NamespaceQuotas
    copies: Copies
    models: Models
    vmodels: VModelTable
    router: Router


def build_parts(
    *,
    instance_id: InstanceId,
    registry: Registry,
    runtime: Runtime,
    cache: ModelCache,
    settings: CacheSettings,
    mesh: MeshSettings,
    clock: Clock,
    metrics: MetricsRecorder,
    address: str = "",
    data_address: str = "",
    labels: tuple[str, ...] = (),
    peers: PeerLink | None = None,
    limits: LimitsSettings | None = None,
    payloads: PayloadSink = NO_PAYLOADS,
) -> Parts:
    """Build the parts of an instance over ``cache`` (no side effects)."""
    lifecycle = Lifecycle(started_ms=int(clock.time() * 1000))
    background = Background()
    rates = RateTracker(clock=clock, window_s=6 * mesh.rate_check_interval_s)
    own = OwnRecords(
        instance_id=instance_id,
        address=address,
        data_address=data_address,
        labels=labels,
        registry=registry,
        cache=cache,
        rates=rates,
        lifecycle=lifecycle,
        clock=clock,
    )
    contact = StoreContact(clock=clock, grace_s=mesh.store_outage_grace_s)
    suspects = Suspects(registry=registry, peers=peers, settings=mesh, spawn=background.spawn)
    view = MeshView(
        registry=registry,
        instance_id=instance_id,
        settings=mesh,
        clock=clock,
        describe=own.describe,
        default_model_size=cache.default_size,
        contact=contact,
        suspects=suspects,
    )
    membership = Membership(
        store=registry.store,
        registry=registry,
        instance_id=instance_id,
        lease_ttl_s=mesh.lease_ttl_s,
        publish_interval_s=mesh.publish_interval_s,
        describe=own.describe,
        current_copies=own.local_copies,
        contact=contact,
        on_rejoin=lambda: background.spawn(copies.trim_after_rejoin(), name="trim-after-rejoin"),
    )
    quotas = NamespaceQuotas(registry=registry, limits=limits or LimitsSettings(), metrics=metrics)
    copies = Copies(
        instance_id=instance_id,
        registry=registry,
        cache=cache,
        view=view,
        peers=peers,
        lifecycle=lifecycle,
        clock=clock,
        cache_settings=settings,
        mesh_settings=mesh,
    )
    models = Models(
        registry=registry,
        cache=cache,
        copies=copies,
        view=view,
        own=own,
        quotas=quotas,
        clock=clock,
        settings=settings,
    )
    vmodels = VModelTable(
        registry=registry,
        models=models,
        copies=copies,
        retire_delay_s=mesh.vmodel_retire_delay_s,
    )
    router = Router(
        instance_id=instance_id,
        registry=registry,
        runtime=runtime,
        cache=cache,
        copies=copies,
        view=view,
        peers=peers,
        suspects=suspects,
        rates=rates,
        metrics=metrics,
        lifecycle=lifecycle,
        clock=clock,
        settings=mesh,
        spawn=background.spawn,
        payloads=payloads,
    )
    return Parts(
        lifecycle=lifecycle,
        background=background,
        rates=rates,
        own=own,
        suspects=suspects,
        view=view,
        membership=membership,
        quotas=quotas,
        copies=copies,
        models=models,
        vmodels=vmodels,
        router=router,
    )
