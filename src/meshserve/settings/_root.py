"""The one settings object, grouped by concern."""

from __future__ import annotations

import pathlib

from pydantic import model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from meshserve.settings._mesh import ControlSettings, MeshSettings
from meshserve.settings._runtime import CacheSettings, RuntimeSettings
from meshserve.settings._security import AuthSettings, SecuritySettings, TlsSettings
from meshserve.settings._server import (
    LimitsSettings,
    LogSettings,
    MetricsSettings,
    PayloadSettings,
    ServerSettings,
    TracingSettings,
)
from meshserve.settings._store import StorageSettings, StoreSettings

__all__ = ["Settings"]


class Settings(BaseSettings):
    """All of meshserve's settings, grouped by concern."""

    model_config = SettingsConfigDict(
        env_prefix="MESHSERVE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        # An error names the setting and what is wrong, never the value given:
        # it may be a credential (a payload processor URI with a password,
        # an etcd password in the wrong place).
        hide_input_in_errors=True,
    )

    data_dir: pathlib.Path = pathlib.Path(".meshserve")
    """Where the embedded store, logs and endpoints.json live."""

    server: ServerSettings = ServerSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    cache: CacheSettings = CacheSettings()
    store: StoreSettings = StoreSettings()
    mesh: MeshSettings = MeshSettings()
    storage: StorageSettings = StorageSettings()
    metrics: MetricsSettings = MetricsSettings()
    auth: AuthSettings = AuthSettings()
    control: ControlSettings = ControlSettings()
    limits: LimitsSettings = LimitsSettings()
    security: SecuritySettings = SecuritySettings()
    log: LogSettings = LogSettings()
    tracing: TracingSettings = TracingSettings()
    payloads: PayloadSettings = PayloadSettings()
    tls: TlsSettings | None = None
    """TLS on the gRPC, REST and internal ports (instance-to-instance links
    are then mutual TLS). None: plaintext, loopback-only by default."""

    @model_validator(mode="after")
    def _https_metrics_need_tls(self) -> Settings:
        # Serving https with a made-up certificate (as ModelMesh does) would
        # teach scrapers to skip verification: ask for the real one instead.
        if self.metrics.enabled and self.metrics.scheme == "https" and self.tls is None:
            raise ValueError(
                "metrics.scheme https needs tls (tls.certFile and tls.keyFile: the "
                "certificate the metrics port serves); set metrics.scheme http or configure tls"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init (the config file merged with flags by load_settings) wins over env.
        return (init_settings, env_settings)
