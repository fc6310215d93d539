"""Process entry points: the instance's gRPC and REST front ends."""

from meshserve.server._app import (
    Endpoints,
    ModelEntry,
    load_register_file,
    open_store,
    serve_instance,
)
from meshserve.server._auth import GrpcAuthInterceptor, RestAuthMiddleware
from meshserve.server._backend import InferenceBackend

__all__ = [
    "Endpoints",
    "GrpcAuthInterceptor",
    "InferenceBackend",
    "ModelEntry",
    "RestAuthMiddleware",
    "load_register_file",
    "open_store",
    "serve_instance",
]
