"""Only archives with ONNX float32 requantization records compile that path: ``dtmm_isa.h``
defines ``DTMM_REQUANT_F32_ENABLED`` 1 for them and 0 for TFLite archives (whose kernels then
have no record-kind compare at all); the kernels' own default, outside an archive, is 1."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _isa_header(model, target="dtmm/cortex-m4", isa="dsp"):
    from dtmm_tvm.codegen import build_aot
    from dtmm_tvm.compiler import lower_model
    from dtmm_tvm.frontend.loader import load_model
    from dtmm_tvm.target import resolve_target

    with resolve_target(target):
        mod = lower_model(load_model(model), sparse=False)
    return build_aot(mod, isa=(target, isa)).files["codegen/host/include/dtmm_isa.h"]


def _gemm_qdq(path):
    """Float input -> QuantizeLinear -> DQ -> Gemm (int8 symmetric weights, int32 bias) -> Q -> DQ."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array(v, dtype=d), n) for n, v, d in [
        ("sx", 0.02, np.float32), ("zx", 3, np.int8), ("sw", 0.01, np.float32), ("zw", 0, np.int8),
        ("sb", 0.0002, np.float32), ("zb", 0, np.int32), ("sy", 0.05, np.float32), ("zy", -4, np.int8)]]
    inits += [numpy_helper.from_array(rng.integers(-127, 128, (4, 8)).astype(np.int8), "w"),
              numpy_helper.from_array(rng.integers(-500, 500, 4).astype(np.int32), "b")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xf"]),
             helper.make_node("DequantizeLinear", ["w", "sw", "zw"], ["wf"]),
             helper.make_node("DequantizeLinear", ["b", "sb", "zb"], ["bf"]),
             helper.make_node("Gemm", ["xf", "wf", "bf"], ["yf"], transB=1),
             helper.make_node("QuantizeLinear", ["yf", "sy", "zy"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "sy", "zy"], ["y"])]
    graph = helper.make_graph(nodes, "gemm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


def test_tflite_archive_compiles_no_float_requantization():
    header = _isa_header(ROOT / "tests/fixtures/models/fully_connected.tflite")
    assert "#define DTMM_REQUANT_F32_ENABLED 0" in header


def test_onnx_qdq_archive_compiles_float_requantization(tmp_path):
    _gemm_qdq(tmp_path / "gemm.onnx")
    assert "#define DTMM_REQUANT_F32_ENABLED 1" in _isa_header(tmp_path / "gemm.onnx")


def test_kernels_default_keeps_both_record_kinds():
    text = (ROOT / "dtmm_tvm/kernels/dtmm_requant_f32.h").read_text()
    assert "#ifndef DTMM_REQUANT_F32_ENABLED\n#define DTMM_REQUANT_F32_ENABLED 1" in text
