"""Sealing: Secret values encrypted before they reach the store.

Each value is sealed on its own with AES-256-GCM under the mesh's sealing
key, with a fresh random 96-bit nonce, and with the Secret's namespace, name
and item key as associated data: a sealed value copied into another Secret,
or under another key of the same one, does not unseal. A sealed value reads

    ms1:<key id>:<base64url(nonce | ciphertext | tag)>

where the key id (8 hex digits of a SHA-256 of the key, which says nothing
useful about the key) tells "sealed with another key" apart from "altered".

The key is 32 random bytes, given as hex or base64: in a file
(``security.sealingKeyFile``, mode 0600 or stricter), in
``MESHSERVE_SECURITY__SEALING_KEY``, or, when neither is set, in
``<data_dir>/sealing.key``, which ``meshserve up`` creates once.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import pathlib
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meshserve.security._key_files import create_key_file, read_key_file
from meshserve.settings import SecuritySettings

__all__ = [
    "SEALING_KEY_FILE",
    "SealContext",
    "SealingKey",
    "SealingKeyError",
    "SecuritySettings",
    "UnsealError",
    "load_sealing_key",
    "sealed_size",
]

SEALING_KEY_FILE = "sealing.key"
"""Where ``meshserve up`` keeps a key it made, inside the data dir."""

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_VERSION = "ms1"
_ASSOCIATED_PREFIX = b"meshserve-secret-v1\x00"
_ENV_NAME = "MESHSERVE_SECURITY__SEALING_KEY"


class SealingKeyError(ValueError):
    """No usable sealing key: malformed, unreadable, too open, or set twice.
    The message never quotes the key."""


class UnsealError(ValueError):
    """A sealed value cannot be unsealed: another key sealed it, it was
    altered, or it belongs to another Secret or item. The message never
    quotes the value."""


@dataclass(frozen=True, slots=True)
class SealContext:
    """Which value a sealed value is: bound into it as associated data."""

    namespace: str
    name: str
    """The Secret's name."""
    item: str
    """The key inside the Secret (``data.<item>``)."""

    def associated_data(self) -> bytes:
        # JSON keeps the three apart whatever characters they hold.
        fields = json.dumps([self.namespace, self.name, self.item], separators=(",", ":"))
        return _ASSOCIATED_PREFIX + fields.encode()


class SealingKey:
    """A 256-bit AES-GCM key that seals and unseals Secret values."""

    __slots__ = ("_aead", "_key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise SealingKeyError(f"a sealing key is {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)
        self._key_id = hashlib.sha256(b"meshserve-sealing-key-id\x00" + key).hexdigest()[:8]

    @classmethod
    def generate(cls) -> SealingKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_text(cls, text: str, *, source: str) -> SealingKey:
        """Parse hex (64 digits) or base64 (standard or URL-safe) of 32 bytes;
        ``source`` names where the text came from, for the error."""
        return cls(_decode_key(text.strip(), source=source))

    @classmethod
    def from_file(cls, path: pathlib.Path) -> SealingKey:
        """Read a key file; refuse one that others than its owner may read."""
        text = read_key_file(path, what="sealing key file", error=SealingKeyError)
        return cls.from_text(text, source=f"sealing key file {path}")

    @property
    def key_id(self) -> str:
        """8 hex digits naming the key in messages (not a secret)."""
        return self._key_id

    def __repr__(self) -> str:
        return f"SealingKey(id={self._key_id})"

    def seal(self, value: bytes, *, context: SealContext) -> str:
        """``value`` sealed for ``context``; a new nonce every time."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value, context.associated_data())
        body = base64.urlsafe_b64encode(nonce + sealed).decode()
        return f"{_VERSION}:{self._key_id}:{body}"

    def unseal(self, token: str, *, context: SealContext) -> bytes:
        """The value ``seal`` was given; UnsealError if this key did not seal
        it for ``context`` or it was altered."""
        key_id, raw = _split(token)
        if key_id != self._key_id:
            raise UnsealError(
                f"it was sealed with another sealing key (key id {key_id}; this process "
                f"has {self._key_id})"
            )
        try:
            return self._aead.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.associated_data()
            )
        except InvalidTag:
            raise UnsealError(
                "it does not verify: it was altered, or sealed for another secret or key"
            ) from None


def sealed_size(token: str) -> int:
    """How many bytes the value sealed in ``token`` has (no key needed)."""
    _, raw = _split(token)
    return len(raw) - NONCE_BYTES - TAG_BYTES


def _split(token: str) -> tuple[str, bytes]:
    version, _, rest = token.partition(":")
    key_id, _, body = rest.partition(":")
    if version != _VERSION or not key_id or not body:
        raise UnsealError(f"it is not a sealed value (expected '{_VERSION}:<key id>:<data>')")
    try:
        raw = base64.urlsafe_b64decode(body.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError):
        raise UnsealError("its sealed data is not valid base64") from None
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        raise UnsealError("its sealed data is too short")
    return key_id, raw


def _decode_key(text: str, *, source: str) -> bytes:
    if len(text) == 2 * KEY_BYTES:
        with contextlib.suppress(ValueError):
            return bytes.fromhex(text)
    for altchars in (None, b"-_"):  # standard, then URL-safe base64
        try:
            key = base64.b64decode(text.encode("ascii"), altchars=altchars, validate=True)
        except (binascii.Error, UnicodeEncodeError):
            continue
        if len(key) == KEY_BYTES:
            return key
    raise SealingKeyError(
        f"{source}: not a sealing key; expected {KEY_BYTES} bytes as hex ({2 * KEY_BYTES} "
        "digits) or base64 (make one with `openssl rand -hex 32`)"
    )


def load_sealing_key(
    settings: SecuritySettings, *, data_dir: pathlib.Path, create: bool = False
) -> SealingKey | None:
    """The sealing key the settings give: ``security.sealingKey`` (usually
    from ``MESHSERVE_SECURITY__SEALING_KEY``) or ``security.sealingKeyFile``;
    with neither, ``<data_dir>/sealing.key`` if it exists, made first when
    ``create`` (what ``meshserve up`` does). None: no key.

    Raises SealingKeyError when both are set, or the key is malformed or its
    file is too open.
    """
    text = settings.sealing_key.get_secret_value()
    if text and settings.sealing_key_file is not None:
        raise SealingKeyError(
            "both security.sealingKey (or MESHSERVE_SECURITY__SEALING_KEY) and "
            "security.sealingKeyFile are set; set one"
        )
    if text:
        return SealingKey.from_text(text, source=f"security.sealingKey ({_ENV_NAME})")
    if settings.sealing_key_file is not None:
        return SealingKey.from_file(settings.sealing_key_file)
    path = data_dir / SEALING_KEY_FILE
    if create:
        create_key_file(path, lambda: secrets.token_bytes(KEY_BYTES).hex() + "\n")
    if not path.exists():
        return None
    return SealingKey.from_file(path)
