"""`meshserve up` with more models than memory: lazy loads, LRU evictions
(``cache.evictionPolicy: lru``, ModelMesh's order) and proactive loads that
respect recent use; and with the default GDSF policy, a model used often
outlives a burst of one-off models.

Every model here is a copy of the onnx example under its own name, so all
have the same size S, measured by a first `up`; the instance under test gets
``--capacity`` 4 x S, and the 20 copies of the loop total five times that.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc

from tests._examples import assert_outputs_match, iris_rows, library_predictions
from tests.integration._up import Registration, Up, grpc_outputs, iris_grpc_input, run_up

pytestmark = pytest.mark.integration

MODEL = "onnx"
FITS = 4
"""Copies the capacity holds."""
LOOP = [f"copy-{i:02d}" for i in range(5 * FITS)]
"""Twenty models, five times the capacity."""
RECENT = [f"recent-{i}" for i in range(FITS)]
LATE = "late"


@dataclass(frozen=True, slots=True)
class Cache:
    up: Up
    model_bytes: int
    capacity_bytes: int
    path: pathlib.Path


def _measure_model_bytes(path: pathlib.Path, data_dir: pathlib.Path) -> int:
    """sizeBytes the instance accounts for one copy, with room to spare."""
    with run_up(data_dir, register=[Registration(name="probe", type="onnx", path=path)]) as up:
        client = up.grpc_client()
        try:
            client.infer("probe", [iris_grpc_input(MODEL, iris_rows(1))])
        finally:
            client.close()
        size = up.management.models()["probe"].sizeBytes
    assert size > 0
    return int(size)


@pytest.fixture(scope="module")
def cache(
    example_models: dict[str, pathlib.Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cache]:
    root = tmp_path_factory.mktemp("up-cache")
    path = example_models[MODEL]
    model_bytes = _measure_model_bytes(path, root / "measure")
    capacity = FITS * model_bytes
    names = [*LOOP, *RECENT]
    register = [Registration(name=name, type="onnx", path=path) for name in names]
    args = ["--capacity", str(capacity)]
    env = {"MESHSERVE_CACHE__EVICTION_POLICY": "lru"}
    with run_up(root / "data", register=register, args=args, env=env) as up:
        yield Cache(up=up, model_bytes=model_bytes, capacity_bytes=capacity, path=path)


@pytest.fixture(scope="module")
def client(cache: Cache) -> Iterator[triton_grpc.InferenceServerClient]:
    client = cache.up.grpc_client()
    yield client
    client.close()


def _infer_and_check(
    client: triton_grpc.InferenceServerClient, name: str, path: pathlib.Path, rows: np.ndarray
) -> None:
    result = client.infer(name, [iris_grpc_input(MODEL, rows)])
    assert result.get_response().model_name == name
    assert_outputs_match(grpc_outputs(result), library_predictions(MODEL, path, rows))


def _loaded(cache: Cache) -> set[str]:
    return {m for m, s in cache.up.management.models().items() if s.status == "LOADED"}


def test_twenty_models_five_times_the_capacity_all_answer_with_evictions(
    cache: Cache, client: triton_grpc.InferenceServerClient
) -> None:
    assert len(LOOP) * cache.model_bytes == 5 * cache.capacity_bytes
    rows = iris_rows(4)
    for _round in range(2):
        for name in LOOP:
            _infer_and_check(client, name, cache.path, rows)
            loaded = _loaded(cache)
            assert name in loaded
            assert len(loaded) <= FITS, loaded

    models = cache.up.management.models()
    loop = {name: models[name] for name in LOOP}
    # Requests cycle through five times what fits: every model was loaded,
    # evicted and loaded again.
    for name, summary in loop.items():
        assert summary.loadCount >= 2, (name, summary)
    evicted = [name for name, s in loop.items() if s.status != "LOADED"]
    assert all(loop[name].evictionCount >= 1 for name in evicted)
    # Each load either is still resident or was evicted since.
    loads = sum(s.loadCount for s in loop.values())
    evictions = sum(s.evictionCount for s in loop.values())
    resident = [name for name, s in loop.items() if s.status == "LOADED"]
    assert loads - evictions == len(resident)
    # LRU: what stays is what was used last, and it fills the capacity.
    assert resident == LOOP[-FITS:]
    assert sum(loop[name].sizeBytes for name in resident) <= cache.capacity_bytes
    for name in evicted:
        assert loop[name].status == "NOT_LOADED", (name, loop[name])
        assert cache.up.management.status_name(name) == "NOT_LOADED"
    for name in resident:
        assert cache.up.management.status_name(name) == "LOADED"


def test_load_now_registration_never_evicts_models_used_in_the_last_hour(
    cache: Cache, client: triton_grpc.InferenceServerClient
) -> None:
    rows = iris_rows(2)
    for name in RECENT:
        _infer_and_check(client, name, cache.path, rows)
    assert _loaded(cache) == set(RECENT)
    before = cache.up.management.models()

    reply = cache.up.management.register(
        LATE, type="onnx", path=cache.path, load_now=True, sync=True
    )
    # No room without evicting a model used seconds ago: the proactive load
    # gives way. It must not be loaded, and nothing was evicted for it.
    assert reply.status != reply.LOADED, reply
    assert cache.up.management.status_name(LATE) in ("NOT_LOADED", "LOADING_FAILED")
    after = cache.up.management.models()
    assert _loaded(cache) == set(RECENT)
    for name in RECENT:
        assert after[name].evictionCount == before[name].evictionCount, name

    # A request is different: it evicts the least recently used copy.
    _infer_and_check(client, LATE, cache.path, rows)
    models = cache.up.management.models()
    assert models[LATE].status == "LOADED"
    assert models[RECENT[0]].status == "NOT_LOADED"
    assert models[RECENT[0]].evictionCount == before[RECENT[0]].evictionCount + 1
    assert _loaded(cache) == {*RECENT[1:], LATE}


ONE_OFFS = [f"one-off-{i}" for i in range(FITS)]


def test_with_gdsf_a_model_used_often_outlives_one_off_models(
    cache: Cache, tmp_path: pathlib.Path
) -> None:
    # The default policy. LRU would evict "hot" for the last one-off (it is
    # then the least recently used); GDSF evicts a one-off instead.
    names = ["hot", *ONE_OFFS]
    register = [Registration(name=name, type="onnx", path=cache.path) for name in names]
    args = ["--capacity", str(cache.capacity_bytes)]
    with run_up(tmp_path / "data", register=register, args=args) as up:
        client = up.grpc_client()
        try:
            rows = iris_rows(1)
            for _ in range(8):
                _infer_and_check(client, "hot", cache.path, rows)
            for name in ONE_OFFS:
                _infer_and_check(client, name, cache.path, rows)
        finally:
            client.close()
        models = up.management.models()
    assert models["hot"].status == "LOADED"
    assert models["hot"].evictionCount == 0
    assert sum(models[name].evictionCount for name in ONE_OFFS) == 1
