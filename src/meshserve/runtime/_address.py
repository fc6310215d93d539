"""Where a runtime listens: a Unix socket, or a loopback TCP port only."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["ListenAddress"]

_LOOPBACK_NAMES = {"localhost"}


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """``unix:PATH`` or ``HOST:PORT`` with a loopback host.

    A runtime never listens on a network interface: it holds models and
    answers load requests without authentication, so anything reachable from
    another host could load or read them.
    """

    unix_path: str | None = None
    host: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        if text.startswith("unix:"):
            path = text.removeprefix("unix:")
            if path.startswith("//"):
                path = path[2:]
            if not path.startswith("/"):
                raise ValueError(f"listen address {text!r}: the Unix socket path must be absolute")
            return cls(unix_path=path)
        host, sep, port_text = text.rpartition(":")
        if not sep or not port_text.isdigit():
            raise ValueError(f"listen address {text!r}: expected unix:/PATH or 127.0.0.1:PORT")
        host = host.strip("[]")
        if host not in _LOOPBACK_NAMES:
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise ValueError(
                    f"listen address {text!r}: a runtime listens only on a Unix socket or a "
                    "loopback address (127.0.0.1, ::1), never on a network interface"
                )
        port = int(port_text)
        if port > 65535:
            raise ValueError(f"listen address {text!r}: port out of range")
        return cls(host=host, port=port)

    @property
    def is_unix(self) -> bool:
        return self.unix_path is not None

    def grpc_target(self, port: int | None = None) -> str:
        """The address in gRPC's syntax (``port`` replaces 0 once bound)."""
        if self.unix_path is not None:
            return f"unix:{self.unix_path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{host}:{port if port is not None else self.port}"

    def __str__(self) -> str:
        return self.grpc_target()
