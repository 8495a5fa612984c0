"""ONNX QDQ int8 models compiled by dtmm are bit-exact with onnxruntime's CPU provider (default
graph optimizations): the generated C built for the host, and on an emulated Cortex-M4.

The float requantization helper of the C kernels is checked against the numpy semantics on edge
cases (ties to even, saturation), and a synthetic QDQ model exercises the layouts a shape cannot
tell apart: a square Gemm, a 1x1 conv with Cin == Cout, a depthwise conv."""

import ctypes
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FMNIST = ROOT / "models" / "fashion_mnist"
FILTERLET = ROOT / "tests" / "fixtures" / "fashion_filterlet"  # every conv 60-85% filterlet-sparse
sys.path.insert(0, str(ROOT / "tests" / "codegen"))

ort = pytest.importorskip("onnxruntime")


def _images(count: int, start: int = 0) -> np.ndarray:
    """Fashion-MNIST test images as the ONNX model takes them: (count, 1, 1, 28, 28) in [0, 1]."""
    x = np.load(FMNIST / "test_subset.npz")["x_uint8"][start:start + count].astype(np.float32) / 255.0
    return x.transpose(0, 3, 1, 2)[:, None].copy()


def _onnxruntime(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.stack([session.run(None, {name: xi})[0] for xi in x])


def _host_run(path: Path, mode: str, x: np.ndarray, tmp: Path) -> np.ndarray:
    from codegen_helpers import compile_host_library, run_library

    from dtmm_tvm.codegen import build_aot
    from dtmm_tvm.compiler import lower_model
    from dtmm_tvm.frontend.loader import load_model
    from dtmm_tvm.target import resolve_target

    with resolve_target("dtmm/cortex-m4"):
        mod = lower_model(load_model(path), sparse=(mode == "dtmm"))
    aot = build_aot(mod)
    lib = compile_host_library(aot, tmp)
    return np.stack([run_library(lib, aot, [xi])[0] for xi in x])


# The per-channel model in DTMM mode runs on the Cortex-M4 below; the host takes the other pair.
@pytest.mark.parametrize("model,mode", [("fashion_cnn_filterlet_qdq_per_tensor.onnx", "dense")])
def test_host_c_bit_exact_with_onnxruntime(tmp_path, model, mode):
    x = _images(60)
    expected = _onnxruntime(FILTERLET / model, x)
    got = _host_run(FILTERLET / model, mode, x, tmp_path)
    np.testing.assert_array_equal(got.reshape(expected.shape), expected)


def test_cortex_m4_bit_exact_with_onnxruntime_and_filterlet_kernels(tmp_path):
    from dtmm_tvm.compiler import compile_model
    from dtmm_tvm.micro import run_artifact

    model = FILTERLET / "fashion_cnn_filterlet_qdq_per_channel.onnx"
    metadata = compile_model(model, tmp_path / "m.tar", target="dtmm/cortex-m4", mode="dtmm")
    convs = [layer for layer in metadata["layers"] if layer["op"] == "conv2d"]
    assert len(convs) == 4
    assert all(layer["format"].startswith("filterlet") for layer in convs[1:])  # conv1: small-Cin rule
    assert all(layer["requantization"] == "onnx" for layer in convs)
    assert [layer["model_layer"] for layer in convs] == ["conv1", "conv2", "conv3", "conv4"]  # ONNX node names
    x = _images(4, start=100)
    expected = _onnxruntime(model, x)
    result = run_artifact(tmp_path / "m.tar", "mps2-an386", x)
    np.testing.assert_array_equal(result.outputs.reshape(expected.shape), expected)


# --------------------------------------------------------------------------------------------
# The float32 requantization of the C kernels (dtmm_requant_f32.h) against the numpy semantics
# --------------------------------------------------------------------------------------------

_HARNESS = r"""
#include <stdint.h>
#include "dtmm_kernels.h"
void requant(const int32_t *acc, const float *scale, int32_t n, int32_t zp, int8_t *out) {
  int32_t bits;
  __builtin_memcpy(&bits, scale, 4);
  for (int32_t i = 0; i < n; ++i) {
    int32_t v = dtmm_requantize(acc[i], bits, DTMM_REQUANT_F32) + zp;
    out[i] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
  }
}
"""


def test_c_float_requantization_matches_numpy(tmp_path):
    from dtmm_tvm.quant.onnx import requantize_f32

    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("host gcc not installed")
    (tmp_path / "h.c").write_text(_HARNESS)
    kernels = ROOT / "dtmm_tvm" / "kernels"
    subprocess.run([gcc, "-O2", "-shared", "-fPIC", "-I", str(kernels), str(tmp_path / "h.c"), "-o",
                    str(tmp_path / "h.so")], check=True)
    lib = ctypes.CDLL(str(tmp_path / "h.so"))
    lib.requant.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p]
    lib.requant.restype = None
    rng = np.random.default_rng(7)
    scale = np.float32(0.5)  # exact halves: ties must go to even (2.5 -> 2, 3.5 -> 4, -2.5 -> -2)
    cases = [(np.array([5, 7, -5, -7, 1, -1, 3, 0], np.int32), scale, 0),
             (rng.integers(-2**31, 2**31 - 1, 4000, dtype=np.int64).astype(np.int32), np.float32(3.1e-4), -7),
             (rng.integers(-40000, 40000, 4000).astype(np.int32), np.float32(0.00731), 12)]
    for acc, s, zp in cases:
        out = np.zeros(acc.size, np.int8)
        scale_arr = np.array([s], np.float32)
        lib.requant(acc.ctypes.data, scale_arr.ctypes.data, acc.size, zp, out.ctypes.data)
        np.testing.assert_array_equal(out, requantize_f32(acc, s, zp))
    np.testing.assert_array_equal(requantize_f32(cases[0][0], scale, 0), [2, 4, -2, -4, 0, 0, 2, 0])


# --------------------------------------------------------------------------------------------
# Layouts a shape cannot tell apart
# --------------------------------------------------------------------------------------------


def _square_model(path: Path, activation_type: str = "QInt8") -> None:
    """QDQ per-channel: 1x1 conv 8->8 (Cin == Cout), depthwise 3x3, GAP, Gemm 8x8 (square), built
    with onnx.helper and quantized with quantize_static (7-bit weights: ORT exact on any host)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(3)
    tensors = {"w1": rng.normal(0, 0.5, (8, 8, 1, 1)), "b1": rng.normal(0, 0.1, 8),
               "wd": rng.normal(0, 0.5, (8, 1, 3, 3)), "bd": rng.normal(0, 0.1, 8),
               "wf": rng.normal(0, 0.5, (8, 8)), "bf": rng.normal(0, 0.1, 8)}
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in tensors.items()]
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], kernel_shape=[1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "wd", "bd"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8),
             helper.make_node("GlobalAveragePool", ["c2"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["output"], transB=1)]
    graph = helper.make_graph(nodes, "square", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8, 6, 6])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    float_path = path.with_suffix(".float.onnx")
    onnx.save(model, float_path)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": rng.uniform(-1, 1, (1, 8, 6, 6)).astype(np.float32)} for _ in range(8)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(float_path), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    reduce_range=True, activation_type=getattr(QuantType, activation_type),
                    weight_type=QuantType.QInt8)


# QUInt8 is quantize_static's default activation type: it runs as int8 with zero point - 128.
@pytest.mark.parametrize("activation_type", ["QInt8", "QUInt8"])
def test_square_weights_and_depthwise_bit_exact(tmp_path, activation_type):
    path = tmp_path / "square.onnx"
    _square_model(path, activation_type)
    x = np.random.default_rng(5).uniform(-1, 1, (12, 1, 8, 6, 6)).astype(np.float32)
    expected = _onnxruntime(path, x)
    got = _host_run(path, "dense", x, tmp_path)
    np.testing.assert_array_equal(got.reshape(expected.shape), expected)
    # A transposed square Gemm or 1x1 conv would compute something else entirely.
    assert np.abs(expected).max() > 0


def test_inspect_reports_qdq_sparsity_like_the_tflite_model():
    from dtmm_tvm.cli.inspect import conv_weights
    from dtmm_tvm.sparsity import analyze_filterlets

    onnx_layers = conv_weights(str(FILTERLET / "fashion_cnn_filterlet_qdq_per_channel.onnx"))
    tflite_layers = conv_weights(str(FILTERLET / "fashion_cnn_filterlet_int8.tflite"))
    assert list(onnx_layers) == ["conv1", "conv2", "conv3", "conv4"]
    for onnx_w, tflite_w in zip(onnx_layers.values(), tflite_layers.values()):
        assert onnx_w.shape == tflite_w.shape  # OHWI both
        np.testing.assert_array_equal(~onnx_w.any(axis=3), ~tflite_w.any(axis=3))  # the same filterlets
        assert analyze_filterlets(onnx_w).filterlet_sparsity > 0.5


def test_tir_kernels_with_onnx_records_match_the_reference():
    """The plain TIR kernels (non-C targets) requantize ONNX records like the numpy reference."""
    import tvm

    from dtmm_tvm.ops.conv2d import conv2d_int8
    from dtmm_tvm.ops.fully_connected import fully_connected_int8
    from dtmm_tvm.quant.conv import Conv2DParams, FullyConnectedParams, conv2d, fully_connected
    from dtmm_tvm.quant.onnx import output_scales, requant_records

    rng = np.random.default_rng(11)
    build = lambda f: tvm.compile(tvm.IRModule({"main": f}), target="llvm")["main"]  # noqa: E731
    conv = Conv2DParams((1, 5, 5, 6), (6, 3, 3, 6), padding=(1, 1, 1, 1), input_zero_point=-3,
                        output_zero_point=5, requantization="onnx")
    fc = FullyConnectedParams((2, 6), (6, 6), input_zero_point=4, output_zero_point=-9, requantization="onnx")
    for params, builder, reference, w_shape in [(conv, conv2d_int8, conv2d, conv.weight_shape),
                                                (fc, fully_connected_int8, fully_connected, fc.weight_shape)]:
        x = rng.integers(-128, 128, params.input_shape, dtype=np.int8)
        w = rng.integers(-127, 128, w_shape, dtype=np.int8)
        bias = rng.integers(-2000, 2000, w_shape[0]).astype(np.int32)
        mult, shift = requant_records(output_scales(0.02, rng.uniform(0.001, 0.01, w_shape[0]), 0.05))
        out = np.zeros(params.output_shape, np.int8)
        args = [tvm.runtime.tensor(a) for a in (x, w, bias, mult, shift, out)]
        build(builder(params))(*args)
        expected = reference(x, w, bias, mult, shift, params)
        np.testing.assert_array_equal(args[-1].numpy(), expected)
        assert len(np.unique(expected)) > 5
