"""The embedded store works without the etcd extra; asking for etcd without
it fails with the extra's name, not an import traceback."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

# `sys.modules[name] = None` makes `import name` raise ModuleNotFoundError,
# as on a machine where `pip install meshserve` left the extra out.
_WITHOUT_ETCD = textwrap.dedent(
    """
    import asyncio, pathlib, sys
    sys.modules["etcd3aio"] = None
    from meshserve.errors import PreconditionFailedError
    from meshserve.store import open_store
    from meshserve.settings import Settings

    async def main(url: str, data_dir: str) -> None:
        settings = Settings(data_dir=pathlib.Path(data_dir), store={"url": url})
        try:
            async with open_store(settings) as store:
                await store.put("k", b"v")
                print("stored", (await store.get("k")).value.decode())
        except PreconditionFailedError as exc:
            print("refused:", exc)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def _run(url: str, data_dir: pathlib.Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_ETCD, url, str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_embedded_store_needs_no_etcd_client(tmp_path: pathlib.Path) -> None:
    assert _run("", tmp_path) == "stored v"


def test_an_etcd_url_without_the_extra_names_the_extra(tmp_path: pathlib.Path) -> None:
    said = _run("etcd://127.0.0.1:2379", tmp_path)
    assert said.startswith("refused:")
    assert "pip install 'meshserve[etcd]'" in said
    assert "etcd3aio" in said
