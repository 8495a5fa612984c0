"""The model zoo (tests/fixtures/zoo, made by make_zoo.py): the structures of the public TinyML
reference models, as Keras and the TFLite converter export them (batch -1 left as written).

* every int8 model, dense and DTMM, on Cortex-M4 (mps2-an386) and Cortex-M55 (mps3-an547), is
  bit-exact with TFLM;
* every float32 model (DTMM build, Cortex-M4) matches TFLM within float tolerance;
* ``--verify`` (the host build of the generated C against TFLM) passes on every int8 model.

The archives are compiled in a pool of worker processes (one per core, at most two) as soon as
the session starts, in test order, so that compiling overlaps the emulator runs; each archive
runs once on its board with all its inputs. ``DTMM_ZOO_RESULTS=FILE`` writes every run's figures
(instructions, flash, RAM) to FILE as JSON (the table in the notes is made from it).
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from dtmm_tvm.compiler import compile_model
from dtmm_tvm.micro import run_artifact
from dtmm_tvm.reference import run_tflm

ZOO = Path(__file__).parent / "fixtures" / "zoo"
MANIFEST = json.loads((ZOO / "manifest.json").read_text())["models"]
INT8 = [m["name"] for m in MANIFEST if m["mode"] == "int8"]
FLOAT32 = [m["name"] for m in MANIFEST if m["mode"] == "float32"]
BOARDS = {"dtmm/cortex-m4": "mps2-an386", "dtmm/cortex-m55": "mps3-an547"}
INPUTS_PER_RUN = 3

# A model that cannot compile yet, with the operator it waits for (strict: it must fail).
WAITING: dict = {}


def _entry(name: str, mode: str) -> dict:
    return next(m for m in MANIFEST if m["name"] == name and m["mode"] == mode)


def _case(name: str, *rest):
    marks = [pytest.mark.xfail(strict=True, reason=WAITING[name])] if name in WAITING else []
    return pytest.param(name, *rest, marks=marks, id="-".join([name, *(r.split("/")[-1] for r in rest)]))


INT8_CASES = [_case(n, t, mode) for n in INT8 for t in BOARDS for mode in ("dense", "dtmm")]
FLOAT_CASES = [_case(n) for n in FLOAT32]


@pytest.fixture(scope="session")
def zoo_builds(request, tmp_path_factory):
    """Future per (file, target, mode) of the zoo tests selected in this session."""
    directory = tmp_path_factory.mktemp("zoo")
    jobs = []
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "zoo_int8" in params:
            jobs.append((f"{params['zoo_int8']}_int8.tflite", params["target"], params["mode"]))
        elif "zoo_float" in params:
            jobs.append((f"{params['zoo_float']}_float32.tflite", "dtmm/cortex-m4", "dtmm"))
    workers = max(1, min(2, os.cpu_count() or 1))
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    futures = {}
    for job in dict.fromkeys(jobs):
        file, target, mode = job
        out = directory / f"{Path(file).stem}-{mode}-{target.split('/')[-1]}.tar"
        futures[job] = (pool.submit(compile_model, str(ZOO / file), str(out), target=target, mode=mode), out)
    yield futures
    pool.shutdown(wait=False, cancel_futures=True)


@pytest.fixture(scope="session")
def zoo_results():
    results = []
    yield results
    path = os.environ.get("DTMM_ZOO_RESULTS")
    if path:
        Path(path).write_text(json.dumps(results, indent=1) + "\n")


def _artifact(zoo_builds, file: str, target: str, mode: str) -> Path:
    future, out = zoo_builds[(file, target, mode)]
    future.result()  # re-raises the compile error in this test
    return out


def _inputs(entry: dict, count: int, seed: int) -> np.ndarray:
    spec = entry["inputs"][0]
    shape = (count,) + tuple(spec["shape"])
    rng = np.random.default_rng(seed)
    if spec["dtype"] == "int8":
        x = rng.integers(-128, 128, size=shape).astype(np.int8)
        x[0] = -128  # the extremes exercise padding offsets and saturation
        x[1] = 127
        return x
    low, high = entry["input_range"]
    return rng.uniform(low, high, size=shape).astype(np.float32)


def test_zoo_models_are_as_the_converter_wrote_them():
    """Batch -1 in every shape signature, int8 I/O for the int8 files, pruned KxK convs."""
    assert sorted(INT8) == sorted(FLOAT32) and len(INT8) == 10
    for entry in MANIFEST:
        for tensor in entry["inputs"] + entry["outputs"]:
            assert tensor["shape_signature"][0] == -1 and tensor["shape"][0] == 1
            assert tensor["dtype"] == ("int8" if entry["mode"] == "int8" else "float32")
        sparse = [c for c in entry["conv_layers"] if c["kernel"] != [1, 1]]
        # 50/75/90% of the filterlets (rounded per filter by the lowest-L2 choice).
        assert all(0.5 <= c["filterlet_sparsity"] <= 0.91 for c in sparse), entry["file"]
        assert (ZOO / entry["file"]).stat().st_size == entry["bytes"]
    ops = {op for e in MANIFEST for op in e["op_list"]}
    assert {"CONCATENATION", "RESIZE_NEAREST_NEIGHBOR", "LOGISTIC", "DEPTHWISE_CONV_2D", "ADD",
            "EXPAND_DIMS", "SHAPE", "STRIDED_SLICE", "PACK"} <= ops  # the last three: Keras 3's Flatten


@pytest.mark.parametrize("zoo_int8, target, mode", INT8_CASES)
def test_zoo_int8_bit_exact_with_tflm(zoo_builds, zoo_results, zoo_int8, target, mode):
    entry = _entry(zoo_int8, "int8")
    artifact = _artifact(zoo_builds, entry["file"], target, mode)
    x = _inputs(entry, INPUTS_PER_RUN, seed=len(zoo_int8))
    expected = run_tflm((ZOO / entry["file"]).read_bytes(), x)
    result = run_artifact(artifact, BOARDS[target], x)
    np.testing.assert_array_equal(result.outputs.reshape(expected.shape), expected)
    if mode == "dtmm" and any(c["kernel"] != [1, 1] for c in entry["conv_layers"]):
        # Every pruned KxK conv (50-90%, stems 90%) went through the format decision: the cost
        # model's predicted instructions for this target chose its format (dense where no filterlet
        # format is predicted faster: never slower than dense), and the archive uses that format.
        from dtmm_tvm.codegen import read_metadata

        convs = [l for l in read_metadata(artifact)["layers"] if l.get("op") == "conv2d" and "format_choice" in l]
        assert convs, entry["file"]
        for layer in convs:
            choice = layer["format_choice"]
            assert choice["chosen"] == layer.get("format", "dense"), layer
            assert choice["cost_model"] == target and set(choice["predicted_instructions"]) >= {"dense"}, choice
    record = result.to_dict()
    zoo_results.append({"model": zoo_int8, "target": target, "mode": mode, "bit_exact": True,
                        **{k: record[k] for k in ("board", "instructions", "flash_bytes", "ram_bytes", "flash", "ram")}})


@pytest.mark.parametrize("zoo_float", FLOAT_CASES)
def test_zoo_float32_close_to_tflm(zoo_builds, zoo_results, zoo_float):
    entry = _entry(zoo_float, "float32")
    artifact = _artifact(zoo_builds, entry["file"], "dtmm/cortex-m4", "dtmm")
    x = _inputs(entry, INPUTS_PER_RUN, seed=len(zoo_float))
    expected = run_tflm((ZOO / entry["file"]).read_bytes(), x)
    result = run_artifact(artifact, "mps2-an386", x)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(result.outputs.reshape(expected.shape), expected, rtol=1e-4, atol=1e-5 * scale)
    record = result.to_dict()
    zoo_results.append({"model": zoo_float, "target": "dtmm/cortex-m4", "mode": "float32-dtmm",
                        **{k: record[k] for k in ("board", "instructions", "flash_bytes", "ram_bytes")}})


@pytest.mark.parametrize("zoo_verify", [_case(n) for n in INT8])
def test_zoo_verify_passes(zoo_verify, tmp_path):
    from dtmm_tvm.verify import verify_model

    report = verify_model(ZOO / f"{zoo_verify}_int8.tflite", mode="dtmm", count=4, workdir=tmp_path)
    assert report.ok and report.reference == "TFLM" and report.inputs == 4
    assert all(o["exact"] and o["values"] > 0 for o in report.outputs)
