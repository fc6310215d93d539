"""``meshserve operator``: ModelMesh Serving's resources on a cluster run meshserve.

Every replica watches (kopf, :mod:`._watches`) into one view of the cluster
(:class:`ClusterResources`); the one holding the Lease (:class:`LeaseElection`)
acts, each pass:

1. puts its finalizer on each served InferenceService and Predictor;
2. releases the ones being deleted, and those of a namespace no longer
   served (cluster scope: unlabelled): their vmodel removed from the mesh
   (:meth:`Controller.release`), then the finalizer;
3. runs :meth:`Controller.reconcile`, the same as ``meshserve up``'s, over
   the view: models and vmodels in the mesh's etcd, each resource's status
   written back to its status subresource, the runtime pools sized and run
   as Deployments (:class:`DeploymentPools`).

The operator joins the mesh as a member that holds no copies (no placement
labels, so nothing is placed on it) to drive it as an instance's controller
does, through :class:`meshserve.mesh.Instance`. The etcd connection comes from
the ``model-serving-etcd`` Secret; when that Secret changes, the operator
connects again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import kopf
import yaml

from meshserve import _tasks
from meshserve.controller import Controller, ResourceStore
from meshserve.errors import MeshServeError
from meshserve.mesh import HOLDS_NO_MODELS, Instance
from meshserve.operator._cluster import ClusterResources
from meshserve.operator._endpoints import (
    CLUSTER_SERVING_RUNTIMES,
    CONFIG_MAPS,
    INFERENCE_SERVICES,
    NAMESPACES,
    PREDICTORS,
    SECRETS,
    SERVING_RUNTIMES,
)
from meshserve.operator._etcd_connection import etcd_store_settings, secret_value
from meshserve.operator._kube import KubeApi, KubeConnection, Ref
from meshserve.operator._lease import LeaseElection
from meshserve.operator._objects import ObjectWriter
from meshserve.operator._pools import DeploymentPools
from meshserve.operator._render import ClusterConfig
from meshserve.operator._watches import (
    CONFIG_MAP_NAME,
    ENABLED_LABEL,
    Inputs,
    build_registry,
    serves,
)
from meshserve.registry import Registry
from meshserve.runtime import InProcessRuntime
from meshserve.server import peer_client, secret_from_store
from meshserve.settings import Settings
from meshserve.storage import LocalRoots
from meshserve.store import Store, open_store

__all__ = ["OperatorOptions", "run_operator"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorOptions:
    """How this replica runs (the command line's, not model-serving-config's)."""

    connection: KubeConnection
    namespace: str
    """The operator's namespace: its Lease, the config, the Secrets, the
    Deployments and Services; namespace-scoped, the served resources too."""
    identity: str
    """This replica's name in the Lease (the pod's name)."""
    image: str
    """The meshserve image the runtime pods run."""
    clusterwide: bool = False
    """Also serve namespaces labelled ``modelmesh-enabled: "true"``."""
    allowed_runtime_images: tuple[str, ...] = ()
    """``control.allowedRuntimeImages``: the images (and commands) runtimes
    may use; the cluster's admin sets it on the operator, not in the
    namespace's config map."""
    lease_name: str = "meshserve-operator"


class _Wake:
    """Set by every watch event; the active replica's loop waits on it."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __call__(self) -> None:
        self.event.set()


async def run_operator(
    settings: Settings, options: OperatorOptions, *, stop: asyncio.Event
) -> None:
    """Run until ``stop`` is set; see the module docstring."""
    control = settings.control
    agent = f"meshserve-operator/{options.identity}"
    async with KubeApi(
        options.connection, timeout_s=control.operator_api_timeout_s, user_agent=agent
    ) as api:
        election = LeaseElection(
            api,
            namespace=options.namespace,
            name=options.lease_name,
            identity=options.identity,
            duration_s=control.operator_lease_duration_s,
            renew_s=control.operator_lease_renew_s,
        )
        elector = _tasks.start_supervised(election.run(), name="operator-lease")
        try:
            while not stop.is_set():
                try:
                    await _connected(settings, options, api=api, election=election, stop=stop)
                except (MeshServeError, ValueError) as exc:  # the API, etcd, its Secret
                    # (ValueError: an etcd connection JSON that cannot be used)
                    log.warning("operator: %s; starting again", exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), control.operator_lease_renew_s)
        finally:
            await _tasks.cancel_and_wait(elector)
            with contextlib.suppress(MeshServeError):
                await election.release()


async def _connected(
    settings: Settings,
    options: OperatorOptions,
    *,
    api: KubeApi,
    election: LeaseElection,
    stop: asyncio.Event,
) -> None:
    """Serve over one etcd connection, until ``stop`` or the etcd Secret changes."""
    inputs = Inputs()
    config = await _initial_config(api, options, inputs)
    secret = await _etcd_secret(api, options, config.etcd_secret_name, stop=stop)
    if secret is None:
        return
    with tempfile.TemporaryDirectory(prefix="meshserve-operator-") as files:
        store_settings = etcd_store_settings(secret, base=settings.store, files=pathlib.Path(files))
        # The CA an inline certificate names is written beside the file.
        connected = settings.model_copy(
            update={"store": store_settings, "data_dir": pathlib.Path(files)}
        )
        async with open_store(connected) as store, Registry.open(store) as registry:
            resources_store = ResourceStore(
                store, local_roots=LocalRoots.for_resources(settings.storage)
            )
            view = ClusterResources(
                api,
                admit=resources_store.admit,
                events_namespace=options.namespace,
                serves=partial(
                    serves,
                    namespace=options.namespace,
                    clusterwide=options.clusterwide,
                    inputs=inputs,
                ),
            )
            wake = _Wake()
            registry_k = build_registry(
                namespace=options.namespace,
                clusterwide=options.clusterwide,
                inputs=inputs,
                seen=view.seen,
                gone=view.gone,
                secret_names=lambda: {_config(inputs, options).etcd_secret_name},
                changed=wake,
            )
            _login(registry_k, options.connection)
            await _prime(api, view, inputs, options)
            async with (
                _kopf_running(registry_k, options, stop=stop),
                _mesh_member(
                    connected, registry, store=store, identity=options.identity
                ) as instance,
            ):
                secret_text = secret_value(secret, "etcd_connection")
                await _act(
                    connected,
                    options,
                    api=api,
                    view=view,
                    inputs=inputs,
                    instance=instance,
                    store=store,
                    election=election,
                    wake=wake,
                    stop=stop,
                    etcd_changed=lambda: _etcd_changed(inputs, options, secret_text),
                )


def _etcd_changed(inputs: Inputs, options: OperatorOptions, used: str | None) -> bool:
    name = _config(inputs, options).etcd_secret_name
    current = inputs.secrets.get(name)
    return current is not None and secret_value(current, "etcd_connection") != used


async def _act(
    settings: Settings,
    options: OperatorOptions,
    *,
    api: KubeApi,
    view: ClusterResources,
    inputs: Inputs,
    instance: Instance,
    store: Store,
    election: LeaseElection,
    wake: _Wake,
    stop: asyncio.Event,
    etcd_changed: Callable[[], bool],
) -> None:
    """The passes of the active replica (a standby waits here)."""
    control = settings.control
    controller: Controller | None = None
    controller_config: ClusterConfig | None = None
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            if etcd_changed():
                log.info("the etcd connection Secret changed: connecting again")
                return
            leading = asyncio.ensure_future(election.wait_until_leader())
            await asyncio.wait({leading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            leading.cancel()
            if stop.is_set():
                return
            config = _config(inputs, options)
            if controller is None or config != controller_config:
                controller_config = config
                controller = _controller(
                    settings,
                    options,
                    config,
                    api=api,
                    view=view,
                    instance=instance,
                    store=store,
                    namespaces=lambda: inputs.enabled_namespaces if options.clusterwide else (),
                )
            try:
                await _pass(view, controller)
            except MeshServeError as exc:
                log.warning("operator pass failed: %s", exc)
            wake.event.clear()
            waking = asyncio.ensure_future(wake.event.wait())
            await asyncio.wait(
                {waking, stopping},
                timeout=control.operator_interval_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            waking.cancel()
    finally:
        stopping.cancel()


async def _pass(view: ClusterResources, controller: Controller) -> None:
    for key in view.without_finalizer():
        await view.add_finalizer(key)
    for key, document in view.deleting().items():
        await controller.release(key, document)
        await view.remove_finalizer(key)
    # A namespace unlabelled (cluster scope): its resources are let go, as
    # upstream stops serving it; labelled again, they are taken up anew.
    for key, document in view.held_unserved().items():
        await controller.release(key, document)
        await view.remove_finalizer(key, deleting=False)
    await controller.reconcile()


def _controller(
    settings: Settings,
    options: OperatorOptions,
    config: ClusterConfig,
    *,
    api: KubeApi,
    view: ClusterResources,
    instance: Instance,
    store: Store,
    namespaces: Callable[[], Iterable[str]],
) -> Controller:
    pools = DeploymentPools(
        resources=view,
        writer=ObjectWriter(api, namespace=options.namespace),
        config=lambda: config,
        namespaces=namespaces,
    )
    host = f"{config.inference_service_name}.{options.namespace}"
    return Controller(
        store=store,
        mesh=instance,
        candidate_id=options.identity,
        lease_ttl_s=settings.mesh.lease_ttl_s,
        grpc_url=f"{host}:{config.grpc_port}",
        rest_url=f"http://{host}:{config.rest_port}" if config.rest_enabled else None,
        control=config.control_settings(settings.control),
        pools=pools,
        resources=view,
        pool_spec=pools.pool_spec,
        # On a cluster every runtime, the built-in one too, runs as pods.
        skip_pools=(),
    )


def _config(inputs: Inputs, options: OperatorOptions) -> ClusterConfig:
    allowed = options.allowed_runtime_images
    """model-serving-config's config.yaml as the cluster config; one that
    cannot be read counts as none (logged), as upstream keeps its defaults."""
    document: Any = None
    if inputs.config_yaml:
        try:
            document = yaml.safe_load(inputs.config_yaml)
        except yaml.YAMLError as exc:
            log.warning(
                "%s: config.yaml is not YAML (%s); using the defaults", CONFIG_MAP_NAME, exc
            )
    try:
        return ClusterConfig.from_config_yaml(
            document if isinstance(document, dict) else None,
            namespace=options.namespace,
            image=options.image,
            allowed_runtime_images=allowed,
        )
    except ValueError as exc:
        log.warning("%s: %s; using the defaults", CONFIG_MAP_NAME, exc)
        return ClusterConfig.from_config_yaml(
            None, namespace=options.namespace, image=options.image, allowed_runtime_images=allowed
        )


async def _initial_config(api: KubeApi, options: OperatorOptions, inputs: Inputs) -> ClusterConfig:
    """Read the config map once before the watches start, so that the first
    pass renders with it (not with the defaults, then again)."""
    found = await api.get(Ref(CONFIG_MAPS, options.namespace, CONFIG_MAP_NAME))
    if found is not None:
        inputs.config_yaml = (found.get("data") or {}).get("config.yaml")
    return _config(inputs, options)


async def _etcd_secret(
    api: KubeApi, options: OperatorOptions, name: str, *, stop: asyncio.Event
) -> dict[str, Any] | None:
    """The etcd connection Secret, waited for (None: stopped meanwhile)."""
    ref = Ref(SECRETS, options.namespace, name)
    said = False
    while not stop.is_set():
        try:
            found = await api.get(ref)
            if found is not None:
                return found
            problem = "not found"
        except MeshServeError as exc:
            problem = str(exc)
        if not said:
            log.warning(
                "waiting for the etcd connection Secret %s/%s: %s", options.namespace, name, problem
            )
            said = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 2.0)
    return None


async def _prime(
    api: KubeApi, view: ClusterResources, inputs: Inputs, options: OperatorOptions
) -> None:
    """List what the watches will follow, before they start: a pass never
    acts on a partial view (one that lacks a runtime would prune its
    Deployment). The watches' events, all later, then keep it current."""
    where = None if options.clusterwide else options.namespace
    if options.clusterwide:
        for namespace in await api.list(NAMESPACES, namespace=None):
            labels = (namespace.get("metadata") or {}).get("labels") or {}
            if str(labels.get(ENABLED_LABEL)) == "true":
                inputs.enabled_namespaces.add(str(namespace["metadata"]["name"]))
    served = [
        (SERVING_RUNTIMES, "ServingRuntime"),
        (INFERENCE_SERVICES, "InferenceService"),
        (PREDICTORS, "Predictor"),
    ]
    if options.clusterwide:
        served.append((CLUSTER_SERVING_RUNTIMES, "ClusterServingRuntime"))
    for endpoint, kind in served:
        for document in await api.list(endpoint, namespace=where):
            view.seen({**document, "kind": kind})


def _login(registry: kopf.OperatorRegistry, connection: KubeConnection) -> None:
    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(
            server=connection.server,
            token=connection.token,
            scheme="Bearer" if connection.token else None,
            ca_path=connection.ca_path,
        )


@contextlib.asynccontextmanager
async def _kopf_running(
    registry: kopf.OperatorRegistry, options: OperatorOptions, *, stop: asyncio.Event
) -> AsyncIterator[None]:
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # no Events: no verbs beyond the watched ones
    settings.scanning.disabled = True  # no CRD / namespace scanning: fixed resources
    # kopf takes SIGTERM / SIGINT over (the loop's handlers are replaced):
    # kopf ending on its own is the signal to stop; stopping is ours, not a
    # SIGKILL after its timeout.
    settings.process.ultimate_exiting_timeout = None
    kopf_stop = asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(
            registry=registry,
            settings=settings,
            standalone=True,  # one active replica is the Lease's business
            clusterwide=options.clusterwide,
            namespaces=() if options.clusterwide else (options.namespace,),
            stop_flag=kopf_stop,
        ),
        name="operator-kopf",
    )

    def ended(_: asyncio.Task[None]) -> None:
        if not kopf_stop.is_set():
            log.info("the watches stopped (a signal): stopping")
            stop.set()

    task.add_done_callback(ended)
    try:
        yield
    finally:
        kopf_stop.set()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, 10.0)
        if not task.done():
            task.cancel()


@contextlib.asynccontextmanager
async def _mesh_member(
    settings: Settings, registry: Registry, *, store: Store, identity: str
) -> AsyncIterator[Instance]:
    """The operator's place in the mesh: an instance placement never
    chooses (labelled HOLDS_NO_MODELS, never given a copy), through which
    the controller registers models and asks the others to load them."""
    peers = peer_client(settings, secret=await secret_from_store(store))
    # It loads nothing: no model libraries imported, no pickle.
    runtime_settings = settings.runtime.model_copy(
        update={"host": "inprocess", "allow_pickle": False, "preload_libraries": False}
    )
    try:
        async with (
            InProcessRuntime(settings=runtime_settings) as runtime,
            Instance.open(
                instance_id=f"operator-{identity}",
                registry=registry,
                runtime=runtime,
                settings=settings.cache,
                mesh=settings.mesh,
                labels=(HOLDS_NO_MODELS,),
                peers=peers,
            ) as instance,
        ):
            instance.mark_ready()
            yield instance
    finally:
        await peers.close()
