"""Generate the protobuf and gRPC modules of meshserve from its .proto files.

The only producer of ``src/meshserve/protocol/_pb/*_pb2*.py``: run it after
editing a .proto and commit both. It needs ``grpcio-tools`` 1.81.x (the
``dev`` extra): newer releases emit code that requires protobuf 7, which
tritonclient and MLServer do not accept yet.
"""

from __future__ import annotations

import pathlib
import sys

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PB_DIR = SRC / "meshserve" / "protocol" / "_pb"


def main() -> int:
    import grpc_tools

    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(PB_DIR.glob("*.proto"))
    for old in PB_DIR.glob("*_pb2*.py*"):
        old.unlink()
    # Running protoc from SRC with paths relative to it makes the generated
    # imports absolute (``from meshserve.protocol._pb import ...``).
    args = [
        "protoc",
        f"-I{SRC}",
        f"-I{include}",
        f"--python_out={SRC}",
        f"--pyi_out={SRC}",
        f"--grpc_python_out={SRC}",
        *(str(p.relative_to(SRC)) for p in protos),
    ]
    code = protoc.main(args)
    if code != 0:
        print("protoc failed", file=sys.stderr)
        return int(code)
    for module in PB_DIR.glob("*_pb2.py"):
        _use_private_pool(module)
    print(f"generated {len(protos)} protos into {PB_DIR.relative_to(ROOT)}")
    return 0


def _use_private_pool(module: pathlib.Path) -> None:
    """Register our descriptors in meshserve's own pool, not protobuf's default.

    tritonclient, MLServer and the kserve SDK each register ``inference.*``
    messages from a differently named file in the default pool; protobuf
    refuses a second definition of the same symbol, so without this a process
    could not import meshserve next to any of them. The wire is unaffected:
    message names never travel, only field numbers and the service path.
    """
    text = module.read_text()
    default = "_descriptor_pool.Default().AddSerializedFile("
    if default not in text:
        raise SystemExit(f"{module.name}: generated code changed shape; update {__file__}")
    text = text.replace(
        "from google.protobuf import descriptor_pool as _descriptor_pool\n",
        "from google.protobuf import descriptor_pool as _descriptor_pool\n"
        "from meshserve.protocol._pb._pool import POOL as _POOL\n",
    )
    text = text.replace(default, "_POOL.AddSerializedFile(")
    module.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
