"""TFLM's int8 HARD_SWISH (``reference_ops::HardSwish<int8_t>``), exact in numpy.

All arithmetic is int16 fixed point: the input is moved to a "hires" scale (x * 2**7), multiplied
by a 16-bit output multiplier, and by a "reluish" factor that maps [-3, 3] to [0, 1]; the product
is shifted to the output scale. Parameters come from ``HardSwishPrepare`` (float32 scale
quotients, ``QuantizeMultiplier`` then ``DownScaleInt32ToInt16Multiplier``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fixed_point import quantize_multiplier


@dataclass(frozen=True)
class HardSwishParams:
    input_zero_point: int
    output_zero_point: int
    reluish_multiplier_fixedpoint_int16: int
    reluish_multiplier_exponent: int
    output_multiplier_fixedpoint_int16: int
    output_multiplier_exponent: int


def _downscale_to_int16(m: int) -> int:
    if m >= 2**31 - 1 - (1 << 15):
        return 2**15 - 1
    return (m + (1 << 15)) >> 16


def hard_swish_params(in_scale, in_zp, out_scale, out_zp) -> HardSwishParams:
    f32 = np.float32
    hires_input_scale = f32(1.0 / 128.0) * f32(in_scale)
    reluish_scale = f32(3.0) / f32(32768.0)
    out_m, out_e = quantize_multiplier(float(f32(hires_input_scale / f32(out_scale))))
    rel_m, rel_e = quantize_multiplier(float(f32(hires_input_scale / reluish_scale)))
    if out_e > 0:
        raise ValueError("HARD_SWISH output scale is too small for TFLM's int8 kernel (output exponent > 0)")
    return HardSwishParams(int(in_zp), int(out_zp), _downscale_to_int16(rel_m), rel_e, _downscale_to_int16(out_m), out_e)


def _wrap16(v: int) -> int:
    return ((int(v) + (1 << 15)) & 0xFFFF) - (1 << 15)


def _srdhm16(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul on int16."""
    if a == b == -(1 << 15):
        return (1 << 15) - 1
    ab = a * b
    nudge = (1 << 14) if ab >= 0 else 1 - (1 << 14)
    return _wrap16(_cdiv(ab + nudge, 1 << 15))


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _sdhm16(a: int, b: int) -> int:
    """TFLite's non-rounding SaturatingDoublingHighMul on int16."""
    if a == b == -(1 << 15):
        return (1 << 15) - 1
    return _wrap16(_cdiv(a * b, 1 << 15))


def _sat_left_shift16(v: int, amount: int) -> int:
    return max(-(1 << 15), min((1 << 15) - 1, v * (1 << amount)))


def _rdbpot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def _hard_swish_one(q: int, p: HardSwishParams) -> int:
    input_value = _wrap16(q - p.input_zero_point)
    hires = _wrap16(input_value * (1 << 7))
    preshift_output = _srdhm16(hires, p.output_multiplier_fixedpoint_int16)
    reluish = hires
    if p.reluish_multiplier_exponent > 0:
        reluish = _sat_left_shift16(reluish, p.reluish_multiplier_exponent - 1)
    reluish = _srdhm16(reluish, p.reluish_multiplier_fixedpoint_int16)
    if p.reluish_multiplier_exponent > 0:
        reluish = _sat_left_shift16(reluish, 1)
    if p.reluish_multiplier_exponent < 0:
        reluish = _rdbpot(reluish, -p.reluish_multiplier_exponent)
    reluish = _wrap16((reluish + (1 << 15)) >> 1)
    out = _rdbpot(_sdhm16(reluish, preshift_output), -p.output_multiplier_exponent)
    out = _wrap16(out + p.output_zero_point)
    return max(-128, min(127, out))


def hard_swish_int8(x, p: HardSwishParams) -> np.ndarray:
    """Elementwise; evaluated once per distinct int8 value."""
    x = np.asarray(x, np.int8)
    table = np.array([_hard_swish_one(q, p) for q in range(-128, 128)], np.int8)
    return table[x.astype(np.int64) + 128]
