"""TLS for the front ends and the links between instances, reloaded from disk.

Certificates rotate (cert-manager, a renewed Secret, an operator copying new
files): a server must hand the new certificate to new connections without a
restart and without dropping the connections it has. Both servers here ask
for their certificate at each handshake, and :class:`_CertificateFiles`
answers from a cache that re-reads the files only when they changed:

- gRPC: ``grpc.dynamic_ssl_server_credentials`` calls a fetcher per
  handshake (from grpc's core, holding the GIL), so the fetcher stats the
  files at most once per ``reload_interval_s`` and returns None (unchanged)
  otherwise.
- REST (the stdlib ``ssl`` module, used by uvicorn): the context's SNI
  callback runs per handshake, also when the client sends no server name,
  and switches that connection to a context built from the current files.
  A fresh context per change, rather than ``load_verify_locations`` on the
  same one, because the latter only adds CAs: a CA removed from the file
  would stay trusted until a restart.

A certificate that has expired, or is not valid yet, is still served (the
operator may be about to replace it), with a warning naming the file and
the date, at start and at each reload.

Open connections keep the certificate they were set up with. A half-written
rotation (certificate replaced, key not yet) is detected because the key
does not match the certificate; the previous pair stays in use until both
files agree.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from meshserve.settings import ClientAuth, TlsSettings

__all__ = [
    "ClientAuth",
    "TlsSettings",
    "certificate_date_problem",
    "grpc_channel_credentials",
    "grpc_server_credentials",
    "mesh_client_ssl_context",
    "rest_ssl_context",
]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _Material:
    cert_chain: bytes
    private_key: bytes
    ca: bytes | None


_Signature = tuple[tuple[int, int, int, int], ...]


def _read_material(settings: TlsSettings) -> _Material:
    """Read and check the files; raises ValueError/OSError if they are not a
    usable, matching certificate and key."""
    cert_chain = settings.cert_file.read_bytes()
    private_key = settings.key_file.read_bytes()
    ca = settings.ca_file.read_bytes() if settings.ca_file is not None else None
    try:
        leaf = x509.load_pem_x509_certificates(cert_chain)[0]
        key = serialization.load_pem_private_key(private_key, password=None)
        if ca is not None:
            x509.load_pem_x509_certificates(ca)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"unreadable certificate, key or CA: {exc}") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if leaf.public_key().public_bytes(encoding, public) != key.public_key().public_bytes(
        encoding, public
    ):
        raise ValueError(f"{settings.key_file} is not the key of {settings.cert_file}")
    return _Material(cert_chain=cert_chain, private_key=private_key, ca=ca)


def _date_problem(leaf: x509.Certificate, cert_file: pathlib.Path, now: datetime) -> str | None:
    if now > leaf.not_valid_after_utc:
        return (
            f"TLS certificate {cert_file} expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
    if now < leaf.not_valid_before_utc:
        return (
            f"TLS certificate {cert_file} is not valid before "
            f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    return None


def certificate_date_problem(cert_file: pathlib.Path, *, now: datetime | None = None) -> str | None:
    """Why the (leaf) certificate in ``cert_file`` is out of date at ``now``
    (default: the current time), naming the file and the date; None when it
    is in date, or unreadable (using it fails with its own error)."""
    try:
        leaf = x509.load_pem_x509_certificates(cert_file.read_bytes())[0]
    except (OSError, ValueError):
        return None
    return _date_problem(leaf, cert_file, now or datetime.now(UTC))


class _CertificateFiles:
    """The current certificate material, re-read when the files change.

    ``poll`` is cheap when nothing changed (a clock read, or one ``stat`` per
    file once per interval), so it can run at every handshake.
    """

    def __init__(
        self, settings: TlsSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()  # grpc's core may call in from several threads
        self._signature = self._stat()
        self.current = _read_material(settings)  # a bad start is an error, not a warning
        self.generation = 0
        """Bumped at each reload that changed the material."""
        self._checked_at = clock()

    def _paths(self) -> list[pathlib.Path]:
        paths = [self._settings.cert_file, self._settings.key_file]
        if self._settings.ca_file is not None:
            paths.append(self._settings.ca_file)
        return paths

    def _stat(self) -> _Signature:
        # stat follows symlinks, so a Kubernetes Secret's ..data swap shows up
        # as a new inode.
        signature = []
        for path in self._paths():
            st = os.stat(path)
            signature.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(signature)

    def poll(self) -> _Material | None:
        """The new material if the files changed into a valid pair, else None."""
        now = self._clock()
        if now - self._checked_at < self._settings.reload_interval_s:
            return None
        with self._lock:
            self._checked_at = now
            try:
                signature = self._stat()
                if signature == self._signature:
                    return None
                material = _read_material(self._settings)
            except (OSError, ValueError) as exc:
                # Mid-rotation or a bad file: keep serving the previous pair and
                # look again next interval (the signature is left stale on purpose).
                log.warning("TLS files changed but cannot be used yet (%s); keeping the old", exc)
                return None
            self._signature = signature
            if material == self.current:
                return None
            self.current = material
            self.generation += 1
            log.info("TLS certificate reloaded from %s", self._settings.cert_file)
            problem = certificate_date_problem(self._settings.cert_file)
            if problem is not None:
                log.warning("%s (reloaded)", problem)
            return material


def _grpc_configuration(material: _Material) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(material.private_key, material.cert_chain)], root_certificates=material.ca
    )


def grpc_server_credentials(
    settings: TlsSettings, *, clock: Callable[[], float] = time.monotonic
) -> grpc.ServerCredentials:
    """Server credentials that serve the files' current certificate to each
    new connection. Raises ValueError/OSError if the files are unusable now."""
    files = _CertificateFiles(settings, clock=clock)

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        try:
            material = files.poll()
        except Exception:  # an exception here would fail the handshake
            log.exception("checking the TLS files failed; keeping the old certificate")
            return None
        return _grpc_configuration(material) if material is not None else None

    return grpc.dynamic_ssl_server_credentials(
        _grpc_configuration(files.current),
        fetch,
        require_client_authentication=settings.client_auth == "require",
    )


_VERIFY_MODES = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "require": ssl.CERT_REQUIRED,
}


def _server_context(settings: TlsSettings, material: _Material) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # The stdlib loads a chain only from files; the files may have moved on
    # since ``material`` was read, which the SSLError below (key mismatch) or
    # the next poll (a newer matching pair) takes care of.
    context.load_cert_chain(settings.cert_file, settings.key_file)
    if material.ca is not None:
        context.load_verify_locations(cadata=material.ca.decode("ascii"))
    context.verify_mode = _VERIFY_MODES[settings.client_auth]
    return context


def rest_ssl_context(
    settings: TlsSettings, *, clock: Callable[[], float] = time.monotonic
) -> ssl.SSLContext:
    """A server context (for uvicorn or ``asyncio.start_server``) whose
    handshakes use the files' current certificate and CA.

    The returned context stays the same object; each new connection is moved
    to a context built from the current files by its SNI callback.
    """
    files = _CertificateFiles(settings, clock=clock)
    front = _server_context(settings, files.current)
    current = front

    def switch(
        connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        nonlocal current
        try:
            material = files.poll()
            if material is not None:
                current = _server_context(settings, material)
        except (OSError, ssl.SSLError) as exc:
            log.warning("TLS files changed but cannot be loaded yet (%s); keeping the old", exc)
        except Exception:  # an exception here fails the handshake
            log.exception("checking the TLS files failed; keeping the old certificate")
        if current is not front:
            connection.context = current

    front.sni_callback = switch
    return front


def grpc_channel_credentials(settings: TlsSettings) -> grpc.ChannelCredentials:
    """Client credentials for a link to another instance: presents this
    instance's certificate and trusts only peers signed by ``ca_file``.

    Read once: a channel keeps the certificate it was made with, so make new
    channels (not new calls) to pick up rotated files.
    """
    if settings.ca_file is None:
        raise ValueError("mesh links are mutual TLS and need ca_file")
    material = _read_material(settings)
    return grpc.ssl_channel_credentials(
        root_certificates=material.ca,
        private_key=material.private_key,
        certificate_chain=material.cert_chain,
    )


def mesh_client_ssl_context(settings: TlsSettings) -> ssl.SSLContext:
    """The client side of a data-port link to another instance, as
    :func:`grpc_channel_credentials` is of a gRPC one: presents this
    instance's certificate, trusts only peers signed by ``ca_file`` and checks
    the peer's name (or IP) against its certificate, as gRPC does.

    Read once, like those credentials: links opened later use the files as
    they were then.
    """
    if settings.ca_file is None:
        raise ValueError("mesh links are mutual TLS and need ca_file")
    material = _read_material(settings)
    assert material.ca is not None
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cadata=material.ca.decode("ascii")
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.cert_file, settings.key_file)
    return context
