"""The flags ``up`` and ``instance`` share, and the settings they make."""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from meshserve import _event_loop
from meshserve._event_loop import EventLoop
from meshserve._log_format import writes_json
from meshserve.cli._options import allow_pickle_option, capacity_option, config_option
from meshserve.errors import MeshServeError
from meshserve.runtime import ListenAddress
from meshserve.security import root_warning
from meshserve.server import ModelEntry, load_register_file
from meshserve.settings import Settings, Source, load_settings_with_sources

__all__ = [
    "overrides_from_flags",
    "register_entries",
    "serve",
    "serve_options",
    "settings_from_flags",
    "settings_options",
    "settings_with_sources_from_flags",
    "warn_if_root",
]

F = TypeVar("F", bound=Callable[..., Any])

_REGISTER = click.option(
    "--register",
    "register_file",
    type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
    default=None,
    help="YAML file of models to register at start (models: [{name, type, path}]).",
)

_OPTIONS = (
    click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=pathlib.Path),
        default=None,
        help="Store, logs and endpoints.json  [default: ./.meshserve]",
    ),
    click.option("--host", default=None, help="Bind address  [default: 127.0.0.1]"),
    click.option(
        "--grpc-port", type=int, default=None, help="gRPC port, 0 picks one  [default: 8033]"
    ),
    click.option(
        "--rest-port", type=int, default=None, help="REST port, 0 picks one  [default: 8008]"
    ),
    click.option(
        "--metrics-port", type=int, default=None, help="Metrics port, 0 picks one  [default: 2112]"
    ),
    config_option,
    click.option(
        "--runtime-host",
        type=click.Choice(["inprocess", "process", "external"]),
        default=None,
        help="Run the built-in runtime in this process or in a sandboxed child, or drive "
        "an external one at --runtime-address  [default: inprocess]",
    ),
    click.option(
        "--runtime-address",
        default=None,
        metavar="ADDRESS",
        help="With --runtime-host external: 127.0.0.1:PORT or unix:/PATH of a runtime "
        "speaking ModelMesh's SPI.",
    ),
    click.option(
        "--runtime-data-address",
        default=None,
        metavar="ADDRESS",
        help="With --runtime-host external: where that runtime serves v2 inference, when "
        "not at --runtime-address (a model server behind an adapter).  [default: the same]",
    ),
    allow_pickle_option,
    capacity_option,
    _REGISTER,
    click.option(
        "--store",
        default=None,
        metavar="URL",
        help="etcd://HOST:PORT[,HOST:PORT] or sqlite:///PATH  [default: embedded SQLite]",
    ),
    click.option("--etcd-ca", default=None, metavar="PEM", help="CA of etcd's certificate (TLS)."),
    click.option("--etcd-cert", default=None, metavar="PEM", help="Client certificate for etcd."),
    click.option("--etcd-key", default=None, metavar="PEM", help="Its private key."),
    click.option("--etcd-user", default=None, help="etcd user name."),
    click.option(
        "--etcd-password",
        default=None,
        envvar="MESHSERVE_ETCD_PASSWORD",
        help="etcd password (or env MESHSERVE_ETCD_PASSWORD).",
    ),
    click.option("--root-prefix", default=None, help="Namespace inside the store."),
    click.option(
        "--storage-config",
        type=click.Path(exists=True, path_type=pathlib.Path),
        default=None,
        help="ModelMesh Serving's storage-config: a file of storage key -> JSON, or a "
        "directory of one file per key (a mounted Secret). Re-read when it changes.",
    ),
    click.option(
        "--tls-cert",
        type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
        default=None,
        help="PEM certificate: serve gRPC, REST and the internal port over TLS.",
    ),
    click.option(
        "--tls-key",
        type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
        default=None,
        help="PEM private key of --tls-cert (PKCS8).",
    ),
    click.option(
        "--tls-ca",
        type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
        default=None,
        help="CA that client and peer certificates chain to; required with --tls-cert "
        "(instance links are mutual TLS).",
    ),
    click.option(
        "--tls-client-auth",
        type=click.Choice(["none", "optional", "require"]),
        default=None,
        help="Ask clients for certificates  [default: none]",
    ),
    click.option(
        "--pvc-root",
        "pvc_roots",
        multiple=True,
        metavar="DIR|NAME=DIR",
        help="Where pvc://NAME/path resolves: DIR/NAME/path; NAME=DIR makes DIR the claim NAME "
        "(pvc://NAME/path is DIR/path). Repeatable: one DIR, any number of NAME=DIR.",
    ),
)


def serve_options(command: F) -> F:
    """Add the shared server flags to ``command``."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def settings_options(command: F) -> F:
    """The server flags that make settings (all but ``--register``), for
    commands that show settings rather than serve."""
    for option in reversed(_OPTIONS):
        if option is not _REGISTER:
            command = option(command)
    return command


def settings_from_flags(**flags: Any) -> Settings:
    """The settings of ``up`` / ``instance``: ``settings_with_sources_from_flags``
    without the sources."""
    settings, _ = settings_with_sources_from_flags(**flags)
    return settings


def settings_with_sources_from_flags(
    *, config: pathlib.Path | None, extra: dict[str, Any] | None = None, **flags: Any
) -> tuple[Settings, dict[str, Source]]:
    """Settings from the config file, the environment and the flags (as
    ``overrides_from_flags`` names them; ``extra`` adds command-specific
    overrides), checked as the server commands need them."""
    overrides = overrides_from_flags(**flags)
    for group, values in (extra or {}).items():
        overrides.setdefault(group, {}).update(values)
    try:
        settings, sources = load_settings_with_sources(config_file=config, overrides=overrides)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if settings.runtime.allow_pickle and settings.runtime.host != "process":
        raise click.UsageError(
            "--allow-pickle needs --runtime-host process: a pickle runs code when it loads, "
            "so it only loads in the sandboxed child process"
        )
    if settings.runtime.host == "external":
        if not settings.runtime.external_address:
            raise click.UsageError("--runtime-host external needs --runtime-address")
        try:
            ListenAddress.parse(settings.runtime.external_address)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--runtime-address") from None
        if settings.runtime.external_data_address:
            try:
                ListenAddress.parse(settings.runtime.external_data_address)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--runtime-data-address") from None
    if settings.tls is not None and settings.tls.ca_file is None:
        # Every instance has an internal port for the links between
        # instances (and the runtime pools `up` starts): mutual TLS, which
        # needs the CA the certificates chain to.
        raise click.UsageError(
            "--tls-cert/--tls-key need --tls-ca (tls.caFile): the links between instances "
            "are mutual TLS, verified against that CA"
        )
    url = settings.store.url
    if url and not url.startswith(("etcd://", "sqlite:///")):
        raise click.BadParameter(
            f"{url!r}: expected etcd://HOST:PORT[,HOST:PORT] or sqlite:///PATH",
            param_hint="--store",
        )
    return settings, sources


def overrides_from_flags(
    *,
    data_dir: pathlib.Path | None,
    host: str | None,
    grpc_port: int | None,
    rest_port: int | None,
    metrics_port: int | None,
    runtime_host: str | None,
    runtime_address: str | None,
    runtime_data_address: str | None,
    allow_pickle: bool | None,
    capacity: int | None,
    store: str | None,
    etcd_ca: str | None,
    etcd_cert: str | None,
    etcd_key: str | None,
    etcd_user: str | None,
    etcd_password: str | None,
    root_prefix: str | None,
    storage_config: pathlib.Path | None,
    pvc_roots: tuple[str, ...] | None,
    tls_cert: pathlib.Path | None,
    tls_key: pathlib.Path | None,
    tls_ca: pathlib.Path | None,
    tls_client_auth: str | None,
) -> dict[str, Any]:
    """The settings the shared flags set, as nested overrides (None: unset)."""
    return {
        "data_dir": data_dir,
        "server": {"host": host, "grpc_port": grpc_port, "rest_port": rest_port},
        "runtime": {
            "host": runtime_host,
            "external_address": runtime_address,
            "external_data_address": runtime_data_address,
            "allow_pickle": allow_pickle,
            "capacity_bytes": capacity,
        },
        "metrics": {"port": metrics_port},
        "store": {
            "url": store,
            "etcd_ca": etcd_ca,
            "etcd_cert": etcd_cert,
            "etcd_key": etcd_key,
            "etcd_user": etcd_user,
            "etcd_password": etcd_password,
            "root_prefix": root_prefix,
        },
        "storage": {"config_path": storage_config, **_pvc_roots(pvc_roots)},
        "tls": {
            "cert_file": tls_cert,
            "key_file": tls_key,
            "ca_file": tls_ca,
            "client_auth": tls_client_auth,
        },
    }


def _pvc_roots(values: tuple[str, ...] | None) -> dict[str, Any]:
    """``--pvc-root`` values as the storage settings they set: a DIR is
    ``pvc_root`` (the last one given wins, so a wrapper's default can be
    overridden); each NAME=DIR a claim of ``pvc_claims`` (made absolute, so
    an instance started elsewhere reads the same directory)."""
    root: pathlib.Path | None = None
    claims: dict[str, pathlib.Path] = {}
    for value in values or ():
        name, sep, directory = value.partition("=")
        if not sep:
            root = pathlib.Path(value).absolute()
            continue
        if not name or "/" in name or name in (".", "..") or not directory:
            raise click.BadParameter(f"{value!r}: expected NAME=DIR", param_hint="--pvc-root")
        claims[name] = pathlib.Path(directory).absolute()
    return {"pvc_root": root, "pvc_claims": claims or None}


def register_entries(register_file: pathlib.Path | None) -> list[ModelEntry]:
    if register_file is None:
        return []
    try:
        return load_register_file(register_file)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--register") from None


def serve(main: Coroutine[Any, Any, None], *, event_loop: EventLoop = "uvloop") -> None:
    """Run a server until it stops, on ``event_loop`` (``server.eventLoop``).
    A failure to start (a runtime that will not come up, an unreachable
    store) ends it with its message and exit code 1, not a traceback."""
    try:
        _event_loop.run(main, loop=event_loop)
    except MeshServeError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None


def warn_if_root(command: str) -> None:
    """Say once, at start, what running as root risks and how to avoid it."""
    warning = root_warning()
    if warning is None:
        return
    if writes_json():
        # One JSON event a line: a bare line would break the collector's parsing.
        logging.getLogger("meshserve.cli").warning("meshserve %s: %s", command, warning)
    else:
        click.echo(f"meshserve {command}: {warning}", err=True)
