"""ModelMesh Serving's ``model-serving-config`` read as meshserve settings.

ModelMesh Serving is configured by a ConfigMap named ``model-serving-config``
whose ``config.yaml`` key holds a YAML document (keys case-insensitive).
meshserve takes that document, or the whole ConfigMap manifest, as its config
file and maps the keys it acts on onto its settings. The rest (images,
resources, pod labels, service account ...) describe Kubernetes objects
meshserve does not create: they are reported, never refused, so a cluster's
file works unchanged.

Standalone there are no mounted Secrets: ``tls.secretName`` and
``storageSecretName`` name directories holding the Secret's keys as files
(what a mounted Secret looks like), relative to the config file's directory.
``storageSecretName`` also names the Secret applied with ``meshserve apply``
(sealed in the store) that each namespace's pulls read.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["ServingConfig", "is_serving_config", "read_serving_config"]

SettingPath = tuple[str, ...]

# model-serving-config key (lowercased) -> (its spelling, the setting it sets).
_MAPPED: dict[str, tuple[str, SettingPath]] = {
    key.lower(): (key, path)
    for key, path in {
        "inferenceServiceName": ("store", "service_name"),
        "inferenceServicePort": ("server", "grpc_port"),
        "podsPerRuntime": ("control", "pods_per_runtime"),
        "grpcMaxMessageSizeBytes": ("server", "grpc_max_message_size_bytes"),
        "scaleToZero.enabled": ("control", "scale_to_zero_enabled"),
        "scaleToZero.gracePeriodSeconds": ("control", "scale_to_zero_grace_period_s"),
        "restProxy.enabled": ("server", "rest_enabled"),
        "restProxy.port": ("server", "rest_port"),
        "metrics.enabled": ("metrics", "enabled"),
        "metrics.port": ("metrics", "port"),
        "metrics.perModel": ("metrics", "per_model"),
        "enableAccessLogging": ("server", "access_logging"),
        "payloadProcessors": ("payloads", "processors"),
    }.items()
}

# Keys with their own handling below.
_SPECIAL = {"tls.secretname", "tls.clientauth", "storagesecretname", "metrics.scheme"}

# model-serving-config keys about Kubernetes objects meshserve does not create.
_IGNORED = {
    key.lower()
    for key in (
        "etcdSecretName",
        "modelMeshEndpoint",
        "allowAnyPVC",
        "headlessService",
        "modelMeshImage",
        "modelMeshResources",
        "restProxy.image",
        "restProxy.resources",
        "storageHelperImage",
        "storageHelperResources",
        "builtInServerTypes",
        "serviceAccountName",
        "metrics.disablePrometheusOperatorSupport",
        "runtimePodLabels",
        "runtimePodAnnotations",
        "imagePullSecrets",
        "internalModelMeshEnvVars",
    )
}

# Top-level keys whose value is a group of the keys above.
_GROUPS = {"scaletozero", "restproxy", "metrics", "tls"}

_TOP_LEVEL = {key.split(".")[0] for key in (*_MAPPED, *_SPECIAL, *_IGNORED)}

# Keys only ModelMesh's shape has inside the groups both shapes share
# (meshserve's settings also have ``metrics`` and ``tls``).
_OWN_SUBKEYS = {"tls": {"secretname"}, "metrics": {"disableprometheusoperatorsupport"}}


@dataclass(frozen=True, slots=True)
class ServingConfig:
    """What a model-serving-config document means to meshserve."""

    values: dict[str, Any]
    """Nested settings values, snake_case (``{"server": {"rest_enabled": ...}}``)."""

    origins: dict[SettingPath, str]
    """Setting path -> the model-serving-config key (as spelled) that set it."""

    ignored: tuple[str, ...] = ()
    """model-serving-config keys meshserve has no use for, as spelled."""

    unknown: tuple[str, ...] = ()
    """Keys that are not model-serving-config keys at all (typos, most likely)."""

    notes: tuple[str, ...] = ()
    """Other things worth a warning (a value meshserve cannot honour)."""

    def warnings(self) -> list[str]:
        """One line per kind of key not acted on; empty when all were used."""
        out = list(self.notes)
        if self.ignored:
            out.append(
                "model-serving-config keys meshserve has no use for (ignored): "
                + ", ".join(self.ignored)
            )
        if self.unknown:
            out.append(
                "keys that are not model-serving-config keys (ignored): " + ", ".join(self.unknown)
            )
        return out


def is_serving_config(data: Mapping[str, Any], *, meshserve_keys: set[str]) -> bool:
    """Whether a config file's top-level mapping is ModelMesh Serving's shape.

    It is when it is a ConfigMap manifest, or has a model-serving-config key
    and none of ``meshserve_keys`` (lowercased top-level setting names). A
    file with only the keys both shapes share (``metrics``, ``tls``) is
    ModelMesh's when it uses one of the sub-keys only ModelMesh has
    (``tls.secretName``, ``metrics.disablePrometheusOperatorSupport``); otherwise it reads the same
    either way or is meshserve's.
    """
    if data.get("kind") == "ConfigMap":
        return True
    keys = {str(key).lower() for key in data}
    if keys & (meshserve_keys - _TOP_LEVEL):
        return False
    if keys & (_TOP_LEVEL - meshserve_keys):
        return True
    return any(
        isinstance(group, Mapping) and {str(k).lower() for k in group} & _OWN_SUBKEYS[name]
        for key, group in data.items()
        if (name := str(key).lower()) in _OWN_SUBKEYS
    )


def read_serving_config(data: Mapping[str, Any], *, base_dir: pathlib.Path) -> ServingConfig:
    """Map a model-serving-config document (or its ConfigMap) onto settings.

    ``base_dir`` is where relative Secret directories are looked up (the
    config file's directory). Raises ValueError for what cannot be served as
    written (``tls.clientAuth`` without certificates to verify clients).
    """
    notes: list[str] = []
    if data.get("kind") == "ConfigMap":
        data, notes = _unwrap_configmap(data)
    values: dict[str, Any] = {}
    origins: dict[SettingPath, str] = {}
    ignored: list[str] = []
    unknown: list[str] = []

    def put(path: SettingPath, value: Any, key: str) -> None:
        node = values
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
        origins[path] = key

    tls_dir: pathlib.Path | None = None
    client_auth: tuple[str, str] | None = None
    scheme: tuple[str, str] | None = None
    for key, value in _leaves(data):
        lowered = key.lower()
        if value is None:
            continue  # YAML null: unset, the default applies
        if lowered in _MAPPED:
            put(_MAPPED[lowered][1], value, key)
        elif lowered == "tls.secretname":
            if value:  # empty: no TLS, as in ModelMesh Serving
                tls_dir = _directory(value, base_dir)
                put(("tls", "cert_file"), tls_dir / "tls.crt", key)
                put(("tls", "key_file"), tls_dir / "tls.key", key)
                if (tls_dir / "ca.crt").exists():  # optional in the Secret
                    put(("tls", "ca_file"), tls_dir / "ca.crt", key)
        elif lowered == "tls.clientauth":
            if value:  # empty: clients are not asked for certificates
                client_auth = (key, str(value).lower())
        elif lowered == "storagesecretname":
            put(("storage", "config_path"), _directory(value, base_dir), key)
            put(("storage", "secret_name"), str(value), key)
        elif lowered == "metrics.scheme":
            scheme = (key, str(value).lower())
        elif lowered in _IGNORED:
            ignored.append(key)
        else:
            unknown.append(key)
    if client_auth is not None:
        key, mode = client_auth
        if tls_dir is None:
            raise ValueError(f"{key}: {mode} needs tls.secretName (the certificates' directory)")
        if mode != "none" and not (tls_dir / "ca.crt").exists():
            raise ValueError(f"{key}: {mode} needs {tls_dir / 'ca.crt'} to verify clients")
        put(("tls", "client_auth"), mode, key)
    if scheme is not None:
        key, value = scheme
        if value == "https" and tls_dir is None:
            # ModelMesh would make up a certificate; a file written for it
            # keeps working, over http, and says so.
            notes.append(
                f"{key}: https needs tls.secretName (the certificate to serve); "
                "metrics are served over plain http"
            )
        else:
            put(("metrics", "scheme"), value, key)
    return ServingConfig(
        values=values,
        origins=origins,
        ignored=tuple(ignored),
        unknown=tuple(unknown),
        notes=tuple(notes),
    )


def _unwrap_configmap(manifest: Mapping[str, Any]) -> tuple[Mapping[str, Any], list[str]]:
    entries = manifest.get("data") or {}
    if not isinstance(entries, Mapping) or "config.yaml" not in entries:
        raise ValueError("a ConfigMap config file needs data.config.yaml (model-serving-config)")
    document = yaml.safe_load(entries["config.yaml"] or "") or {}
    if not isinstance(document, Mapping):
        raise ValueError("data.config.yaml: expected a mapping at the top level")
    others = sorted(str(key) for key in entries if key != "config.yaml")
    notes = [f"ConfigMap data keys other than config.yaml (ignored): {', '.join(others)}"]
    return document, notes if others else []


def _leaves(data: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """Dotted keys as spelled in the file, one level into the known groups."""
    for key, value in data.items():
        if str(key).lower() in _GROUPS and isinstance(value, Mapping):
            for sub, sub_value in value.items():
                yield f"{key}.{sub}", sub_value
        else:
            yield str(key), value


def _directory(value: Any, base_dir: pathlib.Path) -> pathlib.Path:
    # A Secret's name is a directory here (a mounted Secret), beside the file.
    return base_dir / str(value)
