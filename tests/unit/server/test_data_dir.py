"""The data dir is private: 0700, or 0710 for the runtime user's group."""

from __future__ import annotations

import logging
import os
import pathlib
import stat

import pytest

from meshserve.server._data_dir import prepare_data_dir


def _mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_data_dir_is_created_private(tmp_path: pathlib.Path) -> None:
    previous = os.umask(0o022)
    try:
        prepare_data_dir(tmp_path / "a" / "data", runtime_user=None)
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "a" / "data") == 0o700


def test_an_open_data_dir_is_tightened_and_the_change_logged(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    with caplog.at_level(logging.WARNING):
        prepare_data_dir(data, runtime_user=None)
    assert _mode(data) == 0o700
    assert "was mode 755" in caplog.text
    caplog.clear()
    prepare_data_dir(data, runtime_user=None)
    assert caplog.text == ""


def test_a_runtime_running_as_another_user_may_only_traverse(tmp_path: pathlib.Path) -> None:
    # As root, the group of a real other user; otherwise our own (chown to
    # a group we are not in is not ours to do).
    gid = 65534 if os.geteuid() == 0 else os.getgid()
    data = tmp_path / "data"
    prepare_data_dir(data, runtime_user=(65534, gid))
    assert _mode(data) == 0o710
    assert data.stat().st_gid == gid
