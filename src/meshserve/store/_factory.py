"""The mesh's store, opened from the settings: the embedded SQLite store in
the data dir, or etcd at ``store.url``; used alike by the instances, their
supervisor and the CLI."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import AsyncIterator

from meshserve.errors import PreconditionFailedError
from meshserve.settings import Settings, StoreSettings
from meshserve.store._etcd_connection import with_etcd_connection
from meshserve.store._etcd_settings import EtcdSettings
from meshserve.store._prefixed import PrefixedStore
from meshserve.store._sqlite import SqliteStore
from meshserve.store._store import Store

__all__ = ["etcd_settings", "open_store", "store_url"]


def etcd_settings(settings: StoreSettings) -> EtcdSettings:
    """The etcd connection ``store.url`` (``etcd://h:p[,h:p]``) and friends describe."""
    endpoints = tuple(e for e in settings.url.removeprefix("etcd://").split(",") if e)
    password = settings.etcd_password.get_secret_value()
    return EtcdSettings(
        endpoints=endpoints,
        username=settings.etcd_user or None,
        password=password if settings.etcd_user else None,
        ca_cert=settings.etcd_ca or None,
        cert_chain=settings.etcd_cert or None,
        cert_key=settings.etcd_key or None,
        request_timeout=settings.etcd_request_timeout_s,
        connect_timeout=settings.etcd_connect_timeout_s,
    )


def store_url(settings: Settings) -> str:
    """``store.url``, or the embedded store's ``sqlite:///`` URL (absolute,
    so that other processes find the same file)."""
    if settings.store.url:
        return settings.store.url
    return f"sqlite:///{(settings.data_dir / 'store.db').resolve()}"


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    """The mesh's store, scoped to ``<root_prefix>/mm/<service_name>/``."""
    store_settings = with_etcd_connection(settings.store, data_dir=settings.data_dir)
    url = store_settings.url
    root = store_settings.root_prefix.strip("/")
    prefix = f"{root}/" if root else ""
    scope = f"{prefix}mm/{store_settings.service_name}/"
    if url.startswith("etcd://"):
        try:
            # Imported here: the etcd backend needs the etcd extra.
            from meshserve.store._etcd import EtcdStore
        except ModuleNotFoundError as exc:
            raise PreconditionFailedError(
                f"store url {url!r}: the etcd store needs the etcd extra "
                f"(pip install 'meshserve[etcd]'): {exc}"
            ) from None
        async with EtcdStore.open(etcd_settings(store_settings)) as etcd:
            yield PrefixedStore(etcd, scope)
        return
    if url and not url.startswith("sqlite:///"):
        raise ValueError(f"store url {url!r}: expected sqlite:///PATH or etcd://HOST:PORT[,...]")
    path = pathlib.Path(url.removeprefix("sqlite:///")) if url else settings.data_dir / "store.db"
    async with SqliteStore.open(path) as store:
        yield PrefixedStore(store, scope)
