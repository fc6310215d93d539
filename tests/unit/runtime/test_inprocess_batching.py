"""The in-process host batches: concurrent calls share runtime calls and
each gets its own answer; a restarted host serves again."""

from __future__ import annotations

import asyncio
import pathlib

import numpy as np

from meshserve.protocol import codecs
from meshserve.protocol._pb import grpc_predict_v2_pb2 as pb
from meshserve.protocol.datatypes import Datatype
from meshserve.runtime import InProcessRuntime, ModelSpec
from meshserve.settings import RuntimeSettings
from tests._examples import iris_rows
from tests.unit.runtime.test_batch_merge import request
from tests.unit.runtime.test_batch_run import body


async def test_concurrent_calls_share_runtime_calls_and_keep_their_answers(
    example_models: dict[str, pathlib.Path],
) -> None:
    sizes: list[int] = []
    host = InProcessRuntime(
        settings=RuntimeSettings(preload_libraries=False, predict_workers=1),
        observe_batch=lambda model_id, size: sizes.append(size),
    )
    spec = ModelSpec(
        model_id="iris", model_type="sklearn", model_path=str(example_models["sklearn-skops"])
    )
    rows = iris_rows(8).astype(np.float64)
    bodies = [
        body(request(rows[i : i + 1], Datatype.FP64, id=f"r{i}", name="input-0")) for i in range(8)
    ]
    async with host:
        await host.load(spec)
        alone = [await host.infer_grpc("iris", b) for b in bodies]
        assert sizes == [1] * 8
        together = await asyncio.gather(*(host.infer_grpc("iris", b) for b in bodies))
    assert together == alone
    assert [pb.ModelInferResponse.FromString(r).id for r in together] == [f"r{i}" for i in range(8)]
    # The first went alone; the seven that queued behind it shared one call.
    assert sizes[8:] == [1, 7]

    async with host:  # started again after a stop: serves again
        await host.load(spec)
        response = codecs.response_from_proto(
            pb.ModelInferResponse.FromString(await host.infer_grpc("iris", bodies[0]))
        )
    assert response.id == "r0"
