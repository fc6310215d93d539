"""gRPC server reflection on a public port, so that ``grpcurl`` (or any
reflection client) can list and describe its services with no .proto
files. Setting ``server.grpcReflection`` turns it off.

meshserve's messages live in a descriptor pool of their own
(``protocol/_pb/_pool.py``: tritonclient registers a different
``inference`` package in protobuf's default pool), so reflection answers
from a pool holding the port's files: meshserve's, health's and
reflection's own.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType

import grpc.aio
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

__all__ = ["REFLECTION_SERVICE", "enable_reflection"]

REFLECTION_SERVICE: str = reflection.SERVICE_NAME


def enable_reflection(
    server: grpc.aio.Server, *, services: Iterable[str], modules: Iterable[ModuleType]
) -> None:
    """Serve reflection on ``server`` for ``services`` (full names), whose
    messages are declared by the generated ``modules``."""
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()
    for module in (*modules, health_pb2, reflection_pb2):
        _add_file(pool, module.DESCRIPTOR, added)
    reflection.enable_server_reflection((*services, REFLECTION_SERVICE), server, pool=pool)


def _add_file(pool: descriptor_pool.DescriptorPool, file: FileDescriptor, added: set[str]) -> None:
    """Add ``file`` to ``pool``, after the files it imports."""
    if file.name in added:
        return
    for dependency in file.dependencies:
        _add_file(pool, dependency, added)
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    pool.Add(proto)
    added.add(file.name)
