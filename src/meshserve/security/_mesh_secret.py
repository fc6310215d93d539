"""The mesh secret: what proves a call on the internal port comes from
another instance of the same mesh.

Every instance holds the same secret and sends a token derived from it
(HMAC-SHA256 of a fixed label) with each call it forwards; the internal
port compares the token in constant time and refuses a call without it
before anything else happens. Deriving a token keeps the secret itself off
the wire. The secret comes from ``mesh.secretFile`` (mode 0600 or
stricter; ``meshserve up`` makes ``<data_dir>/mesh.secret`` once), or else
from the store, where the first instance creates it (``meshserve.server``).
"""

from __future__ import annotations

import hashlib
import hmac
import pathlib
import secrets

from meshserve.security._key_files import create_key_file, read_key_file

__all__ = ["MESH_SECRET_FILE", "MeshSecret", "MeshSecretError", "new_mesh_secret_text"]

MESH_SECRET_FILE = "mesh.secret"
"""Where ``meshserve up`` keeps the secret it made, inside the data dir."""

_MIN_CHARACTERS = 32
_TOKEN_LABEL = b"meshserve-internal-port-v1"


class MeshSecretError(ValueError):
    """No usable mesh secret: too short, unreadable, or in a file others may
    read. The message never quotes the secret."""


def new_mesh_secret_text() -> str:
    """A fresh secret: 256 random bits as hex."""
    return secrets.token_hex(32)


class MeshSecret:
    """The secret, held only as the token instances present to each other."""

    __slots__ = ("_token", "_token_bytes")

    def __init__(self, text: str, *, source: str) -> None:
        """``source`` names where the text came from, for the error."""
        secret = text.strip()
        if len(secret) < _MIN_CHARACTERS:
            raise MeshSecretError(
                f"{source}: a mesh secret has at least {_MIN_CHARACTERS} characters "
                "(make one with `openssl rand -hex 32`)"
            )
        self._token = hmac.new(secret.encode(), _TOKEN_LABEL, hashlib.sha256).hexdigest()
        # Encoded once: every forwarded call is checked against it.
        self._token_bytes = self._token.encode()

    @classmethod
    def from_file(cls, path: pathlib.Path) -> MeshSecret:
        """Read a secret file; refuse one that others than its owner may read."""
        text = read_key_file(path, what="mesh secret file", error=MeshSecretError)
        return cls(text, source=f"mesh secret file {path}")

    @classmethod
    def in_data_dir(cls, data_dir: pathlib.Path) -> pathlib.Path:
        """``<data_dir>/mesh.secret``, made first if it is not there."""
        path = data_dir / MESH_SECRET_FILE
        create_key_file(path, lambda: new_mesh_secret_text() + "\n")
        return path

    @property
    def token(self) -> str:
        """What a forwarding instance sends."""
        return self._token

    def admits(self, presented: str | bytes | None) -> bool:
        """Whether ``presented`` is this mesh's token (constant time)."""
        if presented is None:
            return False
        given = presented.encode(errors="replace") if isinstance(presented, str) else presented
        return hmac.compare_digest(given, self._token_bytes)

    def __repr__(self) -> str:
        return "MeshSecret(<hidden>)"
