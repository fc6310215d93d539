"""Calibrate the model-size factors of meshserve's built-in formats.

    python bench/calibrate_sizes.py [--quick]

For each format it makes models of growing size and, in a fresh process per
measurement, compares the memory a load really takes (RSS growth) with what
meshserve reports: the estimate made from the file size (``estimate_size``,
the SPI's predictModelSize) and the size measured after loading
(``LoadedModel.size_bytes``). The child process first imports the library
and loads and runs a tiny model of the same format, so library start-up is
not counted; then it collects garbage, reads RSS, loads the model, runs one
prediction and reads RSS again.

The table it prints is the one in docs/model-formats.md; the constants in
``meshserve.runtime._formats._sizing`` come from its ratios.
``tests/integration/test_model_sizes.py`` reuses ``make_sized_model`` and
``measure`` so the test and the calibration measure the same way.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import pathlib
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

FORMATS = ("skops", "pickle", "xgboost_json", "xgboost_ubj", "lightgbm", "onnx", "mlp_skops")
"""Format names this script knows; mlp_skops is an sklearn MLP (array-heavy)."""

MODEL_TYPES = {
    "skops": "sklearn",
    "pickle": "sklearn",
    "mlp_skops": "sklearn",
    "xgboost_json": "xgboost",
    "xgboost_ubj": "xgboost",
    "lightgbm": "lightgbm",
    "onnx": "onnx",
}

SCALES = (1, 4, 16)
"""Size multipliers: scale 1 is a model of about 1-3 MB in memory."""

_SEED = 0
_N_FEATURES = 20


@dataclass(frozen=True, slots=True)
class Measurement:
    fmt: str
    scale: int
    disk_bytes: int
    growth_bytes: int
    """RSS after load and one predict minus RSS before the load."""
    estimate_bytes: int
    """estimate_size(artifact): from the file size only."""
    reported_bytes: int
    """LoadedModel.size_bytes: measured after the load."""


def _data(n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_SEED)
    x = rng.normal(size=(n_rows, _N_FEATURES))
    # Noisy labels make trees grow deep, so their size follows the row count.
    y = (x[:, 0] + x[:, 1] * x[:, 2] + rng.normal(scale=1.5, size=n_rows) > 0).astype(np.int64)
    y += (x[:, 3] > 0.5).astype(np.int64)
    return x, y


def make_sized_model(*, fmt: str, scale: int, out_dir: pathlib.Path) -> pathlib.Path:
    """Train (or build) a model of format ``fmt`` whose size grows with ``scale``.

    ``scale=0`` makes the tiny warm-up model of the format.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{fmt}-{scale}"
    if fmt in ("skops", "pickle"):
        from sklearn.ensemble import RandomForestClassifier

        x, y = _data(4000)
        model = RandomForestClassifier(n_estimators=max(1, 8 * scale), random_state=_SEED)
        model.fit(x, y)
        return _dump_sklearn(model, fmt=fmt, path=out_dir / name)
    if fmt == "mlp_skops":
        from sklearn.neural_network import MLPClassifier

        x, y = _data(200)
        hidden = (max(4, 256 * scale), max(4, 256 * scale)) if scale else (4,)
        model = MLPClassifier(hidden_layer_sizes=hidden, max_iter=1, random_state=_SEED)
        model.fit(x, y)
        return _dump_sklearn(model, fmt="skops", path=out_dir / name)
    if fmt in ("xgboost_json", "xgboost_ubj"):
        import xgboost

        x, y = _data(4000)
        booster = xgboost.XGBClassifier(
            n_estimators=max(1, 40 * scale), max_depth=8, random_state=_SEED, n_jobs=1
        ).fit(x, y)
        path = out_dir / (name + (".json" if fmt == "xgboost_json" else ".ubj"))
        booster.save_model(path)
        return path
    if fmt == "lightgbm":
        import lightgbm

        x, y = _data(4000)
        gbm = lightgbm.LGBMClassifier(
            n_estimators=max(1, 30 * scale),
            num_leaves=127,
            min_child_samples=2,
            random_state=_SEED,
            n_jobs=1,
            verbose=-1,
        ).fit(x, y)
        path = out_dir / f"{name}.txt"
        gbm.booster_.save_model(path)
        return path
    if fmt == "onnx":
        path = out_dir / f"{name}.onnx"
        path.write_bytes(_mlp_onnx(hidden=max(4, 512 * scale)))
        return path
    raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")


def _dump_sklearn(model: object, *, fmt: str, path: pathlib.Path) -> pathlib.Path:
    if fmt == "skops":
        import skops.io

        target = path.with_suffix(".skops")
        skops.io.dump(model, target)
        return target
    import joblib

    target = path.with_suffix(".joblib")
    joblib.dump(model, target)
    return target


def _mlp_onnx(*, hidden: int) -> bytes:
    """A two-layer float MLP, [N, 20] -> [N, hidden] -> [N, hidden] -> [N, 3]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(_SEED)
    widths = [_N_FEATURES, hidden, hidden, 3]
    nodes, inits = [], []
    current = "input"
    for i, (w_in, w_out) in enumerate(itertools.pairwise(widths)):
        weight = rng.normal(size=(w_in, w_out)).astype(np.float32)
        bias = rng.normal(size=(w_out,)).astype(np.float32)
        inits += [numpy_helper.from_array(weight, f"w{i}"), numpy_helper.from_array(bias, f"b{i}")]
        nodes.append(helper.make_node("MatMul", [current, f"w{i}"], [f"m{i}"]))
        last = i == len(widths) - 2
        nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], ["output" if last else f"a{i}"]))
        if not last:
            nodes.append(helper.make_node("Relu", [f"a{i}"], [f"r{i}"]))
            current = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", _N_FEATURES])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def measure(*, fmt: str, path: pathlib.Path, warmup: pathlib.Path, scale: int = 0) -> Measurement:
    """Measure one model in a fresh Python process."""
    completed = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            MODEL_TYPES[fmt],
            str(warmup),
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"measuring {path} failed:\n{completed.stderr}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    return Measurement(fmt=fmt, scale=scale, **result)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _child(model_type: str, warmup: str, target: str) -> None:
    from meshserve.protocol.datatypes import numpy_dtype
    from meshserve.protocol.inference import Tensor
    from meshserve.runtime import _formats

    def load_and_predict(path: str) -> tuple[_formats.Artifact, _formats.LoadedModel]:
        artifact = _formats.find_artifact(model_type=model_type, model_path=pathlib.Path(path))
        model = _formats.load_model(artifact, allow_pickle=True)
        inputs = [
            Tensor(
                meta.name,
                meta.datatype,
                np.zeros([1 if d < 0 else d for d in meta.shape], dtype=numpy_dtype(meta.datatype)),
            )
            for meta in model.metadata_inputs
        ]
        model.predict(inputs)
        return artifact, model

    load_and_predict(warmup)
    gc.collect()
    before = _rss()
    artifact, model = load_and_predict(target)
    gc.collect()
    after = _rss()
    print(
        json.dumps(
            {
                "disk_bytes": artifact.disk_size,
                "growth_bytes": after - before,
                "estimate_bytes": _formats.estimate_size(artifact),
                "reported_bytes": model.size_bytes,
            }
        )
    )


def _table(rows: Sequence[Measurement]) -> str:
    mib = 1024 * 1024
    lines = [
        "| format | scale | disk MiB | RSS growth MiB | growth/disk | estimate MiB "
        "| estimate/growth | reported MiB | reported/growth |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        growth = max(r.growth_bytes, 1)
        lines.append(
            f"| {r.fmt} | {r.scale} | {r.disk_bytes / mib:.2f} | {r.growth_bytes / mib:.2f} "
            f"| {r.growth_bytes / r.disk_bytes:.2f} | {r.estimate_bytes / mib:.2f} "
            f"| {r.estimate_bytes / growth:.2f} | {r.reported_bytes / mib:.2f} "
            f"| {r.reported_bytes / growth:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str]) -> None:
    if argv and argv[0] == "--child":
        _child(*argv[1:4])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="scale 1 only")
    parser.add_argument("--formats", nargs="*", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--json", type=pathlib.Path, help="also write the rows here")
    args = parser.parse_args(argv)
    scales = (1,) if args.quick else SCALES
    rows = []
    with tempfile.TemporaryDirectory(prefix="meshserve-calibrate-") as tmp:
        out = pathlib.Path(tmp)
        for fmt in args.formats:
            warmup = make_sized_model(fmt=fmt, scale=0, out_dir=out)
            for scale in scales:
                path = make_sized_model(fmt=fmt, scale=scale, out_dir=out)
                row = measure(fmt=fmt, path=path, warmup=warmup, scale=scale)
                print(row, file=sys.stderr, flush=True)
                rows.append(row)
    print(_table(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
