"""The unstructured-pruning baseline end to end: an int8 TFLite model whose conv weights are
element-sparse (tests/fixtures/models/unstructured_sparse.tflite, Cin 3, 16 and 32, a 1x1 conv,
70-95% zeros, low filterlet sparsity except at Cin 3) compiles with the per-weight CSR format
chosen automatically, and its outputs are bit-exact with TFLM on the host (portable kernel
path, bytes decide there) and on QEMU Cortex-M4 (DSP build) and Cortex-M55 (MVE gathers), where
the cost model decides by predicted instructions."""

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from dtmm_tvm.compiler import compile_model
from dtmm_tvm.reference import run_tflm

from test_portable_archives import _extract, _run_on_host

MODEL = Path(__file__).parent / "fixtures" / "models" / "unstructured_sparse.tflite"


def _inputs(meta, count=3, seed=11):
    x = np.random.default_rng(seed).integers(-128, 128, size=(count, *meta["inputs"][0]["shape"])).astype(np.int8)
    x[0] = -128
    return x


def _formats(meta):
    return [layer.get("format", "dense") for layer in meta["layers"] if layer.get("op") == "conv2d"]


def test_portable_build_picks_csr_and_matches_tflm_on_the_host(tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("host gcc not installed")
    archive = tmp_path / "portable.tar"
    meta = compile_model(MODEL, archive, target="dtmm/portable", mode="dtmm")
    formats = _formats(meta)
    assert formats.count("unstructured_csr") >= 3, formats  # no cost model: fewest bytes
    for layer in meta["layers"]:
        if layer.get("format") == "unstructured_csr":
            nnz = layer["nonzero_weights"]
            assert layer["stored_weight_bytes"] == 3 * nnz + 4 * (layer["output_shape"][3] + 1)
            assert layer["element_sparsity"] >= 0.85
    stored = json.loads(tarfile.open(archive).extractfile("metadata.json").read())
    x = _inputs(stored)
    np.testing.assert_array_equal(_run_on_host(_extract(archive, tmp_path), stored, x),
                                  run_tflm(MODEL.read_bytes(), x))


@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                    reason="arm-none-eabi-gcc / qemu-system-arm not installed")
# M4: chosen for speed (its dense kernel is far slower on these layers); M55: its dense MVE kernel
# is predicted within 25% of the per-weight one here, so the kernel is exercised by --optimize size
@pytest.mark.parametrize("target, board, optimize, at_least", [("dtmm/cortex-m4", "mps2-an386", "speed", 2),
                                                               ("dtmm/cortex-m55", "mps3-an547", "size", 1)])
def test_csr_build_is_bit_exact_on_qemu(tmp_path, target, board, optimize, at_least):
    from dtmm_tvm.micro import run_artifact

    archive = tmp_path / "model.tar"
    meta = compile_model(MODEL, archive, target=target, mode="dtmm", optimize=optimize)
    formats = _formats(meta)
    assert formats.count("unstructured_csr") >= at_least, formats
    for layer in meta["layers"]:
        if layer.get("format") == "unstructured_csr":
            choice = layer["format_choice"]
            if optimize == "speed":
                pred = choice["predicted_instructions"]
                assert pred["unstructured_csr"] < min(v for f, v in pred.items() if f != "unstructured_csr")
            else:
                assert choice["bytes"]["unstructured_csr"] == min(choice["bytes"].values())
    x = _inputs(meta)
    expected = run_tflm(MODEL.read_bytes(), x)
    got = run_artifact(archive, board, x)
    np.testing.assert_array_equal(got.outputs.reshape(expected.shape), expected)
