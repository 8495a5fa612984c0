"""TFLM's int8 -> int8 SOFTMAX: parameters and a bit-exact numpy reference.

For int8 input and int8 output TFLM's ``SoftmaxEval`` calls the gemmlowp-style
``reference_ops::Softmax<int8_t, int8_t>`` (the LUT path is only for int16 input):

1. ``PreprocessSoftmaxScaling(beta, input_scale, kScaledDiffIntegerBits=5)`` gives a Q31 multiplier
   and a left shift turning ``x - max(x)`` into a Q5.26 value; ``diff_min`` (``-CalculateInputRadius``)
   marks differences whose exponential is negligible (their output is -128).
2. ``exp_on_negative_values`` (Q5.26 -> Q0.31) per element, summed in Q12.19
   (``kAccumulationIntegerBits = 12``).
3. ``GetReciprocal`` of the sum (count leading zeros + ``one_over_one_plus_x_for_x_in_0_1``,
   a Newton-Raphson division) and a rounding shift by ``num_bits_over_unit + 23`` to int8.

The gemmlowp fixed-point functions are written once, against a small arithmetic interface ``fx``
(:class:`NumpyFixedPoint` here; :mod:`dtmm_tvm.ops.softmax` supplies the TIR one), so the numpy
reference and the TIR kernel are the same code. All values are int32 in gemmlowp's ``raw()`` sense.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import fixed_point as _fp
from .fixed_point import quantize_multiplier

#: Integer bits of the rescaled input difference (``FixedPoint<int32_t, 5>``).
SCALED_DIFF_INTEGER_BITS = 5
#: Integer bits of the sum of exponentials (``FixedPoint<int32_t, 12>``).
ACCUMULATION_INTEGER_BITS = 12
INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)

# gemmlowp constants: exp(-2**k) for the barrel shifter, Taylor and Newton-Raphson coefficients.
_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401), (4, 242))
_EXP_MINUS_ONE_EIGHTH = 1895147668  # exp(-1/8) in Q0.31
_ONE_THIRD = 715827883  # 1/3 in Q0.31
_48_OVER_17 = 1515870810  # in Q2.29
_NEG_32_OVER_17 = -1010580540  # in Q2.29


@dataclass(frozen=True)
class SoftmaxParams:
    """``SoftmaxParams`` of TFLM's int8 path (the output is fixed at scale 1/256, zero point -128)."""

    input_multiplier: int
    input_left_shift: int
    diff_min: int


def softmax_params(beta: float, input_scale: float, out_scale: float = 1.0 / 256, out_zp: int = -128) -> SoftmaxParams:
    """Compute :class:`SoftmaxParams` like ``CalculateSoftmaxParams`` for int8 -> int8.

    ``beta`` and ``input_scale`` are float32 in TFLite and promoted to double, as in TFLM.

    Raises
    ------
    ValueError
        If the output quantization is not TFLM's required (1/256, -128).
    """
    if int(out_zp) != -128 or np.float32(out_scale) != np.float32(1.0 / 256):
        raise ValueError(f"int8 softmax output must have scale 1/256 and zero point -128, got {out_scale}, {out_zp}")
    # PreprocessSoftmaxScaling (double rounding build): cap at 2**31 - 1, then QuantizeMultiplierGreaterThanOne.
    real = min(
        float(np.float32(beta)) * float(np.float32(input_scale)) * float(1 << (31 - SCALED_DIFF_INTEGER_BITS)),
        float((1 << 31) - 1),
    )
    multiplier, left_shift = quantize_multiplier(real)
    if left_shift < 0:
        raise ValueError(f"softmax beta * input_scale = {real / 2**26!r} is too small for TFLM's int8 kernel")
    # CalculateInputRadius(5, left_shift, 31): floor((2**5 - 1) * 2**26 / 2**left_shift).
    radius = int(np.floor(1.0 * ((1 << SCALED_DIFF_INTEGER_BITS) - 1) * (1 << (31 - SCALED_DIFF_INTEGER_BITS)) / (1 << left_shift)))
    return SoftmaxParams(input_multiplier=multiplier, input_left_shift=left_shift, diff_min=-radius)


# ---------------------------------------------------------------------------------------------
# gemmlowp fixed point, generic over the arithmetic backend ``fx``
# ---------------------------------------------------------------------------------------------


def exp_on_interval_between_negative_one_quarter_and_0_excl(a, fx):
    """exp(a) for a Q0.31 ``a`` in [-1/4, 0): 4th-order Taylor expansion around -1/8."""
    x = fx.bind(fx.add(a, fx.const(1 << 28)))  # a + 1/8
    x2 = fx.bind(fx.mul(x, x))
    x3 = fx.bind(fx.mul(x2, x))
    x4 = fx.bind(fx.mul(x2, x2))
    x4_over_4 = fx.mul_pot(x4, -2)
    poly = fx.mul_pot(fx.add(fx.mul(fx.add(x4_over_4, x3), fx.const(_ONE_THIRD)), x2), -1)
    c = fx.const(_EXP_MINUS_ONE_EIGHTH)
    return fx.bind(fx.add(c, fx.mul(c, fx.add(x, poly))))


def exp_on_negative_values(a, fx, integer_bits: int = SCALED_DIFF_INTEGER_BITS):
    """gemmlowp's ``exp_on_negative_values``: Q(integer_bits) input <= 0 -> Q0.31 output."""
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    a_mod_quarter_minus_one_quarter = fx.bind(fx.sub(fx.bit_and(a, one_quarter - 1), fx.const(one_quarter)))
    # Rescale<0> of a Q(integer_bits) value: saturating multiply by 2**integer_bits.
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        fx.bind(fx.mul_pot(a_mod_quarter_minus_one_quarter, integer_bits)), fx
    )
    remainder = fx.bind(fx.sub(a_mod_quarter_minus_one_quarter, a))
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit = 1 << (fractional_bits + exponent)
            result = fx.bind(fx.select(fx.ne0(fx.bit_and(remainder, bit)), fx.mul(result, fx.const(multiplier)), result))
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))  # exp(x) for x < -32 is 0
        result = fx.select(fx.lt(a, fx.const(clamp)), fx.const(0), result)
    return fx.bind(fx.select(fx.eq0(a), fx.const(INT32_MAX), result))


def one_over_one_plus_x_for_x_in_0_1(a, fx):
    """gemmlowp's ``one_over_one_plus_x_for_x_in_0_1``: Q0.31 ``a`` -> Q0.31 ``1 / (1 + a)``."""
    half_denominator = fx.bind(fx.rounding_half_sum(a, fx.const(INT32_MAX)))  # (1 + a) / 2
    x = fx.bind(fx.add(fx.const(_48_OVER_17), fx.mul(half_denominator, fx.const(_NEG_32_OVER_17))))  # Q2.29
    for _ in range(3):
        half_denominator_times_x = fx.mul(half_denominator, x)  # Q2.29
        one_minus = fx.sub(fx.const(1 << 29), half_denominator_times_x)
        x = fx.bind(fx.add(x, fx.mul_pot(fx.mul(x, one_minus), 2)))  # Q4 product rescaled to Q2
    # ExactMulByPot<-1> (Q2 -> Q1, same raw) then Rescale<0>: saturating doubling.
    return fx.bind(fx.mul_pot(x, 1))


def get_reciprocal(x, fx, x_integer_digits: int = ACCUMULATION_INTEGER_BITS):
    """TFLite's ``GetReciprocal``: ``(raw Q0.31 reciprocal, num_bits_over_unit)`` of a positive ``x``."""
    headroom_plus_one = fx.bind(fx.clz(x))
    num_bits_over_unit = fx.bind(fx.sub(fx.const(x_integer_digits), headroom_plus_one))
    shifted_sum_minus_one = fx.bind(fx.shl_minus_one(x, headroom_plus_one))
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one, fx), num_bits_over_unit


def rescaled_diff(diff, params: SoftmaxParams, fx):
    """``MultiplyByQuantizedMultiplierGreaterThanOne(diff, multiplier, left_shift)``: Q5.26 input.

    ``diff`` must already be clamped to ``[diff_min, 0]`` so the left shift cannot overflow.
    """
    return fx.bind(fx.mul(fx.shl(diff, params.input_left_shift), fx.const(params.input_multiplier)))


def exp_term(exp_q0, fx):
    """One summand of ``sum_of_exps``: ``Rescale<12>`` of a Q0.31 exponential."""
    return fx.rdbpot(exp_q0, ACCUMULATION_INTEGER_BITS)


def output_value(reciprocal, exp_q0, exponent, fx):
    """int8 output of one element: ``RoundingDivideByPOT(reciprocal * exp, exponent) - 128``, clamped."""
    unsat = fx.rdbpot_var(fx.mul(reciprocal, exp_q0), exponent)
    return fx.clamp(fx.add(unsat, fx.const(-128)), -128, 127)


# ---------------------------------------------------------------------------------------------
# numpy backend and reference
# ---------------------------------------------------------------------------------------------


def _wrap32(v):
    """Two's complement wrap of int64 values to int32 (gemmlowp's raw +/- on int32)."""
    return ((np.asarray(v, dtype=np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


class NumpyFixedPoint:
    """gemmlowp int32 fixed-point primitives on int64 numpy arrays holding int32 values."""

    @staticmethod
    def bind(v):
        return v

    @staticmethod
    def const(v):
        return np.int64(v)

    @staticmethod
    def add(a, b):
        return _wrap32(np.asarray(a, np.int64) + b)

    @staticmethod
    def sub(a, b):
        return _wrap32(np.asarray(a, np.int64) - b)

    @staticmethod
    def mul(a, b):
        """FixedPoint product: SaturatingRoundingDoublingHighMul."""
        return _fp.saturating_rounding_doubling_high_mul(a, b)

    @staticmethod
    def bit_and(a, mask: int):
        return np.asarray(a, np.int64) & mask

    @staticmethod
    def shl(a, n: int):
        return _wrap32(np.asarray(a, np.int64) << n)

    @staticmethod
    def mul_pot(a, exponent: int):
        """SaturatingRoundingMultiplyByPOT<exponent>."""
        a = np.asarray(a, np.int64)
        if exponent == 0:
            return a
        if exponent < 0:
            return _fp.rounding_divide_by_pot(a, -exponent)
        threshold = (1 << (31 - exponent)) - 1
        return np.where(a > threshold, INT32_MAX, np.where(a < -threshold, INT32_MIN, a << exponent))

    @staticmethod
    def rdbpot(a, exponent: int):
        return _fp.rounding_divide_by_pot(a, exponent)

    @staticmethod
    def rdbpot_var(a, exponent):
        return _fp.rounding_divide_by_pot(a, exponent)

    @staticmethod
    def rounding_half_sum(a, b):
        total = np.asarray(a, np.int64) + b
        num = total + np.where(total >= 0, 1, -1)
        return np.sign(num) * (np.abs(num) // 2)  # C truncating division

    @staticmethod
    def select(cond, a, b):
        return np.where(cond, a, b)

    @staticmethod
    def eq0(a):
        return np.asarray(a) == 0

    @staticmethod
    def ne0(a):
        return np.asarray(a) != 0

    @staticmethod
    def lt(a, b):
        return np.asarray(a) < b

    @staticmethod
    def clz(x):
        """Count leading zeros of a positive int32 viewed as uint32."""
        _, bit_length = np.frexp(np.maximum(np.asarray(x, np.int64), 1).astype(np.float64))
        return 32 - bit_length.astype(np.int64)

    @staticmethod
    def shl_minus_one(x, n):
        """``int32((uint32(x) << n) - (1u << 31))``."""
        return _wrap32(((np.asarray(x, np.int64) << n) & 0xFFFFFFFF) - (1 << 31))

    @staticmethod
    def clamp(a, lo: int, hi: int):
        return np.clip(a, lo, hi)


def softmax_int8(x: np.ndarray, params: SoftmaxParams) -> np.ndarray:
    """TFLM's ``reference_ops::Softmax<int8_t, int8_t>`` over the last axis of an int8 array."""
    fx = NumpyFixedPoint
    x = np.asarray(x, dtype=np.int8)
    rows = x.reshape(-1, x.shape[-1]).astype(np.int64)
    diff = rows - rows.max(axis=1, keepdims=True)
    in_range = diff >= params.diff_min
    exp_q0 = exp_on_negative_values(rescaled_diff(np.maximum(diff, params.diff_min), params, fx), fx)
    sum_of_exps = np.where(in_range, exp_term(exp_q0, fx), 0).sum(axis=1, keepdims=True)
    reciprocal, num_bits_over_unit = get_reciprocal(sum_of_exps, fx)
    exponent = num_bits_over_unit + 31 - 8
    if np.any((exponent < 0) | (exponent > 31)):
        raise ValueError("softmax row too long for TFLM's int8 kernel (TFLITE_CHECK on the exponent)")
    out = np.where(in_range, output_value(reciprocal, exp_q0, exponent, fx), -128)
    return out.astype(np.int8).reshape(x.shape)
