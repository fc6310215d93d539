"""The attacks on storage locations, against a real `meshserve up` with auth:
credentials in storage URIs (refused on every path in, never echoed, never
stored or logged), an editor reading the server's files by path, a pvc
claim that is a symlink out of the root, and the modes of the data dir and
the store."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import stat
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest
import yaml

from meshserve.protocol._pb import meshserve_admin_pb2 as admin
from meshserve.protocol._pb import model_mesh_pb2 as mm
from tests.integration._credentials import credential
from tests.integration._mesh import make_model
from tests.integration._resources import cli, isvc, status_field, wait_status
from tests.integration._up import Up, run_up

pytestmark = pytest.mark.timeout(180)

ADMIN = credential("storage-safety-admin-token")
EDITOR_ALPHA = credential("storage-safety-alpha-editor-token")
SECRET = credential("wJalrXUtnFEMI-K7MDENG-bPxRfiCYSECRET")

# Every form of a credential in a URI the attack used, and a few more.
CREDENTIAL_URIS = [
    f"s3://AKIAEXAMPLE:{SECRET}@models/m.skops",
    f"https://user:{SECRET}@files.example.test/m.skops",
    f"https://{SECRET}@files.example.test/m.skops",
    f"https://files.example.test/m.skops?X-Amz-Signature={SECRET}&X-Amz-Credential=AKIA",
    f"https://acct.blob.core.windows.net/c/m.skops?sv=2022-11-02&sig={SECRET}",
    f"https://files.example.test/m.skops#access_token={SECRET}",
    f"gs://bucket/m.skops?token={SECRET}",
]


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    work = tmp_path_factory.mktemp("storage-safety")
    make_model(work / "shared" / "m.skops")
    make_model(work / "alpha" / "m.skops")
    make_model(work / "beta" / "m.skops")
    make_model(work / "elsewhere" / "m.skops")
    (work / "pvc").mkdir()
    (work / "pvc" / "escape").symlink_to(work / "elsewhere")
    return work


@pytest.fixture(scope="module")
def up(work: pathlib.Path) -> Iterator[Up]:
    tokens = work / "tokens.yaml"
    tokens.write_text(
        "principals:\n"
        f"  - {{name: root, tokenSha256: {_sha(ADMIN)}, role: admin, namespaces: ['*']}}\n"
        f"  - {{name: alpha-editor, tokenSha256: {_sha(EDITOR_ALPHA)}, role: editor,"
        " namespaces: [alpha]}\n"
    )
    config = work / "config.yaml"
    config.write_text(
        f"auth:\n  enabled: true\n  tokensFile: {tokens}\n"
        "storage:\n"
        f"  pvcRoot: {work / 'pvc'}\n"
        f"  localRoots: [{work / 'shared'}]\n"
        # Namespaces without '-': config keys are still rewritten to snake
        # case (issue 12, item 8, fixed elsewhere).
        f"  namespaceLocalRoots: {{alpha: [{work / 'alpha'}], beta: [{work / 'beta'}]}}\n"
    )
    with run_up(work / "data", args=["--config", str(config)]) as running:
        yield running


def _cli(up: Up, *args: str, token: str = ADMIN, stdin: str | None = None) -> tuple[int, str]:
    """A resource command (found through the data dir) with ``token``."""
    done = cli(up, *args, stdin=stdin, env={**os.environ, "MESHSERVE_TOKEN": token})
    return done.returncode, done.stdout + done.stderr


def _models(up: Up, *args: str, token: str = ADMIN) -> tuple[int, str]:
    """``meshserve models ARGS`` against ``up`` with ``token``."""
    done = subprocess.run(
        [sys.executable, "-m", "meshserve", "models", *args, "--endpoint", up.grpc],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MESHSERVE_TOKEN": token},
    )
    return done.returncode, done.stdout + done.stderr


def _register(up: Up, model_id: str, *, path: str, key: str = "", token: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        up.management.mesh.registerModel(
            mm.RegisterModelRequest(
                modelId=model_id, modelInfo=mm.ModelInfo(type="sklearn", path=path, key=key)
            ),
            metadata=[("authorization", f"Bearer {token}")],
            timeout=30,
        )
    return info.value


def _registered(up: Up) -> set[str]:
    reply = up.management.admin.ListModels(
        admin.ListModelsRequest(), metadata=[("authorization", f"Bearer {ADMIN}")], timeout=10
    )
    return {m.modelId for m in reply.models}


def _stored_bytes(up: Up) -> bytes:
    return b"".join(file.read_bytes() for file in up.data_dir.glob("store.db*") if file.is_file())


def _assert_nowhere(up: Up, *texts: str) -> None:
    """The secret is in none of ``texts``, the store files or the log."""
    for text in texts:
        assert SECRET not in text
    assert SECRET.encode() not in _stored_bytes(up)
    assert SECRET not in up.log.read_text(errors="replace")


@pytest.mark.parametrize("uri", CREDENTIAL_URIS)
def test_an_inference_service_with_a_credential_in_its_uri_is_refused(up: Up, uri: str) -> None:
    code, output = _cli(up, "apply", "-f", "-", stdin=isvc("leaky", uri=uri))
    # 1: the CLI's code for a file it cannot apply, as for any invalid field.
    assert code == 1, output
    assert "storageUri" in output
    # The admin API refuses it too (a client that skips the CLI's check).
    document = yaml.safe_load(isvc("leaky", uri=uri))
    with pytest.raises(grpc.RpcError) as info:
        up.management.admin.ApplyResources(
            admin.ApplyResourcesRequest(documents=[json.dumps(document)]),
            metadata=[("authorization", f"Bearer {ADMIN}")],
            timeout=30,
        )
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    code, listing = _cli(up, "get", "isvc", "-o", "json")
    assert code == 0, listing
    assert "leaky" not in listing
    _assert_nowhere(up, output, str(info.value.details()), listing)


@pytest.mark.parametrize("uri", CREDENTIAL_URIS)
def test_a_registration_with_a_credential_in_its_uri_is_invalid_argument(up: Up, uri: str) -> None:
    in_path = _register(up, "leaky-path", path=uri, token=ADMIN)
    key = json.dumps({"storage_params": {"type": "http", "url": uri}})
    in_key = _register(up, "leaky-key", path="m.skops", key=key, token=ADMIN)
    for error in (in_path, in_key):
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    code, output = _models(up, "register", "leaky-cli", "--type", "sklearn", "--uri", uri)
    assert code != 0
    path_code, path_output = _models(
        up, "register", "leaky-cli", "--type", "sklearn", "--path", uri
    )
    assert path_code == 1 and "INVALID_ARGUMENT" in path_output
    assert not _registered(up) & {"leaky-path", "leaky-key", "leaky-cli"}
    _assert_nowhere(up, str(in_path.details()), str(in_key.details()), output, path_output)


@pytest.mark.parametrize(
    "path",
    ["/etc", "/", "../../..", "{work}/beta/m.skops", "{work}/shared/../elsewhere/m.skops"],
)
def test_an_editor_cannot_load_the_servers_files_by_path(
    up: Up, work: pathlib.Path, path: str
) -> None:
    path = path.format(work=work)
    error = _register(up, "alpha/probe", path=path, token=EDITOR_ALPHA)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = str(error.details())
    # It names the roots, and lists nothing that is at the path.
    assert str(work / "alpha") in details
    assert "passwd" not in details
    code, output = _models(
        up, "register", "alpha/probe", "--type", "sklearn", "--path", path, token=EDITOR_ALPHA
    )
    assert code == 1 and "INVALID_ARGUMENT" in output and "passwd" not in output
    assert "alpha/probe" not in _registered(up)


def test_an_editor_loads_from_its_namespaces_root(up: Up, work: pathlib.Path) -> None:
    reply = up.management.mesh.registerModel(
        mm.RegisterModelRequest(
            modelId="alpha/own",
            modelInfo=mm.ModelInfo(type="sklearn", path=str(work / "alpha" / "m.skops")),
            loadNow=True,
            sync=True,
        ),
        metadata=[("authorization", f"Bearer {EDITOR_ALPHA}")],
        timeout=60,
    )
    assert mm.ModelStatusInfo.ModelStatus.Name(reply.status) == "LOADED", reply


def test_a_claim_that_is_a_symlink_out_of_the_pvc_root_does_not_load(
    up: Up, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESHSERVE_TOKEN", ADMIN)  # for wait_status's `get`
    code, output = _cli(up, "apply", "-f", "-", stdin=isvc("escape", uri="pvc://escape/m.skops"))
    assert code == 0, output
    status = wait_status(up, "escape", activeModelState="FailedToLoad")
    assert "outside the pvc root" in status_field(status, "lastFailureInfo")["message"]


def test_the_data_dir_and_the_store_are_private(up: Up) -> None:
    modes = {
        path.name: stat.S_IMODE(path.stat().st_mode)
        for path in [up.data_dir, *up.data_dir.glob("store.db*"), up.data_dir / "sealing.key"]
    }
    assert {"store.db", "store.db-wal", "store.db-shm", "sealing.key"} <= set(modes)
    # Root running a runtime as `nobody` lets that user's group traverse
    # (to reach the models pulled for it), nothing more.
    dropping = os.geteuid() == 0
    assert modes.pop(up.data_dir.name) == (0o710 if dropping else 0o700)
    assert set(modes.values()) == {0o600}, modes
