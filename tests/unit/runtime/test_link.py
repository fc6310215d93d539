"""The instance <-> runtime data link over a real Unix socket."""

from __future__ import annotations

import asyncio
import pathlib
import stat

import pytest

from meshserve import errors
from meshserve.runtime._link import LinkClient, LinkServer, link_path


async def _handler(model_id: str, body: bytes) -> bytes:
    if model_id == "missing":
        raise errors.ModelNotFoundError("model 'missing' is not loaded")
    if model_id == "bad":
        raise errors.TensorError("input-0", "expects 4 features, got 3")
    if model_id == "crash":
        raise RuntimeError("boom")
    if model_id == "slow":
        await asyncio.sleep(0.05)
    return model_id.encode() + b"|" + body


async def test_frames_carry_bodies_and_typed_errors(tmp_path: pathlib.Path) -> None:
    path = link_path(tmp_path / "runtime.sock")
    assert path.name == "runtime.data.sock"
    server = LinkServer(path=path, handler=_handler)
    await server.start()
    client = LinkClient(path=path)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        body = bytes(range(256)) * 1000
        assert await client.call("m", body) == b"m|" + body
        assert await client.call("ünïcode", b"") == "ünïcode".encode() + b"|"
        with pytest.raises(errors.ModelNotFoundError, match="missing"):
            await client.call("missing", b"x")
        with pytest.raises(errors.TensorError, match="input-0"):
            await client.call("bad", b"x")
        with pytest.raises(errors.MeshServeError, match="internal error: boom"):
            await client.call("crash", b"x")
        # Concurrent calls each get their own warm connection and answer.
        answers = await asyncio.gather(*(client.call("slow", str(i).encode()) for i in range(20)))
        assert answers == [f"slow|{i}".encode() for i in range(20)]
        assert len(client._idle) == 20
    finally:
        client.close()
        await server.stop()
    assert not path.exists()


async def test_a_gone_runtime_is_unavailable(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "gone.data.sock"
    client = LinkClient(path=path)
    with pytest.raises(errors.UnavailableError, match="unreachable"):
        await client.call("m", b"x")
    server = LinkServer(path=path, handler=_handler)
    await server.start()
    assert await client.call("m", b"x") == b"m|x"
    await server.stop()  # the pooled connection now leads nowhere
    with pytest.raises(errors.UnavailableError):
        await client.call("m", b"x")
    client.close()
