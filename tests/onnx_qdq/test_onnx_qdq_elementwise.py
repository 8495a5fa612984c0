"""ONNX QDQ Add, Mul, AveragePool and standalone Relu/Clip: the numpy semantics of
:mod:`dtmm_tvm.quant.onnx` against onnxruntime on every uint8 input pair, and the compiled model
(``tests/fixtures/onnx_qdq/elementwise_qdq.onnx``, made by ``make_onnx_qdq.py`` with
``quantize_static``) bit-exact with onnxruntime on emulated Cortex-M4 and M55, and a conv-free
Add -> Mul -> AveragePool chain through ``--verify`` on the host (portable C)."""

from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "onnx_qdq" / "elementwise_qdq.onnx"


def _qdq_binary(op: str, sa, za, sb, zb, sc, zc, n: int, dtype=np.uint8):
    """An ORT session of ``Q(op(DQ(a), DQ(b)))`` on ``dtype`` inputs (ORT fuses it to QLinear<op>)."""
    import onnx
    from onnx import helper, numpy_helper

    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inits = [numpy_helper.from_array(np.array(v, np.float32 if k[0] == "s" else dtype), k)
             for k, v in dict(sa=sa, za=za, sb=sb, zb=zb, sc=sc, zc=zc).items()]
    nodes = [helper.make_node("DequantizeLinear", ["a", "sa", "za"], ["af"]),
             helper.make_node("DequantizeLinear", ["b", "sb", "zb"], ["bf"]),
             helper.make_node(op, ["af", "bf"], ["cf"]),
             helper.make_node("QuantizeLinear", ["cf", "sc", "zc"], ["c"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(x, elem, [1, n]) for x in "ab"],
                              [helper.make_tensor_value_info("c", elem, [1, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_qlinear_add_and_mul_semantics_match_onnxruntime_on_every_input_pair(dtype):
    from dtmm_tvm.quant.onnx import qlinear_add, qlinear_add_params, qlinear_mul, qlinear_mul_scale

    info = np.iinfo(dtype)
    values = np.arange(info.min, info.max + 1)
    a = np.repeat(values, values.size)[None].astype(dtype)
    b = np.tile(values, values.size)[None].astype(dtype)
    rng = np.random.default_rng(11)
    # Case 0: the ties that tell "zero point added before rounding" (QLinearMul) apart.
    cases = [(0.02, 0.013, 0.031, 128, 120, 101)] + [
        tuple(float(np.float32(10 ** rng.uniform(-3, -0.5))) for _ in range(3)) + tuple(
            int(rng.integers(info.min, info.max + 1)) for _ in range(3)) for _ in range(5)]
    for sa, sb, sc, za, zb, zc in cases:
        za, zb, zc = (int(np.clip(z, info.min, info.max)) for z in (za, zb, zc))
        got = _qdq_binary("Add", sa, za, sb, zb, sc, zc, a.size, dtype).run(None, {"a": a, "b": b})[0]
        ours = qlinear_add(a, b, qlinear_add_params(sa, za, sb, zb, sc, zc), info.min, info.max)
        np.testing.assert_array_equal(ours, got.astype(np.int64), err_msg=f"Add {sa, za, sb, zb, sc, zc}")
        got = _qdq_binary("Mul", sa, za, sb, zb, sc, zc, a.size, dtype).run(None, {"a": a, "b": b})[0]
        ours = qlinear_mul(a, b, za, zb, qlinear_mul_scale(sa, sb, sc), zc, info.min, info.max)
        np.testing.assert_array_equal(ours, got.astype(np.int64), err_msg=f"Mul {sa, za, sb, zb, sc, zc}")


def test_fma_f32_is_single_rounding():
    from dtmm_tvm.quant.onnx import fma_f32

    x = np.float32(1 + 2 ** -23)
    exact = 1 + 2 ** -22 + 2 ** -46 - 1.0  # x * x - 1 = 2^-22 + 2^-46
    assert float(fma_f32(x, x, np.float32(-1.0))) == np.float32(exact)
    assert float(np.float32(np.float32(x * x) - np.float32(1.0))) == 2 ** -22  # unfused loses 2^-46


def _onnxruntime(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.stack([session.run(None, {name: xi})[0] for xi in x])


def test_add_mul_avg_pool_bit_exact_with_onnxruntime_on_the_host(tmp_path):
    """The portable C (fmaf from libm where the host has no FMA) through ``--verify``."""
    from dtmm_tvm.verify import verify_model

    model = tmp_path / "chain.onnx"
    _elementwise_chain(model)
    report = verify_model(model, mode="dense", count=16)
    assert report.ok and all(o["exact"] for o in report.outputs)


@pytest.mark.parametrize("target,board", [("dtmm/cortex-m4", "mps2-an386"), ("dtmm/cortex-m55", "mps3-an547")])
def test_fixture_bit_exact_with_onnxruntime_on_cortex_m(tmp_path, target, board):
    """The M55 case also guards the MVE conv path's float32 requantization of ONNX records."""
    from dtmm_tvm.compiler import compile_model
    from dtmm_tvm.micro import run_artifact

    metadata = compile_model(FIXTURE, tmp_path / "m.tar", target=target, mode="dense")
    ops = [layer["op"] for layer in metadata["layers"]]
    assert ops.count("add") == 2 and "mul" in ops and ops.count("avg_pool2d") == 2
    x = np.random.default_rng(4).uniform(-1, 1, (3, 1, 4, 6, 6)).astype(np.float32)
    result = run_artifact(tmp_path / "m.tar", board, x)
    expected = _onnxruntime(FIXTURE, x)
    np.testing.assert_array_equal(result.outputs.reshape(expected.shape), expected)


def _elementwise_chain(path):
    """QDQ (uint8) without convs: Add -> Mul -> AveragePool 3x3 stride 2 of two float inputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    q = dict(sx=(0.02, 128), sy=(0.013, 120), ss=(0.031, 101), sm=(0.017, 90), sp=(0.011, 97))
    inits = []
    for name, (scale, zp) in q.items():
        inits += [numpy_helper.from_array(np.array(scale, np.float32), name),
                  numpy_helper.from_array(np.array(zp, np.uint8), "z" + name[1:])]

    def qdq(src, key):
        return [helper.make_node("QuantizeLinear", [src, key, "z" + key[1:]], [src + "_q"]),
                helper.make_node("DequantizeLinear", [src + "_q", key, "z" + key[1:]], [src + "_f"])]

    nodes = (qdq("x", "sx") + qdq("y", "sy") + [helper.make_node("Add", ["x_f", "y_f"], ["s"])] + qdq("s", "ss")
             + [helper.make_node("Mul", ["s_f", "y_f"], ["m"])] + qdq("m", "sm")
             + [helper.make_node("AveragePool", ["m_f"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])]
             + qdq("p", "sp"))
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 6, 6])
                                               for n in "xy"],
                              [helper.make_tensor_value_info("p_f", TensorProto.FLOAT, [1, 4, 3, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


def _relu_model(path, y_zero_point: int):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array(v, np.float32 if k[0] == "s" else np.uint8), k)
             for k, v in dict(sx=0.02, zx=128, sy=0.011, zy=y_zero_point).items()]
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xf"]),
             helper.make_node("Relu", ["xf"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "sy", "zy"], ["rq"]),
             helper.make_node("DequantizeLinear", ["rq", "sy", "zy"], ["y"])]
    graph = helper.make_graph(nodes, "relu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 40])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 40])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


def test_standalone_relu_table_bit_exact_and_folded_relu_refused(tmp_path):
    from dtmm_tvm.compiler import lower_model
    from dtmm_tvm.errors import UnsupportedOpError
    from dtmm_tvm.frontend.loader import load_model
    from dtmm_tvm.verify import verify_model

    kept = tmp_path / "relu_kept.onnx"
    _relu_model(kept, y_zero_point=40)  # ORT keeps DQ -> Relu -> Q in float32
    assert verify_model(kept, mode="dense", count=8).ok
    folded = tmp_path / "relu_folded.onnx"
    _relu_model(folded, y_zero_point=0)  # zero point = uint8 minimum: ORT folds the Relu away
    with pytest.raises(UnsupportedOpError, match="Relu whose output zero point is the type's minimum"):
        lower_model(load_model(folded))
