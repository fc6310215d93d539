"""Fixtures shared by the integration tests: clients of the module-scoped
``up`` fixture each `meshserve up` test module defines, and a real etcd and
a work directory for the modules that run a mesh of instances (a module may
define its own instead)."""

from __future__ import annotations

import pathlib
import shutil
import tempfile
from collections.abc import Iterator

import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

from tests.integration._credentials import leaked_credentials
from tests.integration._etcd import EtcdServer, run_etcd
from tests.integration._up import Up


@pytest.fixture(scope="session", autouse=True)
def no_credential_in_any_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After every test has run: no server log of the whole run holds a
    credential a test gave it (storage keys, bearer tokens)."""
    yield
    leaks = leaked_credentials(tmp_path_factory.getbasetemp())
    assert leaks == [], f"credentials written to logs: {leaks}"


@pytest.fixture(scope="module")
def grpc_client(up: Up) -> Iterator[triton_grpc.InferenceServerClient]:
    client = up.grpc_client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def http_client(up: Up) -> Iterator[triton_http.InferenceServerClient]:
    client = up.http_client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    """A real etcd for the module's tests."""
    with run_etcd() as server:
        yield server


@pytest.fixture(scope="module")
def work(request: pytest.FixtureRequest) -> Iterator[pathlib.Path]:
    """A directory for the module's tests, removed after them."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    path = pathlib.Path(tempfile.mkdtemp(prefix=f"meshserve-{name}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
