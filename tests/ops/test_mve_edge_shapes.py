"""The Cortex-M55 (MVE) depthwise and dense-conv paths on their edge shapes, bit-exact with TFLM.

One model (``tests/fixtures/ops/mve_edge_chain.tflite``, made by ``make_mve_edge_ops.py``) chains
a depthwise conv with a predicated channel tail (21 channels), stride 2 + VALID on 40 channels
(16 + 16 + 8), 1x1 convs with Cin not a multiple of 16 and an odd Cout, and a padded stride-2
3x3 conv over the two-filter VMLADAVA loop; one compile, one QEMU run of two inputs (one all
-128: every padded tap and the extreme offsets). A second (``mve_dw_chain.tflite``, made by
``make_mve_dw_ops.py``) covers the transposed depthwise path: 4 and 8 channels packed per block,
dilation, 1x3 / 5x3 / 3x3 kernels, short predicated blocks, stride 2. The MVE scratch sizes the
Python mirrors assume are checked against the kernels' own constants by the cross compiler.
"""

from pathlib import Path

import numpy as np
import pytest

from dtmm_tvm.compiler import compile_model
from dtmm_tvm.frontend.tflite_reader import read_tflite
from dtmm_tvm.micro import run_artifact
from dtmm_tvm.reference import run_tflm

import subprocess

from dtmm_tvm.ops import depthwise_conv2d as dwop
from dtmm_tvm.schedules.conv import block_tile_bytes

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ops"
MODEL = FIXTURES / "mve_edge_chain.tflite"
DW_MODEL = FIXTURES / "mve_dw_chain.tflite"
KERNELS = Path(dwop.__file__).resolve().parents[1] / "kernels"


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


def test_mve_depthwise_paths_bit_exact(tmp_path):
    graph = read_tflite(DW_MODEL)
    assert [op.opcode for op in graph.operators].count("DEPTHWISE_CONV_2D") == 5
    out = tmp_path / "dw.tar"
    compile_model(DW_MODEL, out, target="dtmm/cortex-m55", mode="dense", force=True)
    shape = graph.tensor(graph.inputs[0]).shape
    x = np.random.default_rng(55).integers(-128, 128, size=(2, *shape)).astype(np.int8)
    x[0] = -128
    got = run_artifact(out, "mps3-an547", x)
    expected = run_tflm(DW_MODEL.read_bytes(), x)
    np.testing.assert_array_equal(got.outputs.reshape(expected.shape), expected)


@pytest.mark.parametrize("kernel, check", [
    ("dtmm_depthwise_conv_s8.c", "DW_MVE_AREA + DW_MVE_ALIGN_SLACK == {}".format(dwop._MVE_AREA_BYTES)),
    ("dtmm_conv_block_s8.c", "4 * 8 * TILE_CH == {}".format(block_tile_bytes("mve"))),
])
def test_mve_scratch_mirrors_match_the_kernels(tmp_path, kernel, check):
    # The MVE work areas live in caller scratch sized by the Python mirrors: a mismatch would let
    # the kernel write past its arena slot, so the cross compiler checks the kernel's constants.
    src = tmp_path / "check.c"
    src.write_text(f'#include "{KERNELS / kernel}"\n_Static_assert({check}, "scratch mirror");\n')
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard", "-O2",
                    "-fsyntax-only", f"-I{KERNELS}", str(src)], check=True, capture_output=True, text=True)
