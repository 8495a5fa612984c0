"""The conv micro-kernels (dtmm_tvm/kernels + dtmm_tvm/ops/conv2d_micro.py) are bit-exact.

* portable C path: the generated kernel C + the micro-kernel C built with host gcc, called
  through ctypes, against the numpy reference (itself tested against TFLM) on random layers:
  strides 1/2, 1x1, 3x3, 5x5, 10x4, dilation, SAME/VALID/asymmetric padding, odd pixel counts,
  Cin not a multiple of 4 or 16, several filterlet sparsities and every pixels_per_block;
* DSP (Cortex-M4/M7) and MVE (Cortex-M55) paths: conv fixtures compiled with compile_model and
  run on QEMU against TFLM, dense and filterlet-sparse (threshold 0 forces the sparse kernel).
"""

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tvm

from dtmm_tvm.codegen import primfunc_to_c
from dtmm_tvm.kernels import available_kernels, header_files, kernel_source
from dtmm_tvm.ops.conv2d import conv2d_int8
from dtmm_tvm.ops.conv2d_filterlet import conv2d_filterlet_int8
from dtmm_tvm.schedules.conv import ConvSchedule, default_schedule, schedule_space
from dtmm_tvm.quant import conv as qc
from dtmm_tvm.sparsity.storage import pack_filterlets

C_TARGET = tvm.target.Target({"kind": "c"})

CASES = [  # kernel, strides, padding, dilation, act, (N, H, W, Cin), Cout
    ((3, 3), (1, 1), (1, 1, 1, 1), (1, 1), (-128, 127), (1, 7, 5, 5), 6),
    ((3, 3), (2, 2), (0, 0, 1, 1), (1, 1), (-20, 127), (2, 9, 8, 8), 5),
    ((5, 5), (1, 2), (2, 1, 2, 3), (1, 1), (-128, 60), (1, 8, 9, 3), 4),
    ((10, 4), (2, 2), (4, 1, 4, 1), (1, 1), (-128, 127), (1, 13, 6, 1), 7),
    ((1, 1), (1, 1), (0, 0, 0, 0), (1, 1), (-5, 100), (1, 5, 3, 18), 9),
    ((3, 2), (1, 1), (0, 0, 0, 0), (2, 1), (-128, 127), (1, 8, 5, 7), 3),
    ((3, 3), (1, 1), (1, 1, 1, 1), (1, 1), (-128, 127), (1, 4, 4, 20), 4),
    ((3, 3), (1, 1), (2, 2, 2, 2), (1, 2), (-128, 127), (1, 7, 9, 3), 5),  # packed patch, dilation_w 2
]


def _layer(rng, case, sparsity):
    kernel, strides, padding, dilation, act, in_shape, cout = case
    params = qc.Conv2DParams(in_shape, (cout, *kernel, in_shape[3]), strides, padding, dilation,
                             int(rng.integers(-128, 128)), int(rng.integers(-128, 128)), *act)
    w = rng.integers(-127, 128, size=params.weight_shape).astype(np.int8)
    w[w == 0] = 1
    w[rng.random(params.weight_shape[:3]) < sparsity] = 0
    bias = rng.integers(-20000, 20000, size=cout).astype(np.int32)
    scales = np.exp(rng.uniform(np.log(1e-4), np.log(0.05), size=cout)).astype(np.float32)
    mult, shift = qc.conv_output_multipliers(np.float32(0.02), scales, np.float32(rng.uniform(0.0005, 0.5)))
    x = rng.integers(-128, 128, size=params.input_shape).astype(np.int8)
    x.reshape(-1)[:3] = (-128, 127, -128)
    return params, x, w, bias, mult, shift


def _host_call(func, tmp_path: Path, arrays: list, out_shape) -> np.ndarray:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("host gcc not installed")
    code, kernel = primfunc_to_c(func, "conv")
    (tmp_path / "kernel.c").write_text(code)
    for name, text in header_files().items():
        (tmp_path / name).write_text(text)
    srcs = [tmp_path / "kernel.c"]
    for name in ("dtmm_conv_im2col_s8", "dtmm_conv_bias_s8", "dtmm_conv_block_s8"):
        (tmp_path / f"{name}.c").write_text(kernel_source(name))
        srcs.append(tmp_path / f"{name}.c")
    lib = tmp_path / "libconv.so"
    proc = subprocess.run([gcc, "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                           "-I", str(tmp_path), *map(str, srcs), "-o", str(lib)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = np.zeros(out_shape, np.int8)
    bufs = [np.ascontiguousarray(a) for a in arrays] + [out]
    bufs += [np.zeros(s.bytes + 16, np.uint8) for s in kernel.scratch]
    assert len(bufs) == len(kernel.param_dtypes)
    fn = getattr(ctypes.CDLL(str(lib)), kernel.symbol)
    fn.restype = None
    fn(*[ctypes.c_void_p(b.ctypes.data) for b in bufs])
    return out


@pytest.mark.parametrize("ppb", [1, 2, 4, 8])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_portable_dense_matches_reference(tmp_path, case, ppb):
    rng = np.random.default_rng(10 + case)
    params, x, w, bias, mult, shift = _layer(rng, CASES[case], 0.0)
    sched = ConvSchedule(pixels_per_block=ppb, channels_per_block=(0 if ppb != 2 else 2))
    func = conv2d_int8(params, target=C_TARGET, schedule=sched)
    assert "dtmm_conv_block_s8" in list(func.attrs["dtmm.c_kernels"])
    got = _host_call(func, tmp_path, [x, w, bias, mult, shift], params.output_shape)
    np.testing.assert_array_equal(got, qc.conv2d(x, w, bias, mult, shift, params))


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.75, 0.9, 1.0])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_portable_filterlet_matches_reference(tmp_path, case, sparsity):
    rng = np.random.default_rng(100 + case)
    params, x, w, bias, mult, shift = _layer(rng, CASES[case], sparsity)
    w[0] = 0  # a whole zero filter: bias and requantization only
    packed = pack_filterlets(w)
    func = conv2d_filterlet_int8(params, packed.kept_filterlets, target=C_TARGET,
                                 schedule=ConvSchedule(pixels_per_block=4, channels_per_block=3))
    got = _host_call(func, tmp_path, [x, packed.values, packed.col_idx, packed.row_ptr, bias, mult, shift],
                     params.output_shape)
    np.testing.assert_array_equal(got, qc.conv2d(x, w, bias, mult, shift, params))


def _format_cases():
    """Every case with the u8 format; the bitmask format only where it fits (KH*KW <= 25)."""
    for case, spec in enumerate(CASES):
        for fmt in ("filterlet_u8", "filterlet_bitmask"):
            kh, kw = spec[0]
            if fmt == "filterlet_u8" or kh * kw <= 25:
                yield case, fmt


@pytest.mark.parametrize("ppb", [1, 4, 8])
@pytest.mark.parametrize("case, fmt", list(_format_cases()))
def test_portable_formats_match_reference(tmp_path, case, ppb, fmt):
    from dtmm_tvm.sparsity import pack_filterlets_as

    rng = np.random.default_rng(300 + case)
    params, x, w, bias, mult, shift = _layer(rng, CASES[case], 0.6)
    w[0] = 0
    packed = pack_filterlets_as(w, fmt)
    func = conv2d_filterlet_int8(params, packed.kept_filterlets, target=C_TARGET, fmt=fmt,
                                 schedule=ConvSchedule(pixels_per_block=ppb, channels_per_block=(0 if ppb != 4 else 3)))
    got = _host_call(func, tmp_path, [x, packed.values, *packed.index_arrays, bias, mult, shift],
                     params.output_shape)
    np.testing.assert_array_equal(got, qc.conv2d(x, w, bias, mult, shift, params))


def test_schedule_defaults_and_space():
    params = qc.Conv2DParams((1, 16, 16, 64), (64, 3, 3, 64), padding=(1, 1, 1, 1))
    assert default_schedule(params, None).micro_kernel is False  # no target: plain TIR
    for tag in ("cortex-m4", "cortex-m55"):
        from dtmm_tvm.target import resolve_target

        t = resolve_target(tag)
        space = schedule_space(params, t)
        assert space[0] == default_schedule(params, t) and space[0].micro_kernel
        assert len(space) == len(set(space)) > 10
    with pytest.raises(ValueError):
        ConvSchedule(pixels_per_block=3)
    assert {"dtmm_conv_block_s8", "dtmm_conv_im2col_s8", "dtmm_conv_bias_s8"} <= set(available_kernels())


# ---- DSP / MVE on QEMU ----------------------------------------------------------------------
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ops"
QEMU_MODELS = ["conv_3x3_same_s1_relu.tflite", "conv_3x3_same_s2_relu6.tflite", "conv_10x4_s2_same_none.tflite",
               "conv_5x5_same_relu_zero_filter.tflite", "conv_1x1_relu.tflite", "conv_3x3_valid_none.tflite"]


def _qemu_ready():
    return shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")


@pytest.mark.skipif(not _qemu_ready(), reason="arm-none-eabi-gcc / qemu-system-arm not installed")
# The M7 runs the M4's DSP code (same flags but -mcpu); tests/test_end_to_end.py covers it on QEMU.
@pytest.mark.parametrize("target,board", [("dtmm/cortex-m4", "mps2-an386"), ("dtmm/cortex-m55", "mps3-an547")])
def test_dsp_and_mve_paths_on_qemu(tmp_path, target, board):
    _run_qemu_fixtures(tmp_path, target, board, QEMU_MODELS, (("dense", None), ("dtmm", 0.0)))


@pytest.mark.skipif(not _qemu_ready(), reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("fmt", ["filterlet_csr", "filterlet_u8", "filterlet_bitmask"])
@pytest.mark.parametrize("target,board", [("dtmm/cortex-m4", "mps2-an386"), ("dtmm/cortex-m55", "mps3-an547")])
def test_every_format_on_qemu(tmp_path, monkeypatch, target, board, fmt):
    import relay_passes.filterlet_sparse_conv as fsc

    monkeypatch.setattr(fsc, "FORMATS_OVERRIDE", (fmt,))
    models = [m for m in QEMU_MODELS if "10x4" not in m or fmt != "filterlet_bitmask"]
    # optimize="size": the forced format on every pruned layer, even where dense is faster
    metas = _run_qemu_fixtures(tmp_path, target, board, models, (("dtmm", 0.0),), optimize="size")
    formats = {layer.get("format") for meta in metas for layer in meta["layers"] if layer.get("op") == "conv2d"}
    assert fmt in formats


def _run_qemu_fixtures(tmp_path, target, board, models, modes, optimize="speed"):
    from dtmm_tvm.compiler import compile_model
    from dtmm_tvm.micro import run_artifact
    from dtmm_tvm.reference import run_tflm

    rng = np.random.default_rng(7)
    metas = []
    for model in models:
        path = FIXTURES / model
        for mode, threshold in modes:
            out = tmp_path / f"{path.stem}-{mode}.tar"
            meta = compile_model(path, out, target=target, mode=mode, threshold=threshold, optimize=optimize)
            metas.append(meta)
            x = rng.integers(-128, 128, size=(2, *meta["inputs"][0]["shape"])).astype(np.int8)
            x[0] = -128
            expected = run_tflm(path.read_bytes(), x)
            got = run_artifact(out, board, x)
            np.testing.assert_array_equal(got.outputs.reshape(expected.shape), expected,
                                          err_msg=f"{model} {mode} on {board}")
    return metas
