"""Every loop form of the ``dtmm_add_s8`` micro-kernel bit-exact with the numpy TFLM reference
(:func:`dtmm_tvm.quant.add.add_int8`, itself checked against TFLM in ``test_add.py``).

The MVE and DSP paths pick one of eight loops per call (input 2 with the half multiplier 2^30 or a
general one; output rounded half up or half away from zero, clamped by int8 saturation or to the
activation range) and fall back to the scalar loop outside their ranges (DSP: left shift other
than 20, output shift > 22); MVE
tails of 1-3 elements take the scalar loop. The cases reach each of them: equal and unequal scales
in both input orders, ReLU / ReLU6 / narrow / no clamps with the output zero point at -128 and
elsewhere, output shifts 0 to 24, input shifts up to 14, extreme offsets, left shifts
0 / 1 / 3 / 15 / 20 / 22, multipliers no TFLM model has, sizes 1..67, every (x1, x2) pair at left
shift 3 and nearly cancelling pairs at left shift 20 (where rounding ties are frequent: a fixup
dropped from any form fails). All cases run as one differential artifact
(``tests/hardening/differential.py``) per core: the host (portable C), Cortex-M4 (DSP) and
Cortex-M55 (MVE) on QEMU.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import tvm

from dtmm_tvm.ops import add as add_op
from dtmm_tvm.quant import add as qadd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hardening"))
import differential  # noqa: E402

#: (scale1, zp1, scale2, zp2, out_scale, out_zp, act_min, act_max, left_shift or None for TFLM's 20)
PARAMS = [
    (0.05, -3, 0.05, 7, 0.08, -128, -128, 127, None),     # equal scales, ReLU at zp -128: half/sat
    (0.05, -3, 0.05, 7, 0.08, 5, -128, 127, None),        # equal scales, no clamp: half/exact
    (0.05, 12, 0.05, -128, 0.07, 10, 10, 127, None),      # equal scales, ReLU at zp 10: half/clamp
    (0.09, 4, 0.03, -9, 0.11, -128, -128, 127, None),     # input 2 smaller: gen/sat
    (0.03, -9, 0.09, 4, 0.11, -128, -128, 127, None),     # input 1 smaller (swapped): gen/sat
    (0.02, -128, 0.05, 127, 0.06, -3, -128, 127, None),   # extreme offsets: gen/exact
    (0.05, 30, 0.04, -60, 0.047, -128, -128, 0, None),    # ReLU6-like upper clamp: gen/clamp
    (0.05, 30, 0.04, -60, 0.047, 20, -40, 90, None),      # narrow clamp below the zero point: gen/exact
    (1.0, 0, 0.5, 3, 2e-6, -128, -128, 127, None),        # output shift 0: gen/sat, VQSHL by 24
    (1.0, 0, 0.5, 3, 2e-6, 9, -128, 127, None),           # output shift 0, no clamp: gen/clamp
    (0.01, 1, 0.012, -1, 0.7, -128, -128, 127, None),     # output shift 25 > 22: gen/exact
    (0.5, -100, 0.00005, 100, 0.4, -128, -128, 127, None),  # input shift 13
    (0.05, -3, 0.02, 7, 0.08, -128, -128, 127, 1),        # left shift 1: half = 1
    (0.05, -3, 0.02, 7, 0.08, -128, -128, 127, 15),
    (0.05, -128, 0.02, -128, 0.03, 127, -128, 127, 22),   # left shift 22 at the offset extremes
    (0.05, -3, 0.02, 7, 0.2, -128, -128, 127, 0),         # left shift 0: scalar fallback
    # left shift 3: output shift 2, so a quarter of the outputs are rounding ties (at 20 almost
    # none are): half up vs away from zero shows
    (0.05, -3, 0.05, 7, 0.08, 5, -128, 127, 3),           # half/exact
    (0.05, 12, 0.03, -128, 0.07, 10, 10, 127, 3),         # gen/clamp
    (0.05, -3, 0.03, 7, 0.08, 5, -128, 127, 3),           # gen/exact, on every (x1, x2) pair
    # left shift 20 with ties: input 2's real multiplier 0.5 (1 - 2^-20) makes its SRDHM odd for
    # odd x2 + off2 (input shift 1: ties), an output scale 2^-19 of the inputs' gives output shift
    # 2; on nearly cancelling pairs (the others saturate) both roundings show
    (1.0, 3, 1.0 - 2.0 ** -20, -5, 4.8e-6, 0, -128, 127, None),      # gen/exact
    (1.0, 3, 1.0 - 2.0 ** -20, -5, 4.8e-6, -128, -128, 127, None),   # gen/sat
    (1.0, -7, 1.0, 2, 4.8e-6, 0, -128, 127, None),                   # half/exact_sat
    (1.0, 3, 1.0 - 2.0 ** -20, -5, 4.8e-6, 0, -100, 100, None),      # gen/exact (clamp)
    (0.05, -3, 0.05, 7, 0.08, 5, -90, 110, None),                    # half/exact (clamp)
]
SIZES = [67, 1, 5, 2, 9, 3, 6, 13, 4, 7, 35, 8, 17, 66, 12, 31, 67, 65, 65536, 0, 0, 0, 0, 39]  # 0: _cancelling_pairs


def _params(scale1, zp1, scale2, zp2, out_scale, out_zp, lo, hi, left_shift):
    p = qadd.add_params(scale1, zp1, scale2, zp2, out_scale, out_zp, lo, hi)
    if left_shift is not None:
        # the same real multipliers at another left shift (the output multiplier absorbs it)
        m, sh = qadd._quantize_multiplier_smaller_than_one_exp(
            2.0 * max(scale1, scale2) / ((1 << left_shift) * out_scale))
        p = dataclasses.replace(p, left_shift=left_shift, output_multiplier=m, output_shift=sh)
    return p


def _cancelling_pairs(params):
    """(x1, x2) with x1 + off1 within 3 of -(x2 + off2): nearly cancelling inputs, every x2."""
    x2 = np.repeat(np.arange(-128, 128), 7)
    x1 = -(x2 + params.input2_offset) - params.input1_offset + np.tile(np.arange(-3, 4), 256)
    keep = (x1 >= -128) & (x1 <= 127)
    return x1[keep].astype(np.int8).reshape(1, -1), x2[keep].astype(np.int8).reshape(1, -1)


def _case(i, params, n, rng):
    shape = (1, n)
    if n == 65536:  # every pair
        a, b = (g.astype(np.int8).reshape(shape) for g in np.meshgrid(np.arange(-128, 128), np.arange(-128, 128)))
    elif n == 0:
        a, b = _cancelling_pairs(params)
        shape = a.shape
    else:
        a = rng.integers(-128, 128, size=shape).astype(np.int8)
        b = rng.integers(-128, 128, size=shape).astype(np.int8)
        a[0, :2], b[0, :2] = (-128, 127)[: min(2, n)], (127, -128)[: min(2, n)]  # the extremes, mixed
    expected = qadd.add_int8(a, b, params)
    case = differential.Case("add", f"add case {i}: {a.size} elements {params}",
                             lambda: (add_op.add_int8(shape, shape, params), [a, b]), expected)
    case.params = params
    return case


def _batch():
    rng = np.random.default_rng(55)
    cases = [_case(i, _params(*row), SIZES[i], rng) for i, row in enumerate(PARAMS)]
    # non-TFLM multipliers: neither input has 2^30 / shift 0 (the MVE path falls back to scalar)
    odd = dataclasses.replace(_params(*PARAMS[3]), input1_multiplier=(1 << 30) + 12345, input1_shift=-1)
    cases.append(_case(len(cases), odd, 21, rng))
    return cases


def _mve_form(p: qadd.AddParams) -> str:
    """The loop ``add_mve`` in dtmm_add_s8.c picks for ``p`` (its selection, restated)."""
    ins = [(p.input1_multiplier, p.input1_shift), (p.input2_multiplier, p.input2_shift)]
    if (1 << 30, 0) not in ins or not 1 <= p.left_shift <= 22:
        return "scalar"
    other = ins[1] if ins[0] == (1 << 30, 0) else ins[0]
    if other != (1 << 30, 0) and other[1] > -1:
        return "scalar"
    out_e = -p.output_shift
    up = out_e == 0 or (p.act_min >= p.output_offset and out_e <= 22)
    sat = (p.act_min, p.act_max) == (-128, 127)
    out = ("sat" if sat else "clamp") if up else "exact_sat" if sat and out_e <= 22 else "exact"
    return ("half/" if other == (1 << 30, 0) else "gen/") + out


def test_cases_reach_every_form():
    forms = [_mve_form(c.params) for c in _batch()]
    outs = ("sat", "clamp", "exact", "exact_sat")
    assert set(forms) == {f"{i}/{o}" for i in ("half", "gen") for o in outs} | {"scalar"}
    assert {-c.params.output_shift for c in _batch()} >= {0, 24}
    assert all(add_op.uses_micro_kernel((1, 4), (1, 4), c.params, target=tvm.target.Target("c")) for c in _batch())


def test_host_portable_bit_exact(tmp_path):
    batch = _batch()
    got = differential.run_on_host(batch, tmp_path)
    assert differential.first_mismatch(batch, got) is None, differential.first_mismatch(batch, got)


@pytest.mark.parametrize("target, board", [("dtmm/cortex-m4", "mps2-an386"), ("dtmm/cortex-m55", "mps3-an547")])
def test_qemu_bit_exact(tmp_path, target, board):
    from dtmm_tvm.errors import DTMMError
    from dtmm_tvm.micro.qemu import require_toolchain

    try:
        require_toolchain()
    except DTMMError as err:
        pytest.skip(f"missing tools: {err}")
    batch = _batch()
    got = differential.run_on_board(batch, tmp_path, board, target)
    assert differential.first_mismatch(batch, got) is None, differential.first_mismatch(batch, got)
