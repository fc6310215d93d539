"""gRPC health and reflection as a client sees them, with the official
Python clients (grpcurl is not packaged in Debian bookworm): the
``grpcio-health-checking`` stubs, and ``grpcio-reflection``'s client, which
is what ``grpcurl list`` and ``grpcurl describe`` do."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

__all__ = ["describe", "health_status", "list_services"]

Metadata = Sequence[tuple[str, str]]


def health_status(channel: grpc.Channel, service: str = "") -> str:
    """``grpc.health.v1.Health/Check``'s status for ``service``, by name."""
    stub = health_pb2_grpc.HealthStub(channel)
    reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def list_services(channel: grpc.Channel, *, metadata: Metadata = ()) -> set[str]:
    """``grpcurl list``: the services reflection names."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    replies = stub.ServerReflectionInfo(iter([request]), metadata=metadata, timeout=10)
    return {service.name for reply in replies for service in reply.list_services_response.service}


def describe(channel: grpc.Channel, service: str) -> dict[str, tuple[str, str]]:
    """``grpcurl describe``: the service's methods, each to its (input,
    output) message names, built from the file descriptors reflection sends."""
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    descriptor = pool.FindServiceByName(service)
    return {
        method.name: (method.input_type.full_name, method.output_type.full_name)
        for method in descriptor.methods
    }
