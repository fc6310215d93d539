"""`meshserve wait` against a store (``--store``) whose statuses the test
writes with the controller's own serialiser: the condition read, the exit
codes, kubectl's argument forms."""

from __future__ import annotations

import asyncio
import pathlib

import pytest
from click.testing import CliRunner

from meshserve.cli._store_access import store_settings
from meshserve.cli._wait import wait
from meshserve.controller import (
    ModelState,
    PredictorStatus,
    ResourceKey,
    ResourceStore,
    TransitionStatus,
    status_document,
)
from meshserve.store import open_store

ISVC = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {
        "name": "iris",
        "namespace": "team-a",
        "annotations": {"serving.kserve.io/deploymentMode": "ModelMesh"},
    },
    "spec": {
        "predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "pvc://m/x"}}
    },
}


def _status(*, available: bool) -> PredictorStatus:
    return PredictorStatus(
        observed_generation=1,
        active_model_state=ModelState.LOADED if available else ModelState.LOADING,
        target_model_state=None,
        transition_status=TransitionStatus.UP_TO_DATE,
        available=available,
        grpc_endpoint="grpc://127.0.0.1:8033",
    )


@pytest.fixture
def store_args(tmp_path: pathlib.Path) -> list[str]:
    return ["--store", f"sqlite:///{tmp_path / 'store.db'}"]


def _put(tmp_path: pathlib.Path, *, available: bool | None) -> None:
    """Apply the InferenceService with a status (None: without one)."""

    settings = store_settings(None, f"sqlite:///{tmp_path / 'store.db'}", None)

    async def put() -> None:
        async with open_store(settings) as store:
            resources = ResourceStore(store)
            await resources.apply(ISVC)
            if available is not None:
                document = status_document(
                    _status(available=available), kind="InferenceService", now_s=1e9
                )
                await resources.put_status(ResourceKey.of(ISVC), document)

    asyncio.run(put())


def _wait(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(wait, list(args))
    return result.exit_code, result.output


def test_a_ready_resource_is_met_at_once(tmp_path: pathlib.Path, store_args: list[str]) -> None:
    _put(tmp_path, available=True)
    for form in (["isvc/iris"], ["inferenceservice", "iris"]):
        code, output = _wait("--for=condition=Ready", *form, "-n", "team-a", *store_args)
        assert (code, output) == (0, "inferenceservice/iris condition met\n")


def test_a_resource_not_ready_times_out_with_exit_1_and_what_was_seen(
    tmp_path: pathlib.Path, store_args: list[str]
) -> None:
    _put(tmp_path, available=False)
    code, output = _wait(
        "--for=condition=Ready", "isvc/iris", "-n", "team-a", "--timeout", "300ms", *store_args
    )
    assert code == 1
    assert "timed out waiting for condition Ready=True on inferenceservice/iris" in output
    assert "Ready=Unknown, reason: Loading" in output
    code, _ = _wait(
        "--for=condition=Ready=unknown", "isvc/iris", "-n", "team-a", "--timeout", "1", *store_args
    )
    assert code == 0, "VALUE is compared without case, as kubectl does"


def test_no_status_yet_is_waited_for_and_named(
    tmp_path: pathlib.Path, store_args: list[str]
) -> None:
    _put(tmp_path, available=None)
    code, output = _wait(
        "--for=condition=Ready", "isvc/iris", "-n", "team-a", "--timeout", "0.2s", *store_args
    )
    assert code == 1
    assert "no Ready condition yet" in output


def test_a_missing_resource_is_exit_1_and_delete_of_one_is_met(
    tmp_path: pathlib.Path, store_args: list[str]
) -> None:
    _put(tmp_path, available=True)
    code, output = _wait("--for=condition=Ready", "isvc/iris", "--timeout", "60s", *store_args)
    assert code == 1, "it is in team-a, not default"
    assert "NOT_FOUND: inferenceservice/iris not found in namespace 'default'" in output
    code, output = _wait("--for=delete", "isvc/iris", *store_args)
    assert (code, output) == (0, "inferenceservice/iris deleted\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--for=condition=Ready", "predictor/p"], "a Predictor has no status conditions"),
        (["--for=jsonpath={.status}", "isvc/iris"], "expected condition=NAME[=VALUE] or delete"),
        (["--for=condition=", "isvc/iris"], "expected condition=NAME[=VALUE] or delete"),
        (["--for=delete", "isvc/iris", "iris"], "give KIND/NAME or KIND NAME, not both"),
        (["--for=delete", "isvc"], "give KIND/NAME or KIND NAME"),
        (["--for=delete", "pods/x"], "unknown kind 'pods'"),
        (["--for=delete", "isvc/x", "--timeout", "soon"], "'soon' is not a duration"),
        (["--for=delete", "isvc/x", "--timeout", "0s"], "must be more than 0"),
    ],
)
def test_bad_arguments_are_usage_errors(
    args: list[str], message: str, store_args: list[str]
) -> None:
    code, output = _wait(*args, *store_args)
    assert code == 2
    assert message in " ".join(output.split())
