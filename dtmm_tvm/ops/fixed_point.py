"""TFLite's integer requantization as TIR expressions.

The same arithmetic as :mod:`dtmm_tvm.quant.fixed_point` (which is the numpy twin and documents the
semantics), written with ``tvm.tirx`` expressions so kernels built with TE or TVMScript emit it as
plain integer C: int64 products, C truncating division, arithmetic right shifts. No float, no
``q_multiply_shift`` (TVM's intrinsic rounds once, TFLM twice).
"""

from __future__ import annotations

from tvm import tirx

_I64 = "int64"


def _i64(value):
    return tirx.Cast(_I64, value) if not isinstance(value, int) else tirx.const(value, _I64)


def saturating_rounding_doubling_high_mul(a, b):
    """gemmlowp's SaturatingRoundingDoublingHighMul of two int32 expressions, as int32."""
    a64, b64 = _i64(a), _i64(b)
    ab = a64 * b64
    nudge = tirx.Select(ab >= tirx.const(0, _I64), tirx.const(1 << 30, _I64), tirx.const(1 - (1 << 30), _I64))
    high = tirx.truncdiv(ab + nudge, tirx.const(1 << 31, _I64))
    overflow = tirx.all(a64 == tirx.const(-(2**31), _I64), b64 == tirx.const(-(2**31), _I64))
    return tirx.Cast("int32", tirx.Select(overflow, tirx.const(2**31 - 1, _I64), high))


def rounding_divide_by_pot(x, exponent):
    """gemmlowp's RoundingDivideByPOT of an int32 expression by ``2**exponent`` (int32 expr)."""
    one = tirx.const(1, "int32")
    mask = (one << exponent) - one
    remainder = x & mask
    threshold = (mask >> one) + tirx.Select(x < tirx.const(0, "int32"), one, tirx.const(0, "int32"))
    return (x >> exponent) + tirx.Select(remainder > threshold, one, tirx.const(0, "int32"))


def multiply_by_quantized_multiplier(x, multiplier, shift):
    """TFLM's MultiplyByQuantizedMultiplier: int32 ``x`` scaled by Q31 ``multiplier`` and ``shift``."""
    zero = tirx.const(0, "int32")
    left_shift = tirx.Select(shift > zero, shift, zero)
    right_shift = tirx.Select(shift > zero, zero, zero - shift)
    return rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(x << left_shift, multiplier), right_shift
    )


def requantize(acc, multiplier, shift, output_zero_point, act_min: int, act_max: int):
    """int32 accumulator expression -> int8 expression: scale, add zero point, clamp."""
    scaled = multiply_by_quantized_multiplier(acc, multiplier, shift) + output_zero_point
    clamped = tirx.max(tirx.min(scaled, tirx.const(act_max, "int32")), tirx.const(act_min, "int32"))
    return tirx.Cast("int8", clamped)
