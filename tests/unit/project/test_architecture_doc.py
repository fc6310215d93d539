"""docs/architecture.md is the map of record, so it must not drift from the
tree: every file and package it names exists, its layers table is
pyproject's import-linter layers contract, its settings table lists every
settings group, and it draws the request path and the control path as
Mermaid flowcharts whose every box names a file.

The conventions the page states and this test reads:

- a source file is named by its path relative to ``src/meshserve/``
  (``mesh/_router.py``), a package by its directory (``mesh/``): in
  backticks in the text, bare inside ```` ```mermaid ```` blocks (where
  backticks would start Mermaid's markdown strings); a path starting with a
  repository directory (``tests/``, ``bench/``, ...) is relative to the
  repository's root;
- the request path and the control path are ``flowchart`` blocks in the
  sections whose headings start with "Request path" and "Control path";
  their node labels are quoted (``id["..."]``) and each names a file.
"""

from __future__ import annotations

import pathlib
import re
import tomllib

import pytest

from meshserve.settings import Settings

ROOT = pathlib.Path(__file__).resolve().parents[3]
SRC = ROOT / "src" / "meshserve"
DOC = ROOT / "docs" / "architecture.md"
ROOT_DIRS = ("tests/", "bench/", "scripts/", "docs/", "deploy/", "examples/", "src/")
"""Paths starting with these are relative to the repository's root."""

_NAME = r"[a-z_][a-z0-9_]*"
FILE = re.compile(rf"(?:{_NAME}/)*{_NAME}\.py")
PACKAGE = re.compile(rf"(?:{_NAME}/)+")
FILE_IN_TEXT = re.compile(rf"(?<![\w/.-])((?:{_NAME}/)*{_NAME}\.py)(?![\w/])")
MERMAID = re.compile(r"^```mermaid\n(.*?)^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
NODE = re.compile(r"\b\w+\s*(?:\[\(|\(\[|\[\[|\[|\{|\(\()\"([^\"]*)\"")
BARE_NODE = re.compile(r"\b\w+\s*(?:\[|\{|\()(?![\"\[\(])")


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def _sections() -> dict[str, str]:
    """``## `` heading -> its body."""
    parts = re.split(r"^## (.+)$", _text(), flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def _section(prefix: str) -> str:
    found = [body for title, body in _sections().items() if title.startswith(prefix)]
    assert len(found) == 1, f"expected one section headed {prefix!r}, found {len(found)}"
    return found[0]


def _resolve(path: str) -> pathlib.Path:
    return ROOT / path if path.startswith(ROOT_DIRS) else SRC / path


def _named_files_and_packages() -> tuple[set[str], set[str]]:
    text = _text()
    files: set[str] = set()
    for block in MERMAID.findall(text):
        files.update(FILE_IN_TEXT.findall(block))
    packages: set[str] = set()
    for span in CODE_SPAN.findall(MERMAID.sub("", text)):
        if FILE.fullmatch(span):
            files.add(span)
        elif PACKAGE.fullmatch(span):
            packages.add(span)
    return files, packages


def _flowchart(section: str) -> str:
    blocks = [b for b in MERMAID.findall(_section(section)) if b.lstrip().startswith("flowchart")]
    assert blocks, f"no ```mermaid flowchart in the {section!r} section"
    return blocks[0]


def test_every_named_file_exists() -> None:
    files, _ = _named_files_and_packages()
    assert len(files) > 60, f"the page names only {len(files)} files: is the convention kept?"
    missing = sorted(f for f in files if not _resolve(f).is_file())
    assert not missing, f"named in {DOC.name} but not in the tree: {missing}"


def test_every_named_package_exists() -> None:
    _, packages = _named_files_and_packages()
    assert packages, "the page names no packages"
    missing = sorted(p for p in packages if not _resolve(p).is_dir())
    assert not missing, f"named in {DOC.name} but not in the tree: {missing}"


@pytest.mark.parametrize("section", ["Request path", "Control path"])
def test_path_is_a_flowchart_whose_every_box_names_a_file(section: str) -> None:
    chart = _flowchart(section)
    labels = NODE.findall(chart)
    assert len(labels) >= 10, f"{section}: only {len(labels)} boxes"
    unnamed = [label for label in labels if not FILE_IN_TEXT.search(label)]
    assert not unnamed, f"{section}: boxes that name no file: {unnamed}"
    for line in chart.splitlines():
        if line.strip().startswith(("subgraph", "%%")):
            continue
        # Labels and edge texts blanked: what is left must hold no unquoted box.
        bare = BARE_NODE.search(re.sub(r'"[^"]*"', '""', line))
        assert bare is None, f"{section}: unquoted box label in {line.strip()!r}"


def test_lifecycles_are_state_diagrams() -> None:
    for section in ("Lifecycle of a model", "Lifecycle of an instance"):
        blocks = MERMAID.findall(_section(section))
        assert any(b.lstrip().startswith("stateDiagram") for b in blocks), section
    assert "InstanceState" in _section("Lifecycle of an instance")


def test_layers_table_is_the_import_linter_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers"]
    expected = [
        sorted(name.strip().removeprefix("meshserve.") for name in layer.split("|"))
        for layer in layers
    ]
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", _section("Packages and layers"), re.MULTILINE)
    documented = [sorted(p.strip("/") for p in CODE_SPAN.findall(cell)) for _, cell in rows]
    assert [int(n) for n, _ in rows] == list(range(1, len(rows) + 1))
    assert documented == expected


def test_settings_table_lists_every_group() -> None:
    rows = re.findall(r"^\| `(\w+)` \|", _section("Where settings are read"), re.MULTILINE)
    assert sorted(rows) == sorted(Settings.model_fields)
