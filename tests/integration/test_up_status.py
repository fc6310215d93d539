"""The status page (``GET /status``, polling ``/status.json``) and
``meshserve status`` on a running `meshserve up`: a model shows once it
loads, a failed load shows with its reason, a model id holding markup
shows as text, and with auth on the snapshot needs a reader's token."""

from __future__ import annotations

import hashlib
import json
import pathlib
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest

from tests._examples import iris_rows
from tests._processes import read_until
from tests.integration._browser import artifacts_dir, chromium
from tests.integration._credentials import credential
from tests.integration._mesh import make_model
from tests.integration._resources import apply, isvc
from tests.integration._up import Registration, Up, iris_http_input, run_up, wait_until

# A model id is client data: the page must show this as text, never run it.
HOSTILE = 'bad<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
READER, NARROW = map(credential, ("status-reader-token-1", "status-narrow-token-2"))
PAGE_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    work = tmp_path_factory.mktemp("status")
    model = make_model(work / "iris.skops")
    register = [Registration(name="iris", type="sklearn", path=model, load_now=True)]
    with run_up(work / "data", register=register) as running:
        yield running


def _corrupt(up: Up) -> pathlib.Path:
    path = up.data_dir.parent / "corrupt.skops"
    path.write_bytes(b"this is not a model")
    return path


def _snapshot(up: Up, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{up.rest_url}/status.json", headers=headers, timeout=30)


def _serve(up: Up, name: str, *, times: int) -> None:
    client = up.http_client()
    try:
        for _ in range(times):
            client.infer(name, [iris_http_input("sklearn", iris_rows(2), binary=False)])
    finally:
        client.close()


def _iris_loaded(up: Up) -> bool:
    models = {m["model_id"]: m for m in _snapshot(up).json()["models"]}
    return "iris" in models and len(models["iris"]["copies"]) == 1


def test_page_shows_a_loaded_model_then_a_failed_load_with_its_reason(up: Up) -> None:
    from playwright.sync_api import expect

    with chromium() as browser:
        page = browser.new_page()
        page.goto(f"{up.rest_url}/status")
        iris = page.locator('#models tr[data-model="iris"]')
        expect(iris).to_be_visible(timeout=PAGE_TIMEOUT_MS)
        # Its copy shows once loaded (the page polls; the load may still run).
        expect(iris.locator('td[data-label="copies"]')).to_have_text("1", timeout=PAGE_TIMEOUT_MS)
        expect(page.locator(".card").first).to_contain_text("models")
        # Some traffic and an InferenceService, for the screenshot.
        _serve(up, "iris", times=5)
        assert apply(up, isvc("svc-a", uri="pvc://claim/model.skops")).returncode == 0
        expect(page.locator('#services tr[data-model="default/svc-a"]')).to_be_visible(
            timeout=PAGE_TIMEOUT_MS
        )

        corrupt = _corrupt(up)
        up.management.register(HOSTILE, type="sklearn", path=corrupt, load_now=True)
        failure = page.locator("#failures tr").filter(has_text="window.pwned=1")
        expect(failure).to_be_visible(timeout=PAGE_TIMEOUT_MS)
        # The id shows verbatim, as text; the reason names the artifact.
        expect(failure.locator('td[data-label="model"]')).to_have_text(HOSTILE)
        expect(failure.locator('td[data-label="reason"]')).to_contain_text(corrupt.name)
        assert page.evaluate("typeof window.pwned") == "undefined"
        assert page.locator("main img, main script").count() == 0
        page.screenshot(path=artifacts_dir() / "status-page.png", full_page=True)

        # On a phone: no sideways scrolling, the same rows.
        phone = browser.new_page()
        phone.set_viewport_size({"width": 390, "height": 844})
        phone.goto(f"{up.rest_url}/status")
        expect(phone.locator('#models tr[data-model="iris"]')).to_be_visible(
            timeout=PAGE_TIMEOUT_MS
        )
        assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        phone.screenshot(path=artifacts_dir() / "status-page-phone.png", full_page=True)


def test_snapshot_names_the_failure_its_reason_and_the_inference_services(up: Up) -> None:
    corrupt = _corrupt(up)
    up.management.register("broken", type="sklearn", path=corrupt, load_now=True)
    created = apply(up, isvc("svc-a", uri="pvc://claim/model.skops"))
    assert created.returncode == 0, created.stderr
    wait_until(lambda: _iris_loaded(up), timeout=60, what="iris loaded")

    def snapshot_with_both() -> dict[str, Any] | None:
        data: dict[str, Any] = _snapshot(up).json()
        failed = {f["model_id"] for f in data["failures"]}
        services = {s["name"] for s in data["services"]}
        return data if "broken" in failed and "svc-a" in services else None

    data = wait_until(snapshot_with_both, timeout=60, what="the failure and the isvc")
    assert _snapshot(up).headers["cache-control"] == "no-store"
    (instance,) = data["instances"]
    assert instance["here"] and instance["capacity_bytes"] > 0 and instance["model_count"] >= 1
    (broken,) = [f for f in data["failures"] if f["model_id"] == "broken"]
    assert corrupt.name in broken["reason"] and broken["instance_id"] == instance["instance_id"]
    (service,) = [s for s in data["services"] if s["name"] == "svc-a"]
    assert service["namespace"] == "default" and service["ready"] in ("True", "False", "Unknown")


def test_the_page_is_static_and_locked_down(up: Up) -> None:
    page = httpx.get(f"{up.rest_url}/status", timeout=30)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    # The page carries no data: it is the same whatever the mesh holds.
    assert "iris" not in page.text


def _meshserve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshserve", "status", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_shows_the_same_tables_and_json(up: Up) -> None:
    wait_until(lambda: _iris_loaded(up), timeout=60, what="iris loaded")
    shown = _meshserve("--rest-url", up.rest_url)
    assert shown.returncode == 0, shown.stderr
    for title in ("INSTANCES", "HOTTEST MODELS", "LOADS IN FLIGHT", "RECENT FAILURES"):
        assert title in shown.stdout
    (iris,) = [line for line in shown.stdout.splitlines() if line.startswith("iris ")]
    assert iris.split()[:3] == ["iris", "sklearn", "1"]
    as_json = _meshserve("--rest-url", up.rest_url, "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert "iris" in {m["model_id"] for m in json.loads(as_json.stdout)["models"]}


def _watch(*args: str, expect: Sequence[str]) -> None:
    """Run ``meshserve status -w 0.5 ARGS``, read lines matching each of
    ``expect`` in turn, then Ctrl-C it: it exits 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshserve", "status", "-w", "0.5", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        for pattern in expect:
            read_until(proc, pattern, 30)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


_FRAME = r"Every 0.5s: meshserve status"


def test_cli_watch_refreshes_until_interrupted(up: Up) -> None:
    # Lines of a chunk after a match are dropped by read_until, so look for
    # each part of the frames in turn.
    _watch("--rest-url", up.rest_url, expect=(_FRAME, r"^HOTTEST MODELS", _FRAME))


def test_cli_watch_keeps_going_while_nothing_answers() -> None:
    refused = r"error: cannot connect to http://127.0.0.1:9"
    _watch("--rest-url", "http://127.0.0.1:9", "--timeout", "5", expect=(refused, _FRAME, refused))


def test_cli_cannot_connect_exits_3(tmp_path: pathlib.Path) -> None:
    done = _meshserve("--rest-url", "http://127.0.0.1:9", "--timeout", "5")
    assert done.returncode == 3, done.stderr
    assert "cannot connect" in done.stderr


# -- with auth on ---------------------------------------------------------------


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    work = tmp_path_factory.mktemp("status-auth")
    model = make_model(work / "m.skops")
    tokens = work / "tokens.yaml"
    tokens.write_text(
        "principals:\n"
        f"  - {{name: reader, tokenSha256: {_sha(READER)}, role: viewer, namespaces: ['*']}}\n"
        f"  - {{name: narrow, tokenSha256: {_sha(NARROW)}, role: viewer, namespaces: ['*'],"
        " models: ['m-a']}\n"
    )
    config = work / "config.yaml"
    config.write_text(
        f"auth:\n  enabled: true\n  tokensFile: {tokens}\nstorage:\n  localRoots: [{work}]\n"
    )
    register = [
        Registration(name="m-a", type="sklearn", path=model),
        Registration(name="m-b", type="sklearn", path=model),
    ]
    with run_up(work / "data", register=register, args=["--config", str(config)]) as running:
        yield running


def test_with_auth_the_snapshot_needs_a_readers_token(locked: Up) -> None:
    assert httpx.get(f"{locked.rest_url}/status", timeout=30).status_code == 200
    for token in (None, "not-a-token"):
        refused = _snapshot(locked, token)
        assert refused.status_code == 401, refused.text
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert "m-a" not in refused.text
    seen = _snapshot(locked, READER)
    assert seen.status_code == 200
    assert {m["model_id"] for m in seen.json()["models"]} == {"m-a", "m-b"}
    # A token scoped to some models sees only those.
    narrow = _snapshot(locked, NARROW)
    assert [m["model_id"] for m in narrow.json()["models"]] == ["m-a"]

    without = _meshserve("--rest-url", locked.rest_url)
    assert without.returncode == 1
    assert "401" in without.stderr
    with_token = _meshserve("--rest-url", locked.rest_url, "--token", READER)
    assert with_token.returncode == 0, with_token.stderr
    assert "m-b" in with_token.stdout


def test_with_auth_the_page_asks_for_a_token_and_keeps_it_out_of_the_url(locked: Up) -> None:
    from playwright.sync_api import expect

    with chromium() as browser:
        page = browser.new_page()
        page.goto(f"{locked.rest_url}/status")
        expect(page.locator("#login")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
        expect(page.locator("#login-reason")).to_contain_text("token")
        page.fill("#token", READER)
        page.click("#login button")
        expect(page.locator('#models tr[data-model="m-b"]')).to_be_visible(timeout=PAGE_TIMEOUT_MS)
        # A token in the fragment (never sent to the server) works too, and
        # leaves the address bar.
        fresh = browser.new_page()
        fresh.goto(f"{locked.rest_url}/status#token={NARROW}")
        expect(fresh.locator('#models tr[data-model="m-a"]')).to_be_visible(timeout=PAGE_TIMEOUT_MS)
        assert NARROW not in fresh.url


# -- a mesh of two ---------------------------------------------------------------


def test_every_instance_of_a_mesh_shows_the_whole_mesh(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    work = tmp_path_factory.mktemp("status-mesh")
    model = make_model(work / "iris.skops")
    register = [Registration(name="iris", type="sklearn", path=model, load_now=True)]
    with run_up(work / "data", register=register, args=["--instances", "2"]) as up:
        snapshots: dict[str, dict[str, Any]] = {}

        def from_both() -> bool:
            # The instances share the REST port: new connections reach either.
            data = _snapshot(up).json()
            copies = {m["model_id"]: m["copies"] for m in data["models"]}
            if len(data["instances"]) == 2 and copies.get("iris"):
                snapshots[data["served_by"]] = data
            return len(snapshots) == 2

        wait_until(from_both, timeout=90, what="a snapshot from each instance", interval=0.2)
    ids = set(snapshots)
    for served_by, data in snapshots.items():
        assert {i["instance_id"] for i in data["instances"]} == ids
        assert [i["instance_id"] for i in data["instances"] if i["here"]] == [served_by]
        (iris,) = [m for m in data["models"] if m["model_id"] == "iris"]
        assert set(iris["copies"]) <= ids
