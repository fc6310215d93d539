"""Adaptive batching through a real `meshserve up`: concurrent tritonclient
requests for one model share runtime calls, and each still gets its own
answer (its rows, its id), with the runtime in process and out of it."""

from __future__ import annotations

import json
import pathlib
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from tests._examples import library_predictions, make_models_module
from tests.integration._up import (
    Registration,
    Up,
    grpc_outputs,
    iris_grpc_input,
    make_forest,
    metric_total,
    run_up,
)

pytestmark = pytest.mark.integration

FOREST = "forest"
"""A forest slow enough to predict (a few ms) that concurrent requests queue
behind each other's calls."""
THREADS = 8
REQUESTS_PER_THREAD = 12
TOTAL = THREADS * REQUESTS_PER_THREAD


def _up(root: pathlib.Path, host: str) -> Iterator[Up]:
    forest = make_forest(root / "forest.skops", trees=60)
    register = [Registration(name=FOREST, type="sklearn", path=forest)]
    # The child keeps our user (the interpreter may be unreadable to
    # `nobody`); tests/integration/test_privileges.py covers the drop.
    env = {"MESHSERVE_RUNTIME__RUN_AS_USER": ""}
    with run_up(root / "data", register=register, args=["--runtime-host", host], env=env) as up:
        yield up


@pytest.fixture(scope="module")
def up_inprocess(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    yield from _up(tmp_path_factory.mktemp("batching-inprocess"), "inprocess")


@pytest.fixture(scope="module")
def up_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    yield from _up(tmp_path_factory.mktemp("batching-process"), "process")


def _rows() -> np.ndarray:
    iris: np.ndarray = make_models_module().iris()[0]
    return iris[np.arange(TOTAL) % len(iris)]


def _metrics_url(up: Up) -> str:
    endpoints = json.loads((up.data_dir / "endpoints.json").read_text())
    url: str = endpoints["instances"][0]["metrics"]
    return url if url.startswith("http") else f"http://{url}/metrics"


def _hammer(up: Up, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Send each row as a request of its own from THREADS clients at once,
    checking each answer carries its request's id; the probabilities per
    request id."""
    answers: dict[str, np.ndarray] = {}
    failures: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def client_thread(index: int) -> None:
        client = up.grpc_client()
        try:
            start.wait(timeout=30)
            for n in range(REQUESTS_PER_THREAD):
                row = index * REQUESTS_PER_THREAD + n
                request_id = f"req-{row}"
                result = client.infer(
                    FOREST,
                    [iris_grpc_input(FOREST, rows[row : row + 1])],
                    request_id=request_id,
                    client_timeout=60,
                )
                assert result.get_response().id == request_id
                with lock:
                    answers[request_id] = grpc_outputs(result)["predict_proba"]
        except BaseException as exc:
            with lock:
                failures.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    return answers


@pytest.mark.parametrize("host", ["up_inprocess", "up_process"])
def test_concurrent_requests_each_get_their_own_answer(
    host: str, request: pytest.FixtureRequest
) -> None:
    up: Up = request.getfixturevalue(host)
    rows = _rows()
    answers = _hammer(up, rows)

    forest = pathlib.Path(up.management.models()[FOREST].path)
    expected = library_predictions("sklearn-skops", forest, rows)["predict_proba"]
    assert len(answers) == TOTAL
    for row in range(TOTAL):
        np.testing.assert_allclose(answers[f"req-{row}"], expected[row : row + 1], rtol=1e-6)


def test_requests_that_queued_share_a_runtime_call(up_inprocess: Up) -> None:
    url = _metrics_url(up_inprocess)
    calls_before = metric_total(url, "meshserve_batch_size_count")
    served_before = metric_total(url, "meshserve_batch_size_sum")
    _hammer(up_inprocess, _rows())
    calls = metric_total(url, "meshserve_batch_size_count") - calls_before
    served = metric_total(url, "meshserve_batch_size_sum") - served_before
    assert served == TOTAL
    # Requests that queued behind a running call went in the next one together.
    assert calls < served
