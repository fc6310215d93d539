"""Addresses and the endpoints file, written one way for every server here."""

from __future__ import annotations

import json
import os
import pathlib
import socket
from typing import Any

__all__ = ["address", "listening_socket", "rest_base_url", "write_endpoints_file"]

_BACKLOG = 2048  # uvicorn's default


def address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A TCP socket listening on ``host:port`` (0: a free port), for an
    asyncio server (REST, the data port)."""
    family, kind, proto, _, bound = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    # The protocol number matters: asyncio sets TCP_NODELAY only on sockets
    # whose proto is IPPROTO_TCP (socket.create_server leaves it 0), and
    # without it every response waits ~40 ms on Nagle and delayed ACKs.
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            # Instances of one machine share the public port; the kernel
            # spreads connections over them.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(bound)
        sock.listen(_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def rest_base_url(host: str, port: int, *, tls: bool) -> str:
    """The base URL of a REST port: ``https://`` when it serves TLS.

    (The gRPC addresses stay bare ``host:port``, and a resource's
    ``grpcEndpoint`` says ``grpc://`` with or without TLS, as ModelMesh
    Serving writes it: the client's channel, not the URL, decides TLS.)"""
    return f"{'https' if tls else 'http'}://{address(host, port)}"


def write_endpoints_file(data_dir: pathlib.Path, endpoints: dict[str, Any]) -> None:
    """Write ``<data_dir>/endpoints.json`` whole or not at all: supervisors
    and the CLI read it while it may be rewritten."""
    path = data_dir / "endpoints.json"
    partial = path.with_name(f".endpoints.json.{os.getpid()}")
    partial.write_text(json.dumps(endpoints, indent=2) + "\n")
    os.replace(partial, path)
