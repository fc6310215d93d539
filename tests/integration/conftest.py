"""Fixtures shared by the `meshserve up` tests: each module defines a
module-scoped ``up`` fixture; these give clients of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

from tests.integration._up import Up


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
