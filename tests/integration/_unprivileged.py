"""A Python interpreter an unprivileged user can run meshserve with.

Tests that run as root and make a child drop to ``nobody`` need the child's
interpreter, its standard library and the installed packages to be readable
by ``nobody``. On machines where the venv's Python lives under a private home
(here: pyenv in /root, mode 0700), this builds a stand-in: the system Python
of the same minor version, with a ``sitecustomize`` that adds the venv's
site-packages (ABI-compatible: same major.minor) and a readable copy of
meshserve's source (the checkout may be private too).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass, field

import meshserve
from meshserve.security import resolve_user

_PROBE = "import grpc, numpy, meshserve.cli._main"


@dataclass(frozen=True)
class Interpreter:
    python: str
    env: dict[str, str] = field(default_factory=dict)


def _works_as(interpreter: Interpreter, uid: int, gid: int) -> bool:
    try:
        probe = subprocess.run(
            [interpreter.python, "-c", _PROBE],
            env={**os.environ, **interpreter.env},
            user=uid,
            group=gid,
            extra_groups=[],
            capture_output=True,
            timeout=120,
            check=False,
        )
    except PermissionError:  # cannot even exec it
        return False
    return probe.returncode == 0


def readable_tree(path: pathlib.Path) -> None:
    """Let other users read ``path`` (a test's own temp tree) and reach it.
    Files with other links are left as they are: they are someone else's
    (the hard-linked packages of :func:`_linked_tree`, whose executables
    would otherwise lose their mode everywhere)."""
    for current, dirs, files in os.walk(path):
        os.chmod(current, 0o755)
        for name in files:
            file = os.path.join(current, name)
            if os.lstat(file).st_nlink == 1:
                os.chmod(file, 0o644)
        del dirs  # walked by os.walk itself


class NoInterpreterError(RuntimeError):
    """No interpreter ``user`` can import meshserve with can be arranged here
    (the installed packages themselves are out of its reach)."""


def interpreter_for(user: str, scratch: pathlib.Path) -> Interpreter:
    """An interpreter ``user`` can import meshserve with; ``scratch`` must be
    a directory the caller removes afterwards. Raises NoInterpreterError
    (saying why) when none can be arranged."""
    uid, gid = resolve_user(user)
    own = Interpreter(python=sys.executable)
    if _works_as(own, uid, gid):
        return own
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/bin:/usr/local/bin:/bin")
    if system is None:
        raise NoInterpreterError(
            f"{user} cannot run {sys.executable} and there is no system {version}"
        )
    shim = scratch / "shim"
    shim.mkdir()
    # meshserve's own source may sit in a private checkout (a clone in a 0700
    # temporary directory): the stand-in imports a readable copy, first.
    source = scratch / "src"
    shutil.copytree(
        pathlib.Path(meshserve.__file__).parent,
        source / "meshserve",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    # Resolved: the venv may be a link from the private checkout to elsewhere.
    site_dirs = [os.path.realpath(d) for d in site.getsitepackages()]
    (shim / "sitecustomize.py").write_text(
        "import site, sys\n"
        + "".join(f"site.addsitedir({d!r})\n" for d in site_dirs)
        + f"sys.path.insert(0, {str(source)!r})\n"
    )
    readable_tree(scratch)
    stand_in = Interpreter(python=system, env={"PYTHONPATH": str(shim)})
    if _works_as(stand_in, uid, gid):
        return stand_in
    # The installed packages are out of its reach too (a venv inside a
    # private clone): hard links to them in a readable tree, which cost no
    # copy. Their files keep their own modes; only the new directories open.
    linked = [_linked_tree(pathlib.Path(d), scratch / f"site-{n}") for n, d in enumerate(site_dirs)]
    if None not in linked:
        (shim / "sitecustomize.py").write_text(
            "import site, sys\n"
            + "".join(f"site.addsitedir({str(d)!r})\n" for d in linked)
            + f"sys.path.insert(0, {str(source)!r})\n"
        )
        if _works_as(stand_in, uid, gid):
            return stand_in
    raise NoInterpreterError(
        f"{user} can run neither {sys.executable} nor {system} with meshserve "
        f"(are the installed packages at {', '.join(site_dirs)} out of its reach?)"
    )


def _linked_tree(source: pathlib.Path, target: pathlib.Path) -> pathlib.Path | None:
    """``source`` hard-linked at ``target`` with its directories opened to
    other users (None when it cannot be linked, e.g. across file systems).
    Never chmod the files: they are the originals' inodes."""
    if not source.is_dir():
        return None
    done = subprocess.run(
        ["cp", "-al", str(source), str(target)], capture_output=True, timeout=300, check=False
    )
    if done.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        return None
    for current, _dirs, _files in os.walk(target):
        os.chmod(current, 0o755)
    return target
