"""The ``dtmm_add_s8`` C micro-kernel (DSP path on Cortex-M4, MVE path on Cortex-M55) through the
normal compile flow on QEMU, bit-exact against TFLM on the ADD fixtures (random inputs with the
-128 / 127 extremes). The broadcast fixture keeps the TIR loop and is checked for that."""

from pathlib import Path

import numpy as np
import pytest
import tvm

from dtmm_tvm.reference import run_tflm
from dtmm_tvm.compiler import compile_model
from dtmm_tvm.frontend.tflite_reader import read_tflite
from dtmm_tvm.micro import run_artifact
from dtmm_tvm.ops.add import add_int8 as build_add
from dtmm_tvm.quant.add import add_params
from dtmm_tvm.quant.fixed_point import activation_range

OPS = Path(__file__).resolve().parents[1] / "fixtures" / "ops"
BOARDS = {"dtmm/cortex-m4": "mps2-an386", "dtmm/cortex-m55": "mps3-an547"}


def _inputs(rng, shape, count=3):
    x = rng.integers(-128, 128, size=(count, *shape), dtype=np.int8)
    x[0], x[1] = -128, 127
    return x


def _params(graph):
    (op,) = graph.operators
    t1, t2, out = (graph.tensor(i) for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    q = lambda t: (float(t.scale[0]), int(t.zero_point[0]))  # noqa: E731
    act = activation_range(op.options["FusedActivationFunction"], *q(out))
    return t1.shape, t2.shape, add_params(*q(t1), *q(t2), *q(out), *act)


@pytest.mark.parametrize("name", ["misc_add", "misc_add_relu", "misc_add_bcast_relu6"])
def test_builder_picks_micro_kernel_for_c_targets(name):
    shape1, shape2, params = _params(read_tflite(OPS / f"{name}.tflite"))
    with tvm.target.Target("c"):
        func = build_add(shape1, shape2, params)
    assert [str(f) for f in func.attrs.get("dtmm.c_kernels", [])] == ([] if "bcast" in name else ["dtmm_add_s8"])
    assert "dtmm.c_kernels" not in build_add(shape1, shape2, params).attrs  # no target: TIR loop


@pytest.mark.parametrize("target", list(BOARDS))
@pytest.mark.parametrize("name", ["misc_add", "misc_add_relu"])
def test_micro_kernel_bit_exact_on_qemu(tmp_path, target, name):
    model = OPS / f"{name}.tflite"
    graph = read_tflite(model)
    out = tmp_path / f"{name}.tar"
    compile_model(model, out, target=target, mode="dense", force=True)
    rng = np.random.default_rng(len(name))
    x1 = _inputs(rng, graph.tensor(graph.inputs[0]).shape)
    x2 = _inputs(rng, graph.tensor(graph.inputs[1]).shape)
    x2[2] = 127  # mixed extremes
    x1[2] = -128
    result = run_artifact(out, BOARDS[target], [x1, x2])
    expected = run_tflm(model.read_bytes(), [x1, x2])
    np.testing.assert_array_equal(np.asarray(result.outputs).reshape(expected.shape), expected)
