"""The parts of privilege dropping that need no child process."""

from __future__ import annotations

import os
import pwd

import pytest

from meshserve.security import capabilities, drop_privileges, resolve_user, root_warning


def test_resolve_user_by_name_and_by_uid() -> None:
    nobody = pwd.getpwnam("nobody")
    assert resolve_user("nobody") == (nobody.pw_uid, nobody.pw_gid)
    assert resolve_user(str(nobody.pw_uid)) == (nobody.pw_uid, nobody.pw_gid)
    assert resolve_user(nobody.pw_uid) == (nobody.pw_uid, nobody.pw_gid)


def test_a_uid_without_a_passwd_entry_gets_the_group_of_the_same_number() -> None:
    free = next(uid for uid in range(54321, 60000) if not _exists(uid))
    assert resolve_user(free) == (free, free)


def _exists(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def test_an_unknown_user_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="no such user"):
        resolve_user("no-such-user-meshserve")


def test_root_is_not_a_target() -> None:
    if os.geteuid() == 0:
        with pytest.raises(ValueError, match="cannot be root"):
            drop_privileges(0)
        assert os.geteuid() == 0  # refused before changing anything
    else:
        assert drop_privileges(0) is False


def test_root_warning_names_the_risk_and_the_way_out() -> None:
    text = root_warning(euid=0)
    assert text is not None
    assert "running as root" in text
    assert "runtime.runAsUser" in text
    assert "unprivileged user" in text
    assert root_warning(euid=1000) is None
    assert (root_warning() is None) == (os.geteuid() != 0)


def test_capabilities_are_read_from_a_status_file() -> None:
    status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\nCapBnd:\t0\n"
    assert capabilities(status) == {"CapInh": 0, "CapEff": 0x1FFFFFFFFFF, "CapBnd": 0}
