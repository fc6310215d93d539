"""Single files over HTTP(S), through httpx."""

from __future__ import annotations

import posixpath
import ssl
import urllib.parse

import httpx

from meshserve import resources
from meshserve.errors import (
    ArtifactNotFoundError,
    StorageAccessDeniedError,
    StorageConfigError,
    StorageError,
)
from meshserve.storage._paths import safe_relative_path
from meshserve.storage._providers import HttpConfig
from meshserve.storage._settings import StorageSettings
from meshserve.storage._source import FileSink, Listing, RemoteObject, TransientStorageError
from meshserve.storage._tls import ssl_context

__all__ = ["HttpSource"]

_CHUNK = 1024 * 1024


class HttpSource:
    """One file at one URL: ``url``, with the model path appended when set."""

    def __init__(self, config: HttpConfig, *, path: str, settings: StorageSettings) -> None:
        if not config.url:
            raise StorageConfigError("no url: set 'url' in the storage config or parameters")
        url = config.url
        if path:
            url = url.rstrip("/") + "/" + urllib.parse.quote(path.lstrip("/"), safe="/")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StorageConfigError("'url' must be an http(s) URL")
        if parts.username is not None or parts.password is not None:
            raise StorageConfigError("'url' carries credentials; use 'headers' instead")
        self._url = url
        # Shown and stored without the query, which may hold a token.
        self._location = resources.redact_uri(
            urllib.parse.urlunsplit(parts._replace(query="", fragment=""))
        )
        self._identity = f"http|{url}"
        self._name = posixpath.basename(urllib.parse.unquote(parts.path.rstrip("/"))) or "model"
        context: ssl.SSLContext = ssl_context(
            ca_pem=config.certificate,
            client_cert_pem=config.client_certificate,
            client_key_pem=(
                config.client_key.get_secret_value() if config.client_key is not None else None
            ),
            where=self._location,
        )
        self._client = httpx.Client(
            verify=context,
            timeout=httpx.Timeout(settings.request_timeout_s),
            # httpx drops Authorization on redirects to another origin.
            follow_redirects=True,
            headers={k: v.get_secret_value() for k, v in config.headers.items()},
        )

    @property
    def location(self) -> str:
        return self._location

    @property
    def identity(self) -> str:
        return self._identity

    def list(self) -> Listing:
        size: int | None = None
        version = ""
        try:
            response = self._client.head(self._url)
        except httpx.HTTPError as exc:
            raise _translate_transport(exc) from None
        if response.status_code in (405, 501):
            pass  # no HEAD here: download without size or version (and uncached)
        elif response.status_code >= 400:
            raise _translate_status(response.status_code)
        else:
            length = response.headers.get("content-length")
            size = int(length) if length and length.isdigit() else None
            etag = response.headers.get("etag", "")
            modified = response.headers.get("last-modified", "")
            # A weak ETag still changes with the content; Last-Modified plus
            # the size is a fallback for servers with no ETag.
            version = etag or (f"{modified}|{size}" if modified else "")
        obj = RemoteObject(
            name=self._url,
            rel_path=safe_relative_path(self._name, where=self._location),
            size=size,
            version=version,
        )
        return Listing(name=self._name, objects=(obj,), is_directory=False)

    def download(self, obj: RemoteObject, sink: FileSink) -> None:
        try:
            with self._client.stream("GET", obj.name) as response:
                if response.status_code >= 400:
                    raise _translate_status(response.status_code)
                for chunk in response.iter_bytes(_CHUNK):
                    sink.write(chunk)
        except httpx.HTTPError as exc:
            raise _translate_transport(exc) from None

    def close(self) -> None:
        self._client.close()


def _translate_status(status: int) -> Exception:
    if status == 404 or status == 410:
        return ArtifactNotFoundError(f"not found (HTTP {status})")
    if status in (401, 403):
        return StorageAccessDeniedError(f"access denied (HTTP {status})")
    if status in (408, 425, 429) or status >= 500:
        return TransientStorageError(f"server error (HTTP {status})")
    return StorageError(f"request refused (HTTP {status})")


def _translate_transport(exc: httpx.HTTPError) -> Exception:
    tls = _ssl_error(exc)
    if isinstance(tls, ssl.SSLCertVerificationError):
        return StorageError("TLS verification of the server failed")
    if tls is not None and "ALERT" in (tls.reason or ""):
        # The server refused the handshake (no or wrong client certificate):
        # trying again will not change that.
        return StorageError(f"the server refused the TLS handshake ({tls.reason})")
    if isinstance(exc, httpx.TransportError):
        return TransientStorageError(f"connection failed ({type(exc).__name__})")
    return StorageError(f"request failed ({type(exc).__name__})")


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The ssl error behind an httpx error (it is wrapped twice)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
