"""The instance's front ends (gRPC, REST, auth, limits, the management and
admin APIs) and the process that serves one instance behind them."""

from meshserve.server._app import serve_instance
from meshserve.server._auth import GrpcAuthInterceptor, RestAuthMiddleware
from meshserve.server._backend import InferenceBackend
from meshserve.server._data_dir import prepare_data_dir
from meshserve.server._endpoints import Endpoints
from meshserve.server._grpc_ports import peer_client
from meshserve.server._instance_stack import own_instance_id
from meshserve.server._internal_port import secret_from_store
from meshserve.server._ports import address, rest_base_url, write_endpoints_file
from meshserve.server._register_file import ModelEntry, load_register_file

__all__ = [
    "Endpoints",
    "GrpcAuthInterceptor",
    "InferenceBackend",
    "ModelEntry",
    "RestAuthMiddleware",
    "address",
    "load_register_file",
    "own_instance_id",
    "peer_client",
    "prepare_data_dir",
    "rest_base_url",
    "secret_from_store",
    "serve_instance",
    "write_endpoints_file",
]
