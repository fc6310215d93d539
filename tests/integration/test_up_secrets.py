"""Storage credentials in a sealed Secret, on `meshserve up` with a real SeaweedFS.

A ``storage-config`` Secret holding S3 credentials is applied with the CLI,
an InferenceService names its key, and the model is pulled, loaded and
served to tritonclient. The credential is nowhere in the store's files, in
``get``/``describe`` output, in any status or in the log; a re-applied
Secret is what the next pull uses; a Secret sealed with another key fails
its loads with an error naming the Secret and the key.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import yaml

from tests.integration._mesh import make_model, wait_until
from tests.integration._objstores import S3Server, run_seaweedfs
from tests.integration._resources import cli, isvc, status_field
from tests.integration._up import Up, run_up

pytestmark = pytest.mark.timeout(240)

OBJECTS = ("iris/model.skops", "iris/rotated.skops", "iris/back.skops", "iris/other-key.skops")
WRONG_SECRET = "rotated-to-a-wrong-secret-" + "w" * 16

SECRET = """
apiVersion: v1
kind: Secret
metadata:
  name: storage-config
  namespace: {namespace}
type: Opaque
{field}:
  s3: {value}
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("secrets-up")


@pytest.fixture(scope="module")
def s3(work: pathlib.Path) -> Iterator[S3Server]:
    model = make_model(work / "artifact" / "model.skops")
    with run_seaweedfs(work / "seaweedfs") as server:
        client = server.client()
        client.create_bucket(Bucket="models")
        for name in OBJECTS:
            client.upload_file(str(model), "models", name)
        yield server


@pytest.fixture(scope="module")
def up(work: pathlib.Path, s3: S3Server) -> Iterator[Up]:
    with run_up(work / "data") as running:
        yield running


def _entry(s3: S3Server, *, secret_access_key: str | None = None) -> str:
    return json.dumps(
        {
            "type": "s3",
            "access_key_id": s3.access_key_id,
            "secret_access_key": secret_access_key or s3.secret_access_key,
            "endpoint_url": s3.endpoint_url,
            "region": s3.region,
            "bucket": "models",
        }
    )


def _secret_yaml(entry: str, *, namespace: str, string_data: bool = False) -> str:
    if string_data:
        return SECRET.format(namespace=namespace, field="stringData", value=json.dumps(entry))
    encoded = base64.b64encode(entry.encode()).decode()
    return SECRET.format(namespace=namespace, field="data", value=encoded)


def _apply(up: Up, text: str, *, env: dict[str, str] | None = None) -> str:
    done = cli(up, "apply", "-f", "-", stdin=textwrap.dedent(text), env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _isvc(up: Up, name: str, *, namespace: str, path: str) -> None:
    _apply(up, isvc(name, namespace=namespace, key="s3", path=path))


def _status(up: Up, name: str, *, namespace: str) -> dict[str, Any]:
    done = cli(up, "get", "isvc", name, "-n", namespace, "-o", "json")
    assert done.returncode == 0, done.stderr
    status: dict[str, Any] = json.loads(done.stdout).get("status", {})
    return status


def _wait(up: Up, name: str, *, namespace: str, failed: bool = False) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def settled() -> bool:
        nonlocal last
        last = _status(up, name, namespace=namespace)
        if failed:
            return bool(status_field(last, "lastFailureInfo"))
        return status_field(last, "ready") is True

    try:
        wait_until(settled, 60, f"{namespace}/{name} {'failing' if failed else 'available'}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last status: {last}\n{up.log_tail()}") from None
    return last


def _infer(up: Up, model: str) -> np.ndarray:
    client = up.grpc_client()
    try:
        tensor = triton_grpc.InferInput("input-0", [2, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((2, 4), dtype=np.float32))
        output = client.infer(model, [tensor], client_timeout=60).as_numpy("predict")
        assert isinstance(output, np.ndarray)
        return output
    finally:
        client.close()


def _forms(s3: S3Server, *secrets: str) -> list[bytes]:
    """Each secret, and each way it could sit in the store: raw, inside its
    JSON entry, and base64 of that entry (a Secret's ``data``)."""
    forms = []
    for secret in (s3.secret_access_key, *secrets):
        entry = _entry(s3, secret_access_key=secret)
        forms += [secret.encode(), entry.encode(), base64.b64encode(entry.encode())]
    return forms


def test_a_sealed_secret_holds_the_credentials_an_inference_service_pulls_with(
    up: Up, s3: S3Server
) -> None:
    assert (up.data_dir / "sealing.key").stat().st_mode & 0o777 == 0o600
    applied = _apply(up, _secret_yaml(_entry(s3), namespace="team-a"))
    assert applied == "secret/storage-config created"
    _isvc(up, "secure", namespace="team-a", path=OBJECTS[0])
    status = _wait(up, "secure", namespace="team-a")
    assert status_field(status, "activeModelState") == "Loaded"
    assert _infer(up, "team-a/secure").shape == (2,)
    assert s3.request_count(key_substring=OBJECTS[0]) >= 1


def test_get_and_describe_show_keys_and_lengths_never_values(up: Up, s3: S3Server) -> None:
    _wait(up, "secure", namespace="team-a")
    entry = _entry(s3)
    as_yaml = cli(up, "get", "secret", "storage-config", "-n", "team-a", "-o", "yaml")
    assert as_yaml.returncode == 0, as_yaml.stderr
    shown = yaml.safe_load(as_yaml.stdout)
    assert shown["kind"] == "Secret"
    assert shown["data"] == {"s3": f"<sealed, {len(entry.encode())} bytes>"}
    as_json = cli(up, "get", "secret", "storage-config", "-n", "team-a", "-o", "json")
    assert json.loads(as_json.stdout)["data"] == shown["data"]
    table = cli(up, "get", "secrets", "-A")
    assert table.stdout.split("\n")[0].split() == ["NAME", "TYPE", "DATA", "AGE"]
    assert table.stdout.split("\n")[1].split()[:3] == ["storage-config", "Opaque", "1"]
    described = cli(up, "describe", "secret", "storage-config", "-n", "team-a")
    assert described.returncode == 0, described.stderr
    assert "<sealed," in described.stdout
    statuses = cli(up, "get", "isvc", "-A", "-o", "yaml")
    outputs = [as_yaml, as_json, table, described, statuses]
    for output in outputs:
        for form in _forms(s3):
            assert form.decode() not in output.stdout + output.stderr
        assert "ms1:" not in output.stdout  # not even the sealed form


def test_a_rotated_secret_is_used_by_the_next_pull(up: Up, s3: S3Server) -> None:
    wrong = _entry(s3, secret_access_key=WRONG_SECRET)
    assert _apply(up, _secret_yaml(wrong, namespace="team-a", string_data=True)) == (
        "secret/storage-config configured"
    )
    _isvc(up, "rotated", namespace="team-a", path=OBJECTS[1])
    failure = status_field(_wait(up, "rotated", namespace="team-a", failed=True), "lastFailureInfo")
    assert "storage key 's3'" in failure["message"]
    assert "access denied" in failure["message"]
    assert WRONG_SECRET not in json.dumps(failure)
    # Loaded copies keep serving; only pulls read the Secret.
    assert _infer(up, "team-a/secure").shape == (2,)

    _apply(up, _secret_yaml(_entry(s3), namespace="team-a"))
    _isvc(up, "rotated-back", namespace="team-a", path=OBJECTS[2])
    _wait(up, "rotated-back", namespace="team-a")
    assert _infer(up, "team-a/rotated-back").shape == (2,)


def test_a_secret_sealed_with_another_key_fails_its_load_by_name(up: Up, s3: S3Server) -> None:
    # The break-glass path (--store) seals in the CLI: given another key than
    # the one `up` made, it seals what `up` cannot unseal.
    other = secrets.token_bytes(32)
    env = _cli_env({"MESHSERVE_SECURITY__SEALING_KEY": base64.b64encode(other).decode()})
    store = json.loads((up.data_dir / "endpoints.json").read_text())["store"]
    text = textwrap.dedent(_secret_yaml(_entry(s3), namespace="team-b"))
    done = cli(up, "apply", "-f", "-", "--store", store, stdin=text, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "secret/storage-config created"
    _isvc(up, "other-key", namespace="team-b", path=OBJECTS[3])
    failure = status_field(
        _wait(up, "other-key", namespace="team-b", failed=True), "lastFailureInfo"
    )
    message = failure["message"]
    assert "key 's3' of secret 'team-b/storage-config'" in message, message
    assert "another sealing key" in message
    assert s3.secret_access_key not in message
    # Nothing was fetched with credentials this instance could not read.
    assert s3.request_count(key_substring=OBJECTS[3]) == 0


def _cli_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without MESHSERVE_ settings, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("MESHSERVE_")}, **extra}


def test_applying_a_secret_without_a_key_is_refused(tmp_path: pathlib.Path, s3: S3Server) -> None:
    # Through the API the server seals (and `up` always has a key): the
    # break-glass path, which seals in the CLI, is the one that can lack it.
    empty = tmp_path / "no-up-here"
    target = ["--data-dir", str(empty), "--store", f"sqlite:///{empty / 'store.db'}"]
    done = subprocess.run(
        [sys.executable, "-m", "meshserve", "apply", "-f", "-", *target],
        input=textwrap.dedent(_secret_yaml(_entry(s3), namespace="default")),
        capture_output=True,
        text=True,
        timeout=60,
        env=_cli_env({}),
    )
    assert done.returncode == 1
    assert "secret/storage-config" in done.stderr and "no sealing key" in done.stderr
    assert s3.secret_access_key not in done.stderr + done.stdout
    assert not (empty / "store.db").exists()


def test_no_credential_in_any_file_of_the_data_dir_or_the_log(up: Up, s3: S3Server) -> None:
    _wait(up, "secure", namespace="team-a")
    files = [p for p in up.data_dir.rglob("*") if p.is_file()]
    store_files = [p for p in files if p.name.startswith("store.db")]
    assert store_files, files
    assert up.log in files
    forms = _forms(s3, WRONG_SECRET)
    for path in files:
        data = path.read_bytes()
        for form in forms:
            assert form not in data, f"{path} holds a credential"
    log = up.log.read_text(errors="replace")
    assert "storage config read from secret 'team-a/storage-config': keys ['s3']" in log
