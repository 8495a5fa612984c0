"""The DSP (Cortex-M4) and MVE (Cortex-M55) paths of the depthwise / fully connected C
micro-kernels, run on QEMU through the normal compile flow, bit-exact against TFLM.

Each model is one operator; every schedule knob of ``schedule_space`` is exercised on the
largest fixture by swapping the builder's default schedule. The micro-kernel must be faster than
the plain TIR loop nest (``micro_kernel=False``) on the 16x16x64 / 256x64 bench layers.
"""

from pathlib import Path

import numpy as np
import pytest

from dtmm_tvm.compiler import compile_model
from dtmm_tvm.frontend.tflite_reader import read_tflite
from dtmm_tvm.micro import run_artifact
from dtmm_tvm.ops import depthwise_conv2d as dwop
from dtmm_tvm.ops import fully_connected as fcop
from dtmm_tvm.quant.conv import conv_layer_from_tflite
from dtmm_tvm.reference import run_tflm
from dtmm_tvm.target import resolve_target

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "tests" / "fixtures" / "ops"
BENCH = ROOT / "bench" / "models"
BOARDS = {"dtmm/cortex-m4": "mps2-an386", "dtmm/cortex-m55": "mps3-an547"}


def _inputs(model: Path, count: int = 2) -> np.ndarray:
    graph = read_tflite(model)
    shape = graph.tensor(graph.inputs[0]).shape
    x = np.random.default_rng(len(model.name)).integers(-128, 128, size=(count, *shape)).astype(np.int8)
    x[0] = -128  # every padded tap and the extreme offsets
    return x


def _run(tmp_path, model: Path, target: str, op=None, schedule=None):
    out = tmp_path / f"{model.stem}-{target.replace('/', '_')}-{abs(hash(schedule))}.tar"
    if op is not None:
        original = op.default_schedule
        op.default_schedule = lambda params, target=None: schedule
    try:
        compile_model(model, out, target=target, mode="dense", force=True)
    finally:
        if op is not None:
            op.default_schedule = original
    x = _inputs(model)
    result = run_artifact(out, BOARDS[target], x)
    expected = run_tflm(model.read_bytes(), x)
    np.testing.assert_array_equal(result.outputs.reshape(expected.shape), expected)
    return result


@pytest.mark.parametrize("target", list(BOARDS))
@pytest.mark.parametrize("model", ["conv_dw_3x3_s1_m1_relu6", "conv_dw_3x3_s1_m2_relu", "conv_fc_nobias",
                                   "conv_fc_per_tensor_relu6"])
def test_fixture_bit_exact(tmp_path, target, model):
    _run(tmp_path, OPS / f"{model}.tflite", target)


def _schedules(op, model: Path, target: str):
    graph = read_tflite(model)
    params = conv_layer_from_tflite(graph, graph.operators[0]).params
    with resolve_target(target):
        return op.schedule_space(params)


@pytest.mark.parametrize("target", list(BOARDS))
def test_every_depthwise_schedule_bit_exact(tmp_path, target):
    # 6 channels: a 4-channel block plus a 2-channel tail (scalar on DSP, predicated on MVE);
    # the full 8/16 blocks run in the 64-channel bench test .
    model = OPS / "conv_dw_3x3_s2_m1_none.tflite"
    for schedule in _schedules(dwop, model, target):
        _run(tmp_path, model, target, dwop, schedule)


@pytest.mark.parametrize("target", list(BOARDS))
def test_every_fc_schedule_bit_exact(tmp_path, target):
    model = OPS / "conv_fc_bias_relu.tflite"  # K = 32, O = 10: row blocks of 4 + 2 leftover rows
    for schedule in _schedules(fcop, model, target):
        _run(tmp_path, model, target, fcop, schedule)


@pytest.mark.parametrize("target", list(BOARDS))
@pytest.mark.parametrize("model, op, naive", [
    ("dw_3x3", dwop, dwop.DepthwiseSchedule(micro_kernel=False)),
    ("fc_256_64", fcop, fcop.FullyConnectedSchedule(micro_kernel=False)),
])
def test_micro_kernel_at_least_3x_faster_than_loop_nest(tmp_path, target, model, op, naive):
    path = BENCH / f"{model}.tflite"  # made by bench/models/make_bench_models.py
    fast = _run(tmp_path, path, target)
    slow = _run(tmp_path, path, target, op, naive)
    assert slow.instructions >= 3 * fast.instructions, (slow.instructions, fast.instructions)


def test_dsp_channel_blocked_depthwise_and_pointwise_bit_exact(tmp_path):
    # Cortex-M4: the MVE edge-shape chain takes the DSP paths of issue 11 too: the channel-blocked
    # 3x3 depthwise (40 channels, stride 2, VALID; 21 channels keep the generic path) and the
    # unpadded 1x1 im2col / full-group dense function (Cin 40), next to the generic ones.
    _run(tmp_path, ROOT / "tests" / "fixtures" / "ops" / "mve_edge_chain.tflite", "dtmm/cortex-m4")
