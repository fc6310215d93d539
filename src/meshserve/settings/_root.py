"""The one settings object, grouped by concern."""

from __future__ import annotations

import pathlib

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from meshserve.settings._mesh import ControlSettings, MeshSettings
from meshserve.settings._runtime import CacheSettings, RuntimeSettings
from meshserve.settings._security import AuthSettings, SecuritySettings, TlsSettings
from meshserve.settings._server import LimitsSettings, MetricsSettings, ServerSettings
from meshserve.settings._store import StorageSettings, StoreSettings

__all__ = ["Settings"]


class Settings(BaseSettings):
    """All of meshserve's settings, grouped by concern."""

    model_config = SettingsConfigDict(
        env_prefix="MESHSERVE_", env_nested_delimiter="__", extra="forbid", frozen=True
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
    tls: TlsSettings | None = None
    """TLS on the gRPC, REST and internal ports (instance-to-instance links
    are then mutual TLS). None: plaintext, loopback-only by default."""

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
