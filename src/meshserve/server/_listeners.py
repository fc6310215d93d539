"""Stop accepting on a shared port while still serving its connections.

Instances sharing a port (SO_REUSEPORT, ``server.sharePorts``) hand it
over when one goes away: its listening socket must leave the kernel's group
first, so that new connections land on the others, while the connections it
has are still served. grpc's Python API has no call for that:
``Server.stop`` stops accepting and, in the same step, cancels every call
that arrived but was not yet handed to the application (grpc/grpc#41785),
which a client sees as a failed request. A listening socket that is shut
down leaves the group at once and its accepted connections live on; grpc
then logs "Closing acceptor" and stops polling it.

The sockets are found through ``/proc/self`` by port and kept by inode
(an fd number may be reused; an inode is not while the socket lives).
Elsewhere than Linux nothing is found, and stopping works as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket

__all__ = ["listening_sockets", "stop_listening"]

log = logging.getLogger(__name__)

_LISTEN = "0A"
"""TCP_LISTEN in /proc/net/tcp's ``st`` column."""


def listening_sockets(port: int) -> frozenset[str]:
    """Inodes of this process's TCP sockets listening on ``port``."""
    listening = _listening_inodes(port)
    return frozenset(inode for inode in _own_socket_fds().values() if inode in listening)


def stop_listening(inodes: frozenset[str]) -> int:
    """Shut down the listening sockets among ``inodes`` that are still open
    in this process; their accepted connections stay. Returns how many."""
    stopped = 0
    for fd, inode in _own_socket_fds().items():
        if inode not in inodes:
            continue
        # A duplicate: shutting it down acts on the shared socket, closing
        # it leaves grpc's descriptor alone.
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
            stopped += 1
    return stopped


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table, encoding="ascii") as rows:
                next(rows, None)  # the header
                for row in rows:
                    fields = row.split()
                    local, state, inode = fields[1], fields[3], fields[9]
                    if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                        inodes.add(inode)
        except OSError:
            continue
    return inodes


def _own_socket_fds() -> dict[int, str]:
    """fd -> socket inode, for this process's sockets."""
    sockets: dict[int, str] = {}
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return sockets
    for name in names:
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # closed since the listing
        if target.startswith("socket:["):
            sockets[int(name)] = target[len("socket:[") : -1]
    return sockets
