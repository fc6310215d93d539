"""Path checks: nothing a store names lands outside the model directory."""

from __future__ import annotations

import pathlib

import pytest

from meshserve.errors import ArtifactRejectedError
from meshserve.storage._paths import (
    check_no_escaping_symlinks,
    check_remote_path,
    model_dir_name,
    safe_relative_path,
    within,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a/b.onnx", "a/b.onnx"), ("a//b", "a/b"), ("./a/./b", "a/b"), ("m.bst", "m.bst")],
)
def test_safe_relative_paths_are_normalised(name: str, expected: str) -> None:
    assert str(safe_relative_path(name, where="w")) == expected


@pytest.mark.parametrize(
    "name", ["../x", "a/../../x", "a/..", "/etc/passwd", "a\\..\\x", "", ".", "a\x00b"]
)
def test_escaping_paths_are_refused(name: str) -> None:
    with pytest.raises(ArtifactRejectedError, match=r"^w: "):
        safe_relative_path(name, where="w")


def test_remote_paths_keep_a_trailing_slash_and_refuse_dotdot() -> None:
    assert check_remote_path("/models/dir/", where="w") == "models/dir/"
    assert check_remote_path("", where="w") == ""
    with pytest.raises(ArtifactRejectedError):
        check_remote_path("models/../other", where="w")


@pytest.mark.parametrize("model_id", ["..", ".", "a/b", "../x", ".hidden", "plain__isvc-1"])
def test_model_dir_names_are_one_visible_component(model_id: str) -> None:
    name = model_dir_name(model_id)
    assert "/" not in name
    assert not name.startswith(".")
    assert name not in ("", ".", "..")


def test_model_dir_names_stay_distinct() -> None:
    ids = ["a/b", "a%2Fb", "a_b", ".a", "%2Ea"]
    assert len({model_dir_name(i) for i in ids}) == len(ids)


def test_symlinks_inside_are_allowed_and_outside_refused(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "claim"
    (root / "m").mkdir(parents=True)
    (root / "m" / "weights.bin").write_bytes(b"w")
    (root / "m" / "alias.bin").symlink_to("weights.bin")
    check_no_escaping_symlinks(root / "m", root=root, where="w")

    secret = tmp_path / "secret.txt"
    secret.write_text("s")
    (root / "m" / "evil").symlink_to(secret)
    with pytest.raises(ArtifactRejectedError, match="symlink 'm/evil'"):
        check_no_escaping_symlinks(root / "m", root=root, where="w")


def test_dangling_and_directory_symlinks_are_checked(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "claim"
    root.mkdir()
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ArtifactRejectedError):
        check_no_escaping_symlinks(root, root=root, where="w")
    (root / "dangling").unlink()
    (root / "up").symlink_to(tmp_path)
    with pytest.raises(ArtifactRejectedError):
        check_no_escaping_symlinks(root, root=root, where="w")
    assert not within(root / "up", root)
