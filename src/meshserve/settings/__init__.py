"""meshserve's settings: one typed object, built once and passed in.

Sources, lowest to highest precedence: defaults (ModelMesh Serving's where it
has one), a YAML config file, ``MESHSERVE_*`` environment variables (``__``
between nested names, e.g. ``MESHSERVE_RUNTIME__CAPACITY_BYTES``), then
command-line flags. Config files may spell keys in ModelMesh's camelCase
(``capacityBytes``) or in snake_case, or be ModelMesh Serving's
``model-serving-config`` (see ``meshserve._serving_config``), recognised by
its keys. ``load_settings_with_sources`` also says where each value came from.

One module per concern: ``_runtime`` (runtime, cache), ``_server`` (front
ends, limits, metrics port, logs), ``_store`` (store, storage), ``_security`` (TLS,
auth, sealing), ``_mesh`` (mesh, control), ``_root`` (:class:`Settings`, the
groups together) and ``_loader`` (the sources).
"""

from meshserve._provenance import Source, SourceKind
from meshserve.settings._loader import load_settings, load_settings_with_sources, setting_name
from meshserve.settings._mesh import ControlSettings, MeshSettings
from meshserve.settings._payload_uris import ProcessorSpec, parse_processors
from meshserve.settings._root import Settings
from meshserve.settings._runtime import CacheSettings, RuntimeSettings
from meshserve.settings._security import AuthSettings, ClientAuth, SecuritySettings, TlsSettings
from meshserve.settings._server import (
    LimitsSettings,
    LogSettings,
    MetricsSettings,
    PayloadSettings,
    ServerSettings,
    TracingSettings,
)
from meshserve.settings._store import StorageSettings, StoreSettings

__all__ = [
    "AuthSettings",
    "CacheSettings",
    "ClientAuth",
    "ControlSettings",
    "LimitsSettings",
    "LogSettings",
    "MeshSettings",
    "MetricsSettings",
    "PayloadSettings",
    "ProcessorSpec",
    "RuntimeSettings",
    "SecuritySettings",
    "ServerSettings",
    "Settings",
    "Source",
    "SourceKind",
    "StorageSettings",
    "StoreSettings",
    "TlsSettings",
    "TracingSettings",
    "load_settings",
    "load_settings_with_sources",
    "parse_processors",
    "setting_name",
]
