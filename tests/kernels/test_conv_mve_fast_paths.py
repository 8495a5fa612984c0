"""The Cortex-M55 (MVE) conv fast paths, bit-exact with the numpy reference (itself checked
against TFLM) on QEMU, one random layer per path:

* the packed small-Cin patch by byte gathers (``packed_gather_mve``): Cin 1 and 3, SAME and
  VALID, strides 1 and 2, odd widths (border pixels on every side, groups across output rows),
  a patch of 5 chunks, and an input too wide for uint8 offsets (the old packed path);
* its block entry ``dtmm_conv_block_mve_s8`` (filters of <= 32 bytes in registers, 1 and 2
  chunks, an odd output-channel count);
* the Cin 16 / 32 / 64 im2col row path of groups of 8 (stride 1 and 2, partial taps at the
  left and right borders - one slot off the image as a row copy at slot strides 32 and 64 -,
  padded kernel rows) and the pixel-by-pixel path;
* the sparse channel loops (uint8 taps per tile in asm, CSR and bitmask per channel) with a whole
  zero filter and more than one 32-channel tile.
"""

import shutil

import numpy as np
import pytest

from dtmm_tvm.costmodel.measure import _one_layer, write_module
from dtmm_tvm.micro import run_artifact
from dtmm_tvm.ops.conv2d import conv2d_int8
from dtmm_tvm.ops.conv2d_filterlet import conv2d_filterlet_int8
from dtmm_tvm.quant import conv as qc
from dtmm_tvm.schedules.conv import mve_fast_block, packed_patch
from dtmm_tvm.sparsity import pack_filterlets_as
from dtmm_tvm.target import resolve_target

TARGET = "dtmm/cortex-m55"
BOARD = "mps3-an547"

CASES = [  # id, (N, H, W, Cin), Cout, kernel, strides, padding (t, l, b, r), format, sparsity
    ("cin3_same_s1_odd", (1, 9, 13, 3), 5, (3, 3), (1, 1), (1, 1, 1, 1), "dense", 0.0),
    ("cin1_valid_s2", (1, 11, 10, 1), 4, (3, 3), (2, 2), (0, 0, 0, 0), "dense", 0.0),
    ("cin3_5x5_s2_same", (1, 12, 9, 3), 6, (5, 5), (2, 2), (1, 2, 2, 2), "dense", 0.0),
    ("cin3_wide_fallback", (1, 5, 48, 3), 3, (3, 3), (1, 1), (1, 1, 1, 1), "dense", 0.0),
    ("cin16_u8_s1_odd", (1, 7, 19, 16), 37, (3, 3), (1, 1), (1, 1, 1, 1), "filterlet_u8", 0.6),
    ("cin16_csr_s2", (1, 11, 15, 16), 9, (3, 3), (2, 2), (1, 1, 1, 1), "filterlet_csr", 0.5),
    ("cin32_mask_s1", (1, 6, 16, 32), 10, (3, 3), (1, 1), (1, 1, 1, 1), "filterlet_bitmask", 0.7),
    ("cin64_u8_valid", (1, 5, 12, 64), 7, (3, 3), (1, 1), (0, 0, 0, 0), "filterlet_u8", 0.75),
    ("cin16_dense_s1", (1, 5, 16, 16), 6, (3, 3), (1, 1), (1, 1, 1, 1), "dense", 0.0),
    # the row path's border groups (one slot off the image) at slot strides 64 and 32 bytes
    ("cin64_u8_same_w16", (1, 4, 16, 64), 5, (3, 3), (1, 1), (1, 1, 1, 1), "filterlet_u8", 0.8),
    ("cin32_dense_s2_w16", (1, 6, 16, 32), 4, (3, 3), (2, 2), (1, 1, 1, 1), "dense", 0.0),
]


def _layer(rng, in_shape, cout, kernel, strides, padding, sparsity):
    params = qc.Conv2DParams(in_shape, (cout, *kernel, in_shape[3]), strides, padding, (1, 1),
                             int(rng.integers(-128, 128)), int(rng.integers(-128, 128)), -128, 127)
    w = rng.integers(-127, 128, size=params.weight_shape).astype(np.int8)
    w[w == 0] = 1
    w[rng.random(params.weight_shape[:3]) < sparsity] = 0
    if sparsity:
        w[0] = 0  # a whole zero filter: bias and requantization only
    bias = rng.integers(-20000, 20000, size=cout).astype(np.int32)
    scales = np.exp(rng.uniform(np.log(1e-4), np.log(0.05), size=cout)).astype(np.float32)
    mult, shift = qc.conv_output_multipliers(np.float32(0.02), scales, np.float32(rng.uniform(0.0005, 0.5)))
    x = rng.integers(-128, 128, size=(2, *in_shape)).astype(np.int8)
    x[0] = -128  # every padded tap meets the extreme offset
    return params, x, w, bias, mult, shift


@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                    reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_mve_fast_paths_bit_exact(tmp_path, case):
    name, in_shape, cout, kernel, strides, padding, fmt, sparsity = case
    rng = np.random.default_rng(sum(map(ord, name)))
    params, x, w, bias, mult, shift = _layer(rng, in_shape, cout, kernel, strides, padding, sparsity)
    target = resolve_target(TARGET)
    with target:
        if fmt == "dense":
            func = conv2d_int8(params)
            consts = [w, bias, mult, shift]
        else:
            packed = pack_filterlets_as(w, fmt)
            func = conv2d_filterlet_int8(params, packed.kept_filterlets, fmt=fmt)
            consts = [packed.values, *packed.index_arrays, bias, mult, shift]
    # the case takes the path it is named for
    expect_fast = {"cin3_5x5_s2_same": None, "cin3_wide_fallback": "small_k", "cin16_dense_s1": None,
                   "cin32_dense_s2_w16": None}
    fast = mve_fast_block(params, "mve", fmt, 8)
    assert fast == expect_fast.get(name, "small_k" if fmt == "dense" else "sparse"), (name, fast)
    assert packed_patch(params, "mve", fmt) == (in_shape[3] < 16)
    path = tmp_path / f"{name}.tar"
    write_module(_one_layer(func, params.input_shape, consts, params.output_shape, "conv"), path, TARGET)
    got = run_artifact(path, BOARD, x).outputs.reshape(2, *params.output_shape)
    for i in range(2):
        np.testing.assert_array_equal(got[i], qc.conv2d(x[i], w, bias, mult, shift, params), err_msg=name)
