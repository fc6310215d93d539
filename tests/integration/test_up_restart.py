"""`meshserve up` stopped and started again on the same data dir: what was
registered is still there, and serves."""

from __future__ import annotations

import pathlib

import pytest

from meshserve.protocol._pb import model_mesh_pb2 as mm
from tests._examples import assert_outputs_match, iris_rows, library_predictions, model_type
from tests.integration._up import Registration, grpc_outputs, iris_grpc_input, run_up

pytestmark = pytest.mark.integration

BY_API = ("xgboost-json", "lightgbm", "onnx")
BY_FILE = ("xgboost-ubj",)
VMODEL = "stable"


def test_registrations_survive_a_restart_and_serve(
    example_models: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    data_dir = tmp_path / "data"
    register = [Registration.example(name, example_models[name]) for name in BY_FILE]
    rows = iris_rows(5)
    with run_up(data_dir, register=register) as first:
        for name in BY_API:
            first.management.register(name, type=model_type(name), path=example_models[name])
        first.management.mesh.setVModel(
            mm.SetVModelRequest(vModelId=VMODEL, targetModelId="lightgbm", owner="ops"),
            timeout=30,
        )
        client = first.grpc_client()
        client.infer("onnx", [iris_grpc_input("onnx", rows)])
        client.close()
        assert first.management.models()["onnx"].status == "LOADED"
    # SIGTERM is a clean stop.
    assert first.proc.returncode == 0, first.log_tail()

    # Same data dir, same register file (registering again is a no-op).
    with run_up(data_dir, register=register) as second:
        models = second.management.models()
        assert sorted(models) == sorted((*BY_API, *BY_FILE))
        for name in models:
            assert models[name].path == str(example_models[name])
            # A new process has loaded nothing yet.
            assert (models[name].status, models[name].loadCount) == ("NOT_LOADED", 0)
        vmodel = second.management.vmodel(VMODEL)
        assert (vmodel.activeModelId, vmodel.owner) == ("lightgbm", "ops")

        client = second.grpc_client()
        try:
            for name in (*BY_API, *BY_FILE):
                result = client.infer(name, [iris_grpc_input(name, rows)])
                expected = library_predictions(name, example_models[name], rows)
                assert_outputs_match(grpc_outputs(result), expected)
            through_vmodel = client.infer(VMODEL, [iris_grpc_input("lightgbm", rows)])
            assert through_vmodel.get_response().model_name == "lightgbm"
        finally:
            client.close()
        assert "ERROR" not in second.log.read_text(), second.log_tail()
