"""Every model of the fixture zoo, compiled dense and with DTMM, run on emulated Cortex-M cores,
equals TensorFlow Lite Micro bit for bit (int8) or to float tolerance (float32, ONNX)."""

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from dtmm_tvm.compiler import compile_model
from dtmm_tvm.micro import run_artifact
from dtmm_tvm.reference import run_tflm

FIXTURES = Path(__file__).parent / "fixtures" / "models"
MANIFEST = {m["file"]: m for m in json.loads((FIXTURES / "manifest.json").read_text())["models"]}
INT8_MODELS = sorted(n for n, m in MANIFEST.items()
                     if m["kind"] == "valid" and m["format"] == "tflite" and m["inputs"][0]["dtype"] == "int8")
# The M55 runs a representative subset to keep the suite short; M4 runs every model.
M55_MODELS = ["resnet_ish.tflite", "ds_cnn.tflite", "everything.tflite"]
# The M7 shares the M4's DSP micro-kernels (other flags, other core): a short subset.
M7_MODELS = ["resnet_ish.tflite", "sparsity_ladder.tflite"]


@lru_cache(maxsize=None)
def _artifact(tmp_root: str, model: str, mode: str, target: str) -> str:
    out = Path(tmp_root) / f"{Path(model).stem}-{mode}-{target.replace('/', '_')}.tar"
    compile_model(FIXTURES / model, out, target=target, mode=mode)
    return str(out)


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("e2e"))


def _inputs(spec: dict, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = tuple(spec["shape"])
    if spec["dtype"] == "int8":
        x = rng.integers(-128, 128, size=(count,) + shape).astype(np.int8)
        x[0] = -128  # the extremes exercise padding offsets and saturation
        x[1] = 127
        return x
    return rng.uniform(-1, 1, size=(count,) + shape).astype(np.float32)


@pytest.mark.parametrize("mode", ["dense", "dtmm"])
@pytest.mark.parametrize("model", INT8_MODELS)
def test_int8_bit_exact_on_cortex_m4(artifact_dir, model, mode):
    spec = MANIFEST[model]["inputs"][0]
    x = _inputs(spec, 5, seed=len(model))
    expected = run_tflm((FIXTURES / model).read_bytes(), x)
    result = run_artifact(_artifact(artifact_dir, model, mode, "dtmm/cortex-m4"), "mps2-an386", x)
    np.testing.assert_array_equal(result.outputs.reshape(expected.shape), expected)
    assert result.instructions > 0 and result.flash_bytes > 0 and result.ram_bytes > 0


@pytest.mark.parametrize("model", M55_MODELS)
def test_int8_bit_exact_on_cortex_m55(artifact_dir, model):
    spec = MANIFEST[model]["inputs"][0]
    x = _inputs(spec, 3, seed=5)
    expected = run_tflm((FIXTURES / model).read_bytes(), x)
    result = run_artifact(_artifact(artifact_dir, model, "dtmm", "dtmm/cortex-m55"), "mps3-an547", x)
    np.testing.assert_array_equal(result.outputs.reshape(expected.shape), expected)


@pytest.mark.parametrize("mode", ["dense", "dtmm"])
@pytest.mark.parametrize("model", M7_MODELS)
def test_int8_bit_exact_on_cortex_m7(artifact_dir, model, mode):
    spec = MANIFEST[model]["inputs"][0]
    x = _inputs(spec, 3, seed=7)
    expected = run_tflm((FIXTURES / model).read_bytes(), x)
    result = run_artifact(_artifact(artifact_dir, model, mode, "dtmm/cortex-m7"), "mps2-an500", x)
    np.testing.assert_array_equal(result.outputs.reshape(expected.shape), expected)


def test_dtmm_build_is_smaller_and_reports_sparse_layers(artifact_dir):
    from dtmm_tvm.codegen import read_metadata

    dense = read_metadata(_artifact(artifact_dir, "sparsity_ladder.tflite", "dense", "dtmm/cortex-m4"))
    dtmm = read_metadata(_artifact(artifact_dir, "sparsity_ladder.tflite", "dtmm", "dtmm/cortex-m4"))
    assert dtmm["constants_bytes"] < dense["constants_bytes"]
    formats = {l["name"]: l["format"] for l in dtmm["layers"] if l["op"] == "conv2d"}
    sparsities = sorted(l.get("filterlet_sparsity", 0.0) for l in dtmm["layers"] if l["op"] == "conv2d")
    # The 0% layer stays dense; the 50/75/90% layers use a filterlet format, chosen by predicted
    # instructions (--optimize speed), never one predicted slower than dense.
    sparse_formats = [f for f in formats.values() if f.startswith("filterlet_")]
    assert "dense" in formats.values() and len(sparse_formats) >= 3
    for layer in dtmm["layers"]:
        choice = layer.get("format_choice")
        if layer.get("format", "dense") != "dense":
            assert choice["chosen"] == layer["format"] and choice["optimize"] == "speed"
            pred = choice["predicted_instructions"]
            assert pred[layer["format"]] < pred["dense"]
            assert layer["stored_weight_bytes"] == choice["bytes"][layer["format"]]
    assert sparsities[-1] > 0.8  # DropZeroFilters may remove whole zero filters first


def test_float32_model_runs_close_to_tflm(artifact_dir):
    model = "everything_float32.tflite"
    x = _inputs(MANIFEST[model]["inputs"][0], 3, seed=3)
    expected = run_tflm((FIXTURES / model).read_bytes(), x)
    result = run_artifact(_artifact(artifact_dir, model, "dtmm", "dtmm/cortex-m4"), "mps2-an386", x)
    np.testing.assert_allclose(result.outputs.reshape(expected.shape), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model", ["onnx_conv_float.onnx", "onnx_conv_qdq.onnx"])
def test_onnx_models_run_close_to_onnxruntime(artifact_dir, model):
    import onnxruntime

    spec = MANIFEST[model]["inputs"][0]
    x = _inputs(spec, 3, seed=4)
    session = onnxruntime.InferenceSession(str(FIXTURES / model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    expected = np.stack([session.run(None, {name: sample})[0] for sample in x])
    result = run_artifact(_artifact(artifact_dir, model, "dtmm", "dtmm/cortex-m4"), "mps2-an386", x)
    # QDQ models may differ by one quantization step where ONNX Runtime and TVM round differently.
    atol = 1e-5 if "float" in model else 0.02
    np.testing.assert_allclose(result.outputs.reshape(expected.shape), expected, rtol=1e-4, atol=atol)
