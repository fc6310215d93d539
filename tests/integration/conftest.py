"""Fixtures shared by the `meshserve up` tests: each module defines a
module-scoped ``up`` fixture; these give clients of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

from tests.integration._credentials import leaked_credentials
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
