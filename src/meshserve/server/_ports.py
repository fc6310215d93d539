"""Addresses and the endpoints file, written one way for every server here."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

__all__ = ["address", "rest_base_url", "write_endpoints_file"]


def address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
