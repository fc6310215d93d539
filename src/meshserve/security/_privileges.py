"""Dropping root in a process that is about to run untrusted work.

An out-of-process runtime loads model artifacts, and some formats (pickle)
run code on load. When the instance runs as root, the runtime child drops to
an unprivileged user before it serves, keeps no capabilities and cannot get
them back (no-new-privileges), so a hostile model gets that user's rights and
no more.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import pathlib
import pwd
from collections.abc import Callable, Mapping

__all__ = [
    "RUN_AS_USER_ADVICE",
    "PrivilegeDropError",
    "capabilities",
    "drop_privileges",
    "resolve_user",
    "root_warning",
    "unreadable_after_drop",
]

RUN_AS_USER_ADVICE = (
    "install Python and meshserve where that user can read them (not under a private "
    "directory such as /root or a 0700 temporary directory), or set runtime.runAsUser to "
    'a user that can ("" keeps this process\'s user: as root, model code, pickles '
    "included, then runs as root)"
)
"""What to do when the runtime's user cannot read the Python environment."""

_Prctl = Callable[..., int]

# <linux/prctl.h>
_PR_SET_KEEPCAPS = 8
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAP_LAST_CAP_FALLBACK = 40  # CAP_CHECKPOINT_RESTORE, Linux 5.9

_CAP_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


class PrivilegeDropError(RuntimeError):
    """Root could not be given up completely; the process must not go on."""


def resolve_user(user: str | int) -> tuple[int, int]:
    """(uid, gid) for a user name or numeric uid. A uid with no passwd entry
    gets the group of the same number. Raises ValueError for an unknown name."""
    if isinstance(user, str) and user.isdigit():
        user = int(user)
    if isinstance(user, int):
        try:
            return user, pwd.getpwuid(user).pw_gid
        except KeyError:
            return user, user
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ValueError(f"no such user: {user!r}") from None
    return entry.pw_uid, entry.pw_gid


def _prctl() -> _Prctl | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    function: _Prctl | None = getattr(libc, "prctl", None)
    return function


def _last_capability() -> int:
    try:
        return int(pathlib.Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return _CAP_LAST_CAP_FALLBACK


def capabilities(status: str | None = None) -> dict[str, int]:
    """The capability sets of this process (from /proc/self/status, or from
    the given text of such a file): name -> bit mask."""
    if status is None:
        status = pathlib.Path("/proc/self/status").read_text()
    sets: dict[str, int] = {}
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name in _CAP_FIELDS:
            sets[name] = int(value.strip(), 16)
    return sets


def drop_privileges(user: str | int = "nobody") -> bool:
    """Become ``user`` for good if running as root; False (and nothing done)
    otherwise.

    Call it in the child that will do the untrusted work, before it serves.
    Afterwards the process has no supplementary groups, real/effective/saved
    ids of ``user``, an empty capability bounding set and no_new_privs, so
    neither setuid(0) nor a setuid binary gives root back. Raises
    PrivilegeDropError if any of that could not be verified, ValueError for
    an unknown user or for root itself.
    """
    if os.geteuid() != 0:
        return False
    uid, gid = resolve_user(user)
    if uid == 0:
        raise ValueError("the unprivileged user cannot be root (uid 0)")
    prctl = _prctl()
    if prctl is not None:
        # Best effort before the switch: dropping from the bounding set needs
        # CAP_SETPCAP, which only root still has. Kernels without a given
        # operation (EINVAL) are not an error: setuid below clears the
        # permitted and effective sets anyway, which is what we verify.
        prctl(_PR_SET_KEEPCAPS, 0, 0, 0, 0)
        prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        for capability in range(_last_capability() + 1):
            prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if prctl is not None:
        prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _verify_dropped(uid, gid)
    return True


def _verify_dropped(uid: int, gid: int) -> None:
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise PrivilegeDropError(f"ids are {os.getresuid()}/{os.getresgid()} after the drop")
    if os.getgroups() not in ([], [gid]):
        raise PrivilegeDropError(f"supplementary groups remain: {os.getgroups()}")
    regained = False
    with contextlib.suppress(PermissionError):
        os.setuid(0)
        regained = True
    if regained:
        raise PrivilegeDropError("setuid(0) succeeded after dropping privileges")
    with contextlib.suppress(OSError):  # no /proc: the id checks above stand
        held = {name: bits for name, bits in capabilities().items() if name != "CapBnd" and bits}
        if held:
            raise PrivilegeDropError(f"capabilities remain after the drop: {held}")


def root_warning(euid: int | None = None) -> str | None:
    """What to log once at start when running as root, or None when not."""
    if (os.geteuid() if euid is None else euid) != 0:
        return None
    return (
        "meshserve is running as root. A flaw in meshserve, in a model library or in a "
        "model artifact then puts the whole machine at risk. Out-of-process runtimes "
        "drop to runtime.runAsUser (default 'nobody'), but this process and in-process "
        "runtimes keep root. Run meshserve as an unprivileged user instead (for example "
        "a system user made with `useradd --system meshserve`, or a container with a "
        "non-root USER); it needs root for nothing."
    )


# Run by the runtime's own interpreter and environment, as root, like the
# runtime child: finds what that child still reads after it drops to the
# user (the standard library and packages import lazily), drops the same
# way, and prints the first it cannot read (exit 3).
_ACCESS_PROBE = """\
import importlib.util, os, sys, sysconfig
def package_dir(name):
    spec = importlib.util.find_spec(name)
    return os.path.dirname(spec.origin) if spec is not None and spec.origin else ""
needed = (
    ("the Python standard library", sysconfig.get_path("stdlib")),
    ("the installed packages", os.path.dirname(package_dir("grpc"))),
    ("meshserve", package_dir("meshserve")),
)
uid, gid = int(sys.argv[1]), int(sys.argv[2])
os.setgroups([])
os.setresgid(gid, gid, gid)
os.setresuid(uid, uid, uid)
for what, path in needed:
    if not path or not os.access(path, os.R_OK | os.X_OK):
        print(f"{what} at {path or '(not found)'}")
        sys.exit(3)
"""
_UNREADABLE = 3


async def unreadable_after_drop(
    *, python: str, env: Mapping[str, str], user: tuple[int, int], timeout_s: float
) -> str | None:
    """What a runtime child started as ``python`` with ``env``, once it has
    become ``user`` (uid, gid), could not read: "the Python standard
    library at /root/..."; None if it can read all it needs.

    Checked before the child starts, so that the instance can say what is
    wrong and what to do instead of reporting an exit code. A probe that
    fails in any other way (no such interpreter) is left to the real start
    to report."""
    process = await asyncio.create_subprocess_exec(
        python,
        "-c",
        _ACCESS_PROBE,
        str(user[0]),
        str(user[1]),
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        return None
    if process.returncode != _UNREADABLE:
        return None
    return out.decode(errors="replace").strip() or "the Python environment"
