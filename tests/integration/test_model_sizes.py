"""Reported model sizes against the memory a load really takes.

Each model loads in a fresh Python process (after a warm-up model of the
same format, so library start-up is not counted) and its RSS growth is
compared with ``LoadedModel.size_bytes`` and ``estimate_size``. The models
and the measurement are bench/calibrate_sizes.py's, which calibrated the
factors being checked here.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from types import ModuleType

import pytest

pytestmark = pytest.mark.integration

BENCH = pathlib.Path(__file__).parents[2] / "bench" / "calibrate_sizes.py"
MIB = 1024 * 1024

# format -> scale giving 2.5-4.5 MB of RSS growth in a few seconds of training
SCALES = {
    "skops": 3,
    "pickle": 3,
    "xgboost_json": 2,
    "xgboost_ubj": 2,
    "lightgbm": 4,
    "onnx": 2,
}


@pytest.fixture(scope="module")
def calibrate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("meshserve_calibrate_sizes", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("fmt", list(SCALES))
def test_reported_size_is_within_2x_of_rss_growth(
    calibrate: ModuleType, tmp_path: pathlib.Path, fmt: str
) -> None:
    warmup = calibrate.make_sized_model(fmt=fmt, scale=0, out_dir=tmp_path)
    model = calibrate.make_sized_model(fmt=fmt, scale=SCALES[fmt], out_dir=tmp_path)

    measured = calibrate.measure(fmt=fmt, path=model, warmup=warmup, scale=SCALES[fmt])

    summary = (
        f"{fmt}: disk {measured.disk_bytes / MIB:.2f} MiB, RSS growth "
        f"{measured.growth_bytes / MIB:.2f} MiB, reported {measured.reported_bytes / MIB:.2f} "
        f"MiB, estimated {measured.estimate_bytes / MIB:.2f} MiB"
    )
    assert measured.growth_bytes >= 2 * MIB, summary  # big enough to measure
    assert 0.5 <= measured.reported_bytes / measured.growth_bytes <= 2, summary
    assert 0.5 <= measured.estimate_bytes / measured.growth_bytes <= 2, summary
