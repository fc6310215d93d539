"""The data dir, private to the instance.

It holds the store (every resource, sealed Secrets), the sealing key and
the pulled models. An out-of-process runtime runs as another user
(``runtime.runAsUser``) and may run a hostile pickle: it must read none of
that but the model files pulled for it. So the directory is 0700, or, when
a runtime runs as another user, 0710 with that user's group: the runtime
can reach ``models/...`` by name, and can neither list the directory nor
open the store or the keys (0600 themselves). A directory left wider by an
older version is tightened at start, and the change logged.
"""

from __future__ import annotations

import logging
import os
import pathlib
import stat

__all__ = ["prepare_data_dir"]

log = logging.getLogger(__name__)


def prepare_data_dir(path: pathlib.Path, *, runtime_user: tuple[int, int] | None) -> None:
    """Create ``path`` (and its parents) or tighten it, as the module says;
    ``runtime_user`` is the (uid, gid) runtimes become, None when they keep
    this process's user."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    wanted = 0o700 if runtime_user is None else 0o710
    try:
        if runtime_user is not None and info.st_gid != runtime_user[1]:
            os.chown(path, -1, runtime_user[1])
        if mode != wanted:
            os.chmod(path, wanted)
    except PermissionError:
        log.warning("data dir %s is mode %o and not ours to change; make it %o", path, mode, wanted)
        return
    if mode & ~wanted:
        log.warning("data dir %s was mode %o (open to other users); made it %o", path, mode, wanted)
