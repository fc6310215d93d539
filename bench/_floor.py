"""The gRPC floor: a v2 server whose ModelInfer does nothing.

    python bench/_floor.py --listen 127.0.0.1:0 --label 0

Its handlers take and return raw bytes (identity serializers): the request
is never decoded and the reply is one ModelInferResponse serialized at
start, holding ``predict = [label]`` as INT64 so a client reads it like a
real model's answer. What a client measures against it is what grpc.aio
and the client cost on this machine, with no model and no decoding. Prints
``floor listening on 127.0.0.1:PORT`` once it is serving; stops on SIGTERM
or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import grpc
import numpy as np

from meshserve.protocol._pb import grpc_predict_v2_pb2 as pb

_SERVICE = "inference.GRPCInferenceService"


def fixed_response(*, model_name: str, label: int) -> bytes:
    """A serialized ModelInferResponse with one INT64 ``predict`` output."""
    response = pb.ModelInferResponse(model_name=model_name)
    output = response.outputs.add()
    output.name = "predict"
    output.datatype = "INT64"
    output.shape.append(1)
    response.raw_output_contents.append(np.asarray([label], dtype="<i8").tobytes())
    serialized: bytes = response.SerializeToString()
    return serialized


def _handler(reply: bytes) -> grpc.GenericRpcHandler:
    async def model_infer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return reply

    async def ready(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        # ServerReady/ModelReady answer `ready: true` (field 1, varint 1).
        return b"\x08\x01"

    identity = {"request_deserializer": None, "response_serializer": None}
    return grpc.method_handlers_generic_handler(
        _SERVICE,
        {
            "ModelInfer": grpc.unary_unary_rpc_method_handler(model_infer, **identity),
            "ServerReady": grpc.unary_unary_rpc_method_handler(ready, **identity),
            "ModelReady": grpc.unary_unary_rpc_method_handler(ready, **identity),
        },
    )


async def _serve(*, listen: str, reply: bytes) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_handler(reply),))
    port = server.add_insecure_port(listen)
    host = listen.rsplit(":", 1)[0]
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"floor listening on {host}:{port}", flush=True)
    await stop.wait()
    await server.stop(grace=0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT; port 0 picks one")
    parser.add_argument("--model-name", default="iris")
    parser.add_argument("--label", type=int, default=0, help="the predict value it returns")
    args = parser.parse_args()
    asyncio.run(
        _serve(
            listen=args.listen, reply=fixed_response(model_name=args.model_name, label=args.label)
        )
    )


if __name__ == "__main__":
    main()
