"""Settings of the front ends: ports, message sizes, limits, the metrics
port and the logs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from meshserve.settings._group import MIB, Group
from meshserve.settings._payload_uris import parse_processors

__all__ = [
    "LimitsSettings",
    "LogSettings",
    "MetricsSettings",
    "PayloadSettings",
    "ServerSettings",
    "TracingSettings",
]


class ServerSettings(Group):
    """The instance's front ends."""

    host: str = "127.0.0.1"
    """Address the gRPC and REST ports bind to. Loopback by default: opening
    a model server to the network is a decision, not a default."""

    grpc_port: int = Field(default=8033, ge=0, le=65535)
    """Inference + management gRPC port (ModelMesh's 8033); 0 picks one."""

    rest_port: int = Field(default=8008, ge=0, le=65535)
    """v2 REST port (ModelMesh Serving's REST proxy uses 8008); 0 picks one."""

    rest_enabled: bool = True
    """Serve REST (model-serving-config: restProxy.enabled)."""

    grpc_max_message_size_bytes: int = Field(default=16 * MIB, gt=0)
    """Largest request or response accepted, gRPC and REST alike
    (model-serving-config: grpcMaxMessageSizeBytes)."""

    grace_period_s: float = Field(default=5.0, ge=0)
    """How long in-flight requests may finish at shutdown."""

    lame_duck_s: float = Field(default=5.0, ge=0)
    """On SIGTERM, seconds the instance keeps serving every request that
    arrives (here, or forwarded to a copy elsewhere) while it reports not
    ready and its record tells the other instances to route elsewhere; only
    then does it drain (``mesh.drainDeadlineS``) and close its ports. It
    covers the time load balancers take to stop sending to it: Kubernetes
    takes a terminating pod out of its Service at once (without waiting for
    the readiness probe), and kube-proxy and ingress controllers apply that
    within a second or two; 5 s leaves margin. A balancer that follows only
    the readiness probe needs period x failureThreshold (10 s with
    deploy/kubernetes' probe): raise it to that there. The whole stop (this
    + drain + two ``gracePeriodS``) must fit in the pod's
    terminationGracePeriodSeconds (60 in deploy/kubernetes). SIGINT (Ctrl-C)
    or a second signal ends it early. 0: no lame duck."""

    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    """The event loop the instance, and the runtime process it starts, run
    on: ``uvloop`` (used when installed, else asyncio's) or ``asyncio``.
    uvloop by default: grpc.aio schedules several callbacks and tasks per
    call, and uvloop runs that machinery in compiled code, which cut the
    CPU per request of bench/overhead.py's in-process target by about a
    quarter (docs/benchmarks.md). ``asyncio`` is there for a platform or a
    library that needs the standard loop."""

    access_logging: bool = False
    """Log one line per inference request, gRPC and REST, to the logger
    ``meshserve.access`` (model-serving-config: enableAccessLogging): model
    and vmodel id, method, status code, latency, caller and instance; never
    credentials or payloads. Off by default as in ModelMesh: a busy instance
    would write a line per request."""

    grpc_reflection: bool = True
    """Serve gRPC server reflection on the public gRPC ports, so that
    ``grpcurl`` and other reflection clients list and describe the services
    without .proto files. It reveals only the published API's schemas, and
    with auth on it needs a credential as the other calls do. Off: clients
    need the .proto files."""

    share_ports: bool = False
    """Let several instances on one machine listen on the same gRPC and REST
    ports (SO_REUSEPORT; ``meshserve up --instances N`` sets it). Off
    otherwise, so that a second server on a taken port fails loudly instead
    of silently taking half the traffic. An instance sharing the gRPC port
    also serves it on a free port of its own, listed in endpoints.json.
    Connections to a shared gRPC port live at most ``lameDuckS / 2``
    (``grpcMaxConnectionAgeS`` capped), so that an instance leaving in a
    rolling restart has handed its clients to the others before it stops."""

    namespace_ports: dict[str, Annotated[int, Field(ge=0, le=65535)]] = Field(default_factory=dict)
    """Namespace -> port: one more public gRPC port per entry (same host,
    TLS and checks), where a plain model name means ``<namespace>/<name>``
    without the ``mm-namespace`` header; 0 picks a free port. The status of
    a resource in such a namespace gives that port as its gRPC URL, so that
    a client taking ``grpcUrl`` verbatim reaches the model by its plain
    name, as with ModelMesh Serving's mesh per namespace. The port serves
    v2 inference only. Empty by default: the main port serves every
    namespace (with the header or the caller's one namespace)."""

    max_inflight_decode_bytes: int = Field(default=64 * MIB, ge=0)
    """Bytes of inference request bodies (REST and gRPC ModelInfer) one
    instance holds and decodes at once. A request that would go over is
    refused with 429 / RESOURCE_EXHAUSTED (and counted as
    ``meshserve_limit_rejected_total{limit="inflight_bytes"}``), except when
    it is the only one: then it is served whatever its size. Decoding a JSON
    body takes several times its size (8 bodies of 15 MB took 640 MB), so
    this bounds the instance's memory under a flood of large requests. The
    default lets four requests of the largest size
    (``grpcMaxMessageSizeBytes``) in at once. 0: unlimited."""

    offload_decode_bytes: int = Field(default=256 * 1024, ge=0)
    """REST bodies larger than this are decoded (and their replies encoded)
    on a worker thread, so that a large body does not stall every other
    request on the event loop (15 MB of JSON takes ~0.25 s to decode).
    Smaller ones are decoded inline, where a thread hop would cost more
    than the decoding. 0: every body goes to a thread."""

    header_timeout_s: float = Field(default=10.0, gt=0)
    """A client must send a request's headers within this many seconds of
    connecting (or of starting the request, on a kept-alive connection);
    otherwise the connection is closed (REST answers 408 when part of a
    request came). On gRPC it bounds the connection handshake (TLS and the
    HTTP/2 preface). Headers fit in one packet, so 10 s only cuts clients
    that hold connections open on purpose (slowloris)."""

    body_timeout_s: float = Field(default=60.0, gt=0)
    """A REST request body must arrive in full within this many seconds of
    its headers; otherwise the server answers 408 and closes the connection.
    60 s is 16 MiB (the largest body) at ~280 KB/s. (gRPC messages have no
    such bound; ``grpcMaxConnectionAgeS`` bounds them.)"""

    idle_timeout_s: int = Field(default=5, ge=1)
    """A kept-alive REST connection with no request for this many seconds is
    closed (uvicorn's default; it keeps no state, so clients reconnect
    cheaply)."""

    max_connections_per_client: int = Field(default=128, ge=0)
    """Open REST connections one client IP address may have; beyond it a new
    connection is answered 503 and closed. Counted per instance. A client's
    connection pool rarely needs more than tens. 0: unlimited. (gRPC
    multiplexes calls on one connection: see ``grpcMaxStreamsPerConnection``.)"""

    status_rows: int = Field(default=20, ge=1, le=1000)
    """Rows of each list on the status page (``GET /status``) and in
    ``meshserve status``: the hottest models, loads in flight and recent
    failures. Enough to see what matters on one screen, and it keeps the
    reply small on a mesh of thousands of models (the page polls it)."""

    status_refresh_s: float = Field(default=5.0, ge=1.0)
    """How often the status page polls for a new snapshot, in seconds. The
    mesh's records move on their own schedules (instance records every few
    seconds, last use about once a minute), so polling faster shows nothing
    new."""

    grpc_max_connection_idle_s: float = Field(default=300.0, ge=0)
    """A gRPC connection with no call for this long is closed (clients
    reconnect on their next call). 0: never."""

    grpc_max_connection_age_s: float = Field(default=3600.0, ge=0)
    """A gRPC connection older than this is asked to go away (clients
    reconnect transparently), and closed ``grpcMaxConnectionAgeGraceS``
    later: the bound on a call whose message never finishes arriving. 0:
    never."""

    grpc_max_connection_age_grace_s: float = Field(default=300.0, ge=0)
    """Calls in flight on a connection past its age get this long to finish.
    Longer than a model load (``modelLoadingTimeoutMillis``, 90 s) plus an
    inference, so that no legitimate call is cut."""

    grpc_keepalive_time_s: float = Field(default=120.0, gt=0)
    """The server pings a gRPC connection that has sent nothing for this
    long, to find clients that vanished while a call was in flight."""

    grpc_keepalive_timeout_s: float = Field(default=20.0, gt=0)
    """A connection that does not answer the ping within this is closed."""

    grpc_max_streams_per_connection: int = Field(default=128, ge=1)
    """Calls one gRPC connection may have in flight at once (HTTP/2
    ``SETTINGS_MAX_CONCURRENT_STREAMS``); a client's further calls wait on
    its side."""


class LimitsSettings(Group):
    """What one caller or one namespace may use. 0 is unlimited throughout,
    like ModelMesh, which has none of these limits."""

    requests_per_second: float = Field(default=0.0, ge=0)
    """Sustained requests per second one caller may send to the gRPC and REST
    ports together (a token bucket per caller, per instance). The caller is
    the principal when auth is enabled, otherwise the client's IP address.
    Health probes are not counted. 0: unlimited."""

    request_burst: int = Field(default=0, ge=0)
    """Requests a caller may send at once after being idle (the bucket's
    size). 0: one second's worth of ``requests_per_second``, at least 1."""

    models_per_namespace: int = Field(default=0, ge=0)
    """Models one namespace may have registered (the namespace of
    ``team-a/fraud`` is ``team-a``; other ids are in ``default``). 0: unlimited."""

    namespace_max_bytes: int = Field(default=0, ge=0)
    """Bytes the models of one namespace may take together, counting each
    model's size as last measured when loaded (0 for a model never loaded). A
    load that would go over is refused. 0: unlimited."""


class MetricsSettings(Group):
    """Prometheus metrics (model-serving-config: metrics)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    """Address the metrics port binds to."""

    port: int = Field(default=2112, ge=0, le=65535)
    """ModelMesh's metrics port; 0 picks one."""

    per_model: bool = False
    """Label every histogram with ``modelId`` and ``vModelId`` (ModelMesh's
    ``per_model_metrics``). Off by default: each model multiplies the
    number of series a scrape returns."""

    scheme: Literal["http", "https"] = "http"
    """``https`` serves the metrics port with the instance's TLS certificate
    (the ``tls`` settings, which it then needs; clients are not asked for a
    certificate). ``http`` by default because TLS is off by default;
    ModelMesh Serving's default is ``https``."""


class LogSettings(Group):
    """How the instance writes its log (the level is the ``--log-level``
    flag, and the ``logger_level`` config key at run time)."""

    format: Literal["console", "json", "auto"] = "console"
    """``console``: readable lines (``time LEVEL logger: message [fields]``).
    ``json``: one JSON object a line, for log collectors (fields in
    docs/observability.md). ``auto``: console when stderr is a terminal,
    JSON otherwise. Console by default, so that what a person reads, and
    what tools already grep, stays as it was; set ``json`` where a
    collector reads the log (``MESHSERVE_LOG__FORMAT=json``)."""


class TracingSettings(Group):
    """OpenTelemetry tracing. Where spans go is the standard ``OTEL_*``
    variables' business (``OTEL_EXPORTER_OTLP_ENDPOINT``,
    ``OTEL_TRACES_SAMPLER``...); this only turns it on."""

    enabled: bool = False
    """Record spans around receive, route, forward, load and infer, and
    export them over OTLP (gRPC). Off by default: then no span is built and
    the SDK is not even imported."""

    service_name: str = "meshserve"
    """``service.name`` of the spans when ``OTEL_SERVICE_NAME`` sets none."""


class PayloadSettings(Group):
    """ModelMesh's payload processors: every inference request and response
    handed to loggers or remote HTTP endpoints, off the request path."""

    processors: str = ""
    """Space-separated URIs (model-serving-config: payloadProcessors):
    ``logger://`` logs each payload to the logger ``meshserve.payloads``;
    ``http://host:port/path`` or ``https://...`` POSTs it there. A query
    (``logger:///*?my-model``) keeps one model's payloads only. Empty (the
    default): no payload is copied."""

    queue_size: int = Field(default=1024, ge=1)
    """Payloads waiting for each processor. A payload that finds the queue
    full is dropped and counted (``meshserve_payloads_dropped_total``), so a
    slow endpoint never slows inference; 1024 covers a second of a busy
    instance's requests while an endpoint hiccups."""

    timeout_s: float = Field(default=5.0, gt=0)
    """How long one POST to a remote processor may take before the payload
    is given up (and counted as dropped)."""

    @field_validator("processors")
    @classmethod
    def _processors_parse(cls, value: str) -> str:
        parse_processors(value)  # ValueError naming the URI that is not one
        return value
