"""Storage URIs: the one parser, the credential checks and the redaction.

An InferenceService ``storageUri``, a ``models register --uri``, a URI in a
registration's path or model key and a pull all read a URI here, with one set
of rules (ModelMesh Serving's controller's):

- ``s3://bucket/p`` -> path ``p``, {type: s3, bucket}; ``gs://`` likewise
  with type gcs; ``pvc://claim/p`` -> {type: pvc, name: claim};
- ``https://<account>.blob.core.windows.net/<container>/p`` -> type azure;
- any other http(s) URL -> type http with the whole URL and an empty path.

The path is unescaped, as Go's ``url.Parse`` leaves it. A URI is stored in
the model key and shown to every reader of a resource or model status, so a
URI that carries a credential is refused: user-info (``user:pass@``, even a
bare ``user@``), a query parameter that looks like a signature or token
(pre-signed S3/GCS URLs, Azure SAS, ``access_token``...), any query on the
object-store schemes, any fragment. A refusal says which part is wrong and
never quotes the value. :func:`redact_uris` masks those parts in anything
logged or put in a status, in case one got in before these checks existed.

It lives in ``control`` (the lowest layer that reads URIs: resource
validation); ``storage`` and ``mesh`` import it from here.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field

from meshserve.errors import InvalidRequestError

__all__ = [
    "AZURE_BLOB_HOST_SUFFIX",
    "StorageLocation",
    "check_no_credentials",
    "is_storage_uri",
    "looks_like_uri",
    "parse_storage_uri",
    "redact_uri",
    "redact_uris",
]

AZURE_BLOB_HOST_SUFFIX = ".blob.core.windows.net"

_OBJECT_SCHEMES = frozenset({"s3", "gs", "pvc"})
_SCHEMES = _OBJECT_SCHEMES | {"http", "https"}
_SUPPORTED = (
    "s3://<bucket>/<path>, gs://<bucket>/<path>, pvc://<claim>/<path>, "
    f"https://<account>{AZURE_BLOB_HOST_SUFFIX}/<container>/<path>, http(s)://<host>/<path>"
)

_URI_START = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_URI_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")

# A query parameter whose name (lowercased, punctuation dropped) contains one
# of these, or is one of the exact names below, is taken for a credential:
# S3/GCS pre-signed URLs (X-Amz-Signature, X-Amz-Credential,
# X-Amz-Security-Token, X-Goog-Signature, AWSAccessKeyId, GoogleAccessId),
# Azure SAS (sv, sig, se, sp, skoid...), CloudFront (Policy, Key-Pair-Id),
# OAuth and API keys. Broad on purpose: a refused harmless parameter costs a
# storage-config entry, an accepted token is shown to every reader.
_CREDENTIAL_NAME_PARTS = (
    "sig",
    "token",
    "secret",
    "passw",
    "pwd",
    "credential",
    "auth",
    "key",
    "session",
    "jwt",
    "bearer",
    "saml",
)
_CREDENTIAL_NAMES = frozenset(
    {
        "code",
        "pass",
        "pw",
        "policy",
        "googleaccessid",
        # Azure SAS fields besides sig
        "sv",
        "se",
        "st",
        "sp",
        "sr",
        "ss",
        "srt",
        "spr",
        "sdd",
        "si",
        "skoid",
        "sktid",
        "skt",
        "ske",
        "sks",
        "skv",
        "saoid",
        "suoid",
    }
)
# A JSON Web Token as a value, whatever its parameter is called.
_JWT = re.compile(r"^eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.")

_USER_INFO = (
    "the URI carries user credentials (user-info before '@'); put credentials in the "
    "storage-config Secret, never in the URI"
)
_FRAGMENT = (
    "the URI has a fragment ('#...'), which no store reads and which may carry a token; remove it"
)
_SIGNED_QUERY = (
    "the URI's query carries what looks like a signature, token or key; put credentials "
    "in the storage-config Secret (an http entry's 'headers', or a storage key) instead"
)


@dataclass(frozen=True, slots=True)
class StorageLocation:
    """Where a storage URI says a model lives."""

    type: str
    """The storage type: s3, gcs, azure, http or pvc."""
    path: str
    """The model's path inside the store ('' for an http URL: the URL is the file)."""
    params: dict[str, str] = field(default_factory=dict)
    """``storage_params`` for the model key; always holds ``type``."""


def looks_like_uri(text: str) -> bool:
    """Whether ``text`` is ``scheme://...`` (any scheme: such text gets the
    credential checks even where its scheme is not a storage one)."""
    return bool(_URI_START.match(text.strip()))


def is_storage_uri(text: str) -> bool:
    """Whether ``text`` is a URI of a supported scheme (not a local path)."""
    try:
        scheme = urllib.parse.urlsplit(text.strip()).scheme.lower()
    except ValueError:
        return False
    return scheme in _SCHEMES and looks_like_uri(text)


def check_no_credentials(text: str) -> None:
    """Raise InvalidRequestError if ``text`` is a URI carrying a credential
    (user-info, a signed or token-bearing query, a fragment); other text
    passes. The message names the part, never its value."""
    if not looks_like_uri(text):
        return
    _refuse_credentials(_split(text), text=text)


def parse_storage_uri(uri: str) -> StorageLocation:
    """Split a storage URI into storage parameters and a path.

    Raises InvalidRequestError (naming what is wrong, never quoting the URI)
    for credentials in it, an unsupported scheme, or a missing bucket, claim
    or host.
    """
    text = uri.strip()
    parts = _split(text)
    scheme = parts.scheme.lower()
    if not scheme or not looks_like_uri(text):
        raise InvalidRequestError(f"the storage URI has no scheme; use {_SUPPORTED}")
    if scheme not in _SCHEMES:
        raise InvalidRequestError(
            f"storage URI scheme '{scheme[:16]}' is not supported; use {_SUPPORTED}"
        )
    _refuse_credentials(parts, text=text)
    # Go's url.Parse (which ModelMesh Serving uses) unescapes the path.
    path = urllib.parse.unquote(parts.path).removeprefix("/")
    if scheme in _OBJECT_SCHEMES:
        if not parts.netloc:
            raise InvalidRequestError(f"the {scheme}:// URI names no bucket or claim")
        # The host keeps its case: bucket and claim names are case-sensitive
        # in some stores (hostname would lowercase it).
        name = parts.netloc
        if scheme == "pvc":
            return StorageLocation("pvc", path, {"type": "pvc", "name": name})
        kind = "s3" if scheme == "s3" else "gcs"
        return StorageLocation(kind, path, {"type": kind, "bucket": name})
    host = parts.hostname or ""
    if not host:
        raise InvalidRequestError(f"the {scheme}:// URI names no host")
    if host.endswith(AZURE_BLOB_HOST_SUFFIX):
        account = host[: -len(AZURE_BLOB_HOST_SUFFIX)]
        container, _, blob_path = path.partition("/")
        if not account or "." in account or not container:
            raise InvalidRequestError(
                f"an Azure blob URI must be https://<account>{AZURE_BLOB_HOST_SUFFIX}"
                "/<container>/<path>"
            )
        return StorageLocation(
            "azure", blob_path, {"type": "azure", "account_name": account, "container": container}
        )
    return StorageLocation("http", "", {"type": "http", "url": text})


def redact_uri(uri: str) -> str:
    """``uri`` with its user-info, query and fragment masked (``***``): what
    logs and statuses show of a URI. Text that is no URI is returned as is."""
    if not looks_like_uri(uri):
        return uri
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return uri.split("://", 1)[0] + "://***"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    text = f"{parts.scheme}://{netloc}{parts.path}"
    if parts.query or "?" in uri:
        text += "?***"
    if parts.fragment or "#" in uri:
        text += "#***"
    return text


def redact_uris(text: str) -> str:
    """``text`` with every URI in it redacted as :func:`redact_uri` does (for
    messages that may quote one: load failures, library errors)."""
    return _URI_IN_TEXT.sub(lambda match: redact_uri(match.group(0)), text)


def _split(text: str) -> urllib.parse.SplitResult:
    try:
        return urllib.parse.urlsplit(text.strip())
    except ValueError:
        # Malformed (an unclosed IPv6 bracket...); the message must not quote it.
        raise InvalidRequestError("the storage URI is malformed") from None


def _refuse_credentials(parts: urllib.parse.SplitResult, *, text: str) -> None:
    if "@" in parts.netloc:
        raise InvalidRequestError(_USER_INFO)
    if "%" in parts.netloc:
        # An escaped '@' or ':' would hide user-info from the check above.
        raise InvalidRequestError("the URI's host has percent-escapes; write it unescaped")
    if "#" in text:
        raise InvalidRequestError(_FRAGMENT)
    if not parts.query:
        return
    scheme = parts.scheme.lower()
    if scheme in _OBJECT_SCHEMES:
        raise InvalidRequestError(
            f"{scheme}:// URIs take no query, and a query may carry a signature or token; "
            "remove it (storage parameters go in storage.parameters)"
        )
    for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if _is_credential(name, value):
            raise InvalidRequestError(_SIGNED_QUERY)


def _is_credential(name: str, value: str) -> bool:
    normal = "".join(c for c in name.lower() if c.isalnum())
    if normal in _CREDENTIAL_NAMES or any(part in normal for part in _CREDENTIAL_NAME_PARTS):
        return True
    return bool(_JWT.match(value.strip()))
