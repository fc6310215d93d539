"""Read a process's sockets from /proc (Linux)."""

from __future__ import annotations

import os
import pathlib

_TCP_LISTEN = "0A"


def socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    for fd in pathlib.Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def listening_tcp_ports(pid: int) -> list[int]:
    """TCP ports (v4 and v6) on which the process holds a listening socket."""
    mine = socket_inodes(pid)
    ports: list[int] = []
    for table in ("tcp", "tcp6"):
        path = pathlib.Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], int(fields[9])
            if state == _TCP_LISTEN and inode in mine:
                ports.append(int(local.rsplit(":", 1)[1], 16))
    return ports


def unix_socket_paths(pid: int) -> list[str]:
    """Paths of the Unix sockets the process holds."""
    mine = socket_inodes(pid)
    paths: list[str] = []
    for line in pathlib.Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and int(fields[6]) in mine:
            paths.append(fields[7])
    return paths
