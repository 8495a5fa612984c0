"""The filter-compacted conv (``"filter_compact"``: the dense kernels over the kept filters, then
``dtmm_expand_channels_s8``) bit-exact with the numpy reference (itself checked against TFLM) on
QEMU, on every ISA path (portable C, DSP, MVE): 1x1 and 3x3 layers, a channel count that is not a
multiple of 4 or 16, kept filters scattered and in one run, more kept filters than one MVE
scatter (8), a small-Cin packed patch, dropped filters whose constants differ (clamped at either
end, or not), and ONNX float32 requantization records."""

import shutil

import numpy as np
import pytest

from dtmm_tvm.costmodel.measure import _one_layer, write_module
from dtmm_tvm.errors import FormatError
from dtmm_tvm.micro import run_artifact
from dtmm_tvm.ops.conv2d_compact import conv2d_compact_int8
from dtmm_tvm.quant import conv as qc
from dtmm_tvm.sparsity.compact import compact_bytes, pack_compact, unpack_compact
from dtmm_tvm.target import DEFAULT_BOARD, resolve_target

TOOLS = shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")

CASES = [  # id, (N, H, W, Cin), Cout, kernel, strides, padding, kept filters
    ("pw_64_to_64_keep6", (1, 5, 7, 64), 64, (1, 1), (1, 1), (0, 0, 0, 0), [3, 9, 10, 31, 40, 63]),
    ("pw_odd_cout_keep_run", (1, 6, 5, 24), 37, (1, 1), (1, 1), (0, 0, 0, 0), list(range(4, 15))),
    ("pw_keep_most", (1, 4, 9, 16), 20, (1, 1), (1, 1), (0, 0, 0, 0), [i for i in range(20) if i not in (0, 7, 19)]),
    ("conv3x3_s2_same", (1, 9, 11, 16), 12, (3, 3), (2, 2), (1, 1, 1, 1), [0, 5, 6, 11]),
    ("stem_cin3_packed", (1, 10, 10, 3), 16, (3, 3), (1, 1), (1, 1, 1, 1), [1, 2, 8, 9, 13]),
]


def _layer(rng, in_shape, cout, kernel, strides, padding, keep, onnx=False):
    params = qc.Conv2DParams(in_shape, (cout, *kernel, in_shape[3]), strides, padding, (1, 1),
                             int(rng.integers(-128, 128)), int(rng.integers(-20, 20)), -128, 127)
    w = np.zeros(params.weight_shape, np.int8)
    w[keep] = rng.integers(-127, 128, size=(len(keep), *params.weight_shape[1:]))
    w[keep, 0, 0, 0] = 5  # no kept filter is all zero by chance
    bias = rng.integers(-20000, 20000, size=cout).astype(np.int32)
    bias[:3] = [-(10**8), 10**8, 0]  # dropped filters clamped at -128 / 127, and one at the zero point
    if onnx:  # float32 records (shift = the f32 marker), as the ONNX QDQ lowering stores them
        from dtmm_tvm.quant.onnx import requant_records

        mult, shift = requant_records(np.float32(0.02) * np.exp(rng.uniform(np.log(1e-4), np.log(0.05), size=cout))
                                  / np.float32(0.1))
    else:
        scales = np.exp(rng.uniform(np.log(1e-4), np.log(0.05), size=cout)).astype(np.float32)
        mult, shift = qc.conv_output_multipliers(np.float32(0.02), scales, np.float32(0.1))
    x = rng.integers(-128, 128, size=(2, *in_shape)).astype(np.int8)
    return params, x, w, bias, mult, shift


def test_pack_compact_constants_and_bytes():
    rng = np.random.default_rng(0)
    params, x, w, bias, mult, shift = _layer(rng, (1, 3, 3, 8), 10, (1, 1), (1, 1), (0, 0, 0, 0), [2, 5, 6])
    packed = pack_compact(w, bias, mult, shift, params.output_zero_point, params.act_min, params.act_max)
    assert packed.channels.tolist() == [2, 5, 6] and packed.weight.shape == (3, 1, 1, 8)
    np.testing.assert_array_equal(unpack_compact(packed, 10), w)
    assert packed.nbytes == compact_bytes(w.shape, 3) == 3 * 8 + 3 * 2 + 10
    # a dropped filter's output is its constant at every pixel: the reference conv says so
    ref = qc.conv2d(x[0], w, bias, mult, shift, params)
    dropped = [o for o in range(10) if o not in (2, 5, 6)]
    np.testing.assert_array_equal(ref[..., dropped], np.broadcast_to(packed.fill[dropped], ref[..., dropped].shape))
    assert packed.fill[0] == -128 and packed.fill[1] == 127 and packed.fill[2] == 0  # kept: unused 0
    for bad in ([], list(range(10))):
        wb = np.zeros_like(w)
        wb[bad] = 1
        with pytest.raises(FormatError, match="filter_compact needs some but not all"):
            pack_compact(wb, bias, mult, shift, 0, -128, 127)


@pytest.mark.skipif(not TOOLS, reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("target", ["dtmm/portable", "dtmm/cortex-m4", "dtmm/cortex-m55"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_compact_conv_bit_exact_on_every_isa(tmp_path, case, target):
    name, in_shape, cout, kernel, strides, padding, keep = case
    rng = np.random.default_rng(sum(map(ord, name)))
    onnx = name == "conv3x3_s2_same"
    params, x, w, bias, mult, shift = _layer(rng, in_shape, cout, kernel, strides, padding, keep, onnx=onnx)
    packed = pack_compact(w, bias, mult, shift, params.output_zero_point, params.act_min, params.act_max)
    with resolve_target(target):
        func = conv2d_compact_int8(params, packed.kept_filters)
    consts = [packed.weight, packed.channels, packed.fill, packed.bias, packed.mult, packed.shift]
    path = tmp_path / f"{name}.tar"
    write_module(_one_layer(func, params.input_shape, consts, params.output_shape, "conv"), path, target)
    got = run_artifact(path, DEFAULT_BOARD[target], x).outputs.reshape(2, *params.output_shape)
    for i in range(2):
        np.testing.assert_array_equal(got[i], qc.conv2d(x[i], w, bias, mult, shift, params), err_msg=f"{name} {target}")


@pytest.mark.parametrize("target", ["dtmm/portable", "dtmm/cortex-m4", "dtmm/cortex-m55"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_predicted_scratch_is_the_compiled_kernels(case, target):
    """The cost model's arena request for a compact conv equals the scratch the codegen gives the
    compiled kernel (the dense conv's of the kept filters plus the block of kept output rows)."""
    from dtmm_tvm.codegen.c_source import build_c_kernels
    from dtmm_tvm.costmodel import ConvShape, scratch_bytes

    name, in_shape, cout, kernel, strides, padding, keep = case
    params, *_ = _layer(np.random.default_rng(0), in_shape, cout, kernel, strides, padding, keep)
    with resolve_target(target) as t:
        func = conv2d_compact_int8(params, len(keep))
        compiled = build_c_kernels({"conv": func}, stack_threshold=0, target=t).kernels["conv"].scratch_bytes
    n, h, w, cin = in_shape
    shape = ConvShape(height=h, width=w, cin=cin, cout=cout, kh=kernel[0], kw=kernel[1], strides=strides,
                      padding=padding)
    assert scratch_bytes(shape, "filter_compact", target, kept_filters=len(keep)) == compiled
    with pytest.raises(ValueError, match="pass kept_filters"):
        scratch_bytes(shape, "filter_compact", target)
