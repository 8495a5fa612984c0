"""The Cortex-M55 (MVE) depthwise and dense-conv paths on their edge shapes, bit-exact with TFLM.

One model (``tests/fixtures/ops/mve_edge_chain.tflite``, made by ``make_mve_edge_ops.py``) chains
a depthwise conv with a predicated channel tail (21 channels), stride 2 + VALID on 40 channels
(16 + 16 + 8), 1x1 convs with Cin not a multiple of 16 and an odd Cout, and a padded stride-2
3x3 conv over the two-filter VMLADAVA loop; one compile, one QEMU run of two inputs (one all
-128: every padded tap and the extreme offsets).
"""

from pathlib import Path

import numpy as np
import pytest

from dtmm_tvm.compiler import compile_model
from dtmm_tvm.frontend.tflite_reader import read_tflite
from dtmm_tvm.micro import run_artifact
from dtmm_tvm.reference import run_tflm

MODEL = Path(__file__).resolve().parents[1] / "fixtures" / "ops" / "mve_edge_chain.tflite"


@pytest.mark.parametrize("mode", ["dense"])
def test_mve_edge_shapes_bit_exact(tmp_path, mode):
    graph = read_tflite(MODEL)
    ops = [op.opcode for op in graph.operators]
    assert ops.count("DEPTHWISE_CONV_2D") == 2 and ops.count("CONV_2D") == 3, ops
    out = tmp_path / "edge.tar"
    compile_model(MODEL, out, target="dtmm/cortex-m55", mode=mode, force=True)
    shape = graph.tensor(graph.inputs[0]).shape
    x = np.random.default_rng(11).integers(-128, 128, size=(2, *shape)).astype(np.int8)
    x[0] = -128
    got = run_artifact(out, "mps3-an547", x)
    expected = run_tflm(MODEL.read_bytes(), x)
    np.testing.assert_array_equal(got.outputs.reshape(expected.shape), expected)
