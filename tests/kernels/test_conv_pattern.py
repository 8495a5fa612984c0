"""The pattern-pruning baseline's conv (dtmm_conv_pattern_s8 + dtmm_tvm/ops/conv2d_pattern.py)
and its storage (dtmm_tvm/sparsity/pattern.py).

* detection and packing: the pattern set read from the weights, exact bytes, unpack round trip,
  refusal of weights outside the limits (too many patterns, too wide a support);
* portable C path: the generated kernel C + the micro-kernel built with host gcc, called through
  ctypes, bit-exact with the numpy reference (itself tested against TFLM) on random
  pattern-pruned layers (strides, dilation, padding, Cin not a multiple of 4 or 16, patterns of
  fewer than 4 taps, connectivity pruning, a filter with no kernel left).
The DSP / MVE paths run on QEMU against TFLM in tests/kernels/test_conv_pattern_model.py.
"""

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tvm

from dtmm_tvm.codegen import primfunc_to_c
from dtmm_tvm.errors import FormatError
from dtmm_tvm.kernels import header_files, kernel_source
from dtmm_tvm.ops.conv2d_pattern import conv2d_pattern_int8
from dtmm_tvm.quant import conv as qc
from dtmm_tvm.sparsity.pattern import (MAX_PATTERNS, detect_patterns, pack_patterns, pattern_bytes,
                                       why_not_pattern)

C_TARGET = tvm.target.Target({"kind": "c"})

#: PatDNN's kind of pattern set: 4 taps of a 3x3 kernel, the centre (tap 4) always kept.
PATTERNS_3X3 = [(0, 1, 3, 4), (1, 2, 4, 5), (3, 4, 6, 7), (4, 5, 7, 8), (1, 3, 4, 5), (1, 4, 5, 7),
                (3, 4, 5, 7), (1, 3, 4, 7)]


def pattern_weights(rng, cout, kh, kw, cin, patterns, connectivity=0.3, short=0.0):
    """OHWI int8 weights: each (o, c) kernel zero with probability ``connectivity``, else the
    non-zeros of a random pattern of ``patterns`` (a fraction ``short`` loses one weight)."""
    w = np.zeros((cout, kh * kw, cin), np.int8)
    for o in range(cout):
        for c in range(cin):
            if rng.random() < connectivity:
                continue
            taps = list(patterns[int(rng.integers(len(patterns)))])
            vals = rng.integers(-127, 128, size=len(taps)).astype(np.int8)
            vals[vals == 0] = 1
            if rng.random() < short:
                vals[int(rng.integers(len(taps)))] = 0
            w[o, taps, c] = vals
    return w.reshape(cout, kh, kw, cin)


def test_detect_and_pack_round_trip():
    rng = np.random.default_rng(0)
    w = pattern_weights(rng, 6, 3, 3, 5, PATTERNS_3X3, connectivity=0.4, short=0.3)
    w[2] = 0
    found = detect_patterns(w)
    assert found is not None and len(found.supports) <= len(PATTERNS_3X3)
    assert set(found.supports) <= set(PATTERNS_3X3)
    packed = pack_patterns(w)
    np.testing.assert_array_equal(packed.unpack(), w)
    kept = int(np.any(w != 0, axis=(1, 2)).sum())
    assert packed.kept_kernels == kept and packed.counts[2] == 0
    assert packed.nbytes == pattern_bytes(w.shape, kept, packed.patterns) == 6 * kept + 2 * 6 + 4 * packed.patterns
    # kernel reorder: within a filter by pattern id, then channel
    j = 0
    for o in range(6):
        ks = [int(k) for k in packed.kidx[j: j + int(packed.counts[o])]]
        assert ks == sorted(ks)
        j += int(packed.counts[o])


def test_weights_outside_the_limits_do_not_fit():
    rng = np.random.default_rng(1)
    wide = pattern_weights(rng, 4, 3, 3, 4, [(0, 1, 2, 3, 4)], connectivity=0.0)  # 5 taps
    assert "5 non-zero taps" in why_not_pattern(wide)
    many = np.zeros((8, 3, 3, 8), np.int8)  # 4-tap supports, 64 distinct ones
    combos = [c for c in __import__("itertools").combinations(range(9), 4)][: 64]
    for i, taps in enumerate(combos):
        many.reshape(8, 9, 8)[i // 8, list(taps), i % 8] = 3
    assert f"limit {MAX_PATTERNS}" in why_not_pattern(many)
    with pytest.raises(FormatError, match="layer 'convX'"):
        pack_patterns(many, "convX")
    assert "every kernel is zero" in why_not_pattern(np.zeros((2, 3, 3, 2), np.int8))
    dense = rng.integers(1, 100, size=(4, 3, 3, 4)).astype(np.int8)  # 9 taps: dense
    assert detect_patterns(dense) is None


CASES = [  # kernel, strides, padding, dilation, act, (N, H, W, Cin), Cout, patterns
    ((3, 3), (1, 1), (1, 1, 1, 1), (1, 1), (-128, 127), (1, 7, 5, 5), 6, PATTERNS_3X3),
    ((3, 3), (2, 2), (0, 0, 1, 1), (1, 1), (-20, 127), (2, 9, 8, 8), 5, PATTERNS_3X3[:3]),
    ((3, 3), (1, 1), (0, 0, 0, 0), (2, 1), (-128, 127), (1, 8, 9, 20), 7, [(4,), (0, 4, 8), (1, 4, 7)]),
    ((3, 3), (1, 2), (2, 1, 2, 3), (1, 1), (-128, 60), (1, 6, 9, 33), 9, PATTERNS_3X3),
    ((5, 5), (1, 1), (2, 2, 2, 2), (1, 1), (-128, 127), (1, 5, 6, 4), 3, [(0, 6, 12, 24), (2, 12, 22)]),
]


def _host_call(func, tmp_path: Path, arrays: list, out_shape) -> np.ndarray:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("host gcc not installed")
    code, kernel = primfunc_to_c(func, "conv")
    (tmp_path / "kernel.c").write_text(code)
    for name, text in header_files().items():
        (tmp_path / name).write_text(text)
    (tmp_path / "dtmm_conv_pattern_s8.c").write_text(kernel_source("dtmm_conv_pattern_s8"))
    lib = tmp_path / "libconv.so"
    proc = subprocess.run([gcc, "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                           "-I", str(tmp_path), str(tmp_path / "kernel.c"), str(tmp_path / "dtmm_conv_pattern_s8.c"),
                           "-o", str(lib)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = np.zeros(out_shape, np.int8)
    bufs = [np.ascontiguousarray(a) for a in arrays] + [out]
    bufs += [np.zeros(s.bytes + 16, np.uint8) for s in kernel.scratch]
    assert len(bufs) == len(kernel.param_dtypes)
    fn = getattr(ctypes.CDLL(str(lib)), kernel.symbol)
    fn.restype = None
    fn(*[ctypes.c_void_p(b.ctypes.data) for b in bufs])
    return out


@pytest.mark.parametrize("case", range(len(CASES)))
def test_portable_pattern_conv_matches_reference(tmp_path, case):
    kernel, strides, padding, dilation, act, in_shape, cout, patterns = CASES[case]
    rng = np.random.default_rng(50 + case)
    params = qc.Conv2DParams(in_shape, (cout, *kernel, in_shape[3]), strides, padding, dilation,
                             int(rng.integers(-128, 128)), int(rng.integers(-128, 128)), *act)
    w = pattern_weights(rng, cout, *kernel, in_shape[3], patterns, connectivity=0.35, short=0.2)
    w[1] = 0  # a filter with every kernel pruned: bias and requantization only
    bias = rng.integers(-20000, 20000, size=cout).astype(np.int32)
    scales = np.exp(rng.uniform(np.log(1e-4), np.log(0.05), size=cout)).astype(np.float32)
    mult, shift = qc.conv_output_multipliers(np.float32(0.02), scales, np.float32(rng.uniform(0.0005, 0.5)))
    x = rng.integers(-128, 128, size=params.input_shape).astype(np.int8)
    x.reshape(-1)[:3] = (-128, 127, -128)
    packed = pack_patterns(w)
    func = conv2d_pattern_int8(params, packed.kept_kernels, packed.patterns, target=C_TARGET)
    got = _host_call(func, tmp_path, [x, packed.values, *packed.index_arrays, bias, mult, shift],
                     params.output_shape)
    np.testing.assert_array_equal(got, qc.conv2d(x, w, bias, mult, shift, params))
