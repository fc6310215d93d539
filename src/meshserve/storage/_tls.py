"""TLS for store clients: verification always on, extra CAs honoured."""

from __future__ import annotations

import contextlib
import os
import pathlib
import ssl
import tempfile

from meshserve.errors import StorageConfigError

__all__ = ["CaBundle", "ssl_context"]


def ssl_context(
    *,
    ca_pem: str | None,
    client_cert_pem: str | None = None,
    client_key_pem: str | None = None,
    where: str,
) -> ssl.SSLContext:
    """A verifying client context trusting the system CAs plus ``ca_pem``,
    presenting a client certificate when one is given."""
    context = ssl.create_default_context()
    if ca_pem:
        try:
            context.load_verify_locations(cadata=ca_pem)
        except (ssl.SSLError, ValueError):
            raise StorageConfigError(
                f"{where}: 'certificate' is not a PEM CA certificate"
            ) from None
    if client_cert_pem or client_key_pem:
        if not (client_cert_pem and client_key_pem):
            raise StorageConfigError(f"{where}: 'client_certificate' and 'client_key' go together")
        # ssl reads a certificate chain from files only; the key lives on disk
        # (0600, in a private directory) just long enough to be loaded.
        with tempfile.TemporaryDirectory(prefix="meshserve-tls-") as tmp:
            cert = pathlib.Path(tmp, "cert.pem")
            key = pathlib.Path(tmp, "key.pem")
            for path, text in ((cert, client_cert_pem), (key, client_key_pem)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(text)
            try:
                context.load_cert_chain(cert, key)
            except (ssl.SSLError, ValueError):
                raise StorageConfigError(
                    f"{where}: 'client_certificate'/'client_key' are not a PEM pair"
                ) from None
    return context


class CaBundle:
    """A CA bundle file (system CAs + one extra PEM) for clients that take a
    path (botocore). Removed on ``close``."""

    def __init__(self, ca_pem: str, *, where: str) -> None:
        # Validate first, so a bad PEM is a config error, not a TLS failure.
        ssl_context(ca_pem=ca_pem, where=where)
        fd, name = tempfile.mkstemp(prefix="meshserve-ca-", suffix=".pem")
        with os.fdopen(fd, "w") as out:
            out.write(_system_bundle())
            out.write("\n")
            out.write(ca_pem)
        self.path = name

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _system_bundle() -> str:
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return pathlib.Path(candidate).read_text()
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with botocore's requests
        return ""
    return pathlib.Path(certifi.where()).read_text()
