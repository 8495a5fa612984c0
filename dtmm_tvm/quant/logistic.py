"""TFLM's int8 LOGISTIC and TANH (``reference_integer_ops::Logistic`` / ``Tanh``), exact in numpy.

Both rescale ``x - zero_point`` to a Q4.27 value with a multiplier from the input scale
(``frexp`` of ``scale * 2**27``), saturate beyond ``CalculateInputRadius(4, shift)``, and evaluate
gemmlowp's fixed-point ``logistic`` / ``tanh`` (built on ``exp_on_negative_values`` and a
Newton-Raphson division, shared with SOFTMAX in :mod:`.softmax`). LOGISTIC's output is fixed at
scale 1/256, zero point -128; TANH's at 1/128, 0 (what the converter writes and TFLM assumes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .fixed_point import multiply_by_quantized_multiplier, rounding_divide_by_pot
from .softmax import INT32_MAX, NumpyFixedPoint, _wrap32, exp_on_negative_values, one_over_one_plus_x_for_x_in_0_1

INPUT_INTEGER_BITS = 4
_48_OVER_17 = 1515870810
_NEG_32_OVER_17 = -1010580540

#: (scale, zero point) TFLM's int8 kernels produce.
LOGISTIC_OUTPUT = (1.0 / 256, -128)
TANH_OUTPUT = (1.0 / 128, 0)


@dataclass(frozen=True)
class SigmoidParams:
    input_zero_point: int
    input_multiplier: int
    input_left_shift: int
    input_range_radius: int


def sigmoid_params(in_scale, in_zp) -> SigmoidParams:
    """``CalculateArithmeticOpDataLogistic`` / TANH's ``CalculateArithmeticOpData`` for int8."""
    real = float(np.float32(in_scale)) * float(1 << (31 - INPUT_INTEGER_BITS))
    q, left_shift = math.frexp(real)
    multiplier = int(math.floor(q * (1 << 31) + 0.5))  # TfLiteRound of a positive value
    radius = math.floor(((1 << INPUT_INTEGER_BITS) - 1) * (1 << (31 - INPUT_INTEGER_BITS)) / 2.0**left_shift)
    return SigmoidParams(int(in_zp), multiplier, left_shift, int(radius))


def _input_q4(x, p: SigmoidParams):
    v = np.asarray(x, np.int64) - p.input_zero_point
    inner = np.clip(v, -p.input_range_radius + 1, p.input_range_radius - 1)  # saturated cases masked later
    return v, multiply_by_quantized_multiplier(inner, p.input_multiplier, p.input_left_shift)


def gemmlowp_logistic(a, integer_bits: int = INPUT_INTEGER_BITS):
    """gemmlowp ``logistic`` of a Q(integer_bits) raw int32 -> Q0.31 raw."""
    fx = NumpyFixedPoint
    a = np.asarray(a, np.int64)
    positive = a > 0
    abs_input = np.where(positive, a, _wrap32(-a))
    result_positive = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(_wrap32(-abs_input), fx, integer_bits), fx)
    result_negative = _wrap32(INT32_MAX - result_positive)
    return np.where(a == 0, 1 << 30, np.where(positive, result_positive, result_negative))


def _one_minus_x_over_one_plus_x_for_x_in_0_1(a, fx):
    half_denominator = fx.rounding_half_sum(a, fx.const(INT32_MAX))
    x = fx.add(fx.const(_48_OVER_17), fx.mul(half_denominator, fx.const(_NEG_32_OVER_17)))
    for _ in range(3):
        one_minus = fx.sub(fx.const(1 << 29), fx.mul(half_denominator, x))
        x = fx.add(x, fx.mul_pot(fx.mul(x, one_minus), 2))
    return fx.mul_pot(fx.sub(x, fx.const(1 << 29)), 2)


def gemmlowp_tanh(a, integer_bits: int = INPUT_INTEGER_BITS):
    """gemmlowp ``tanh`` of a Q(integer_bits) raw int32 -> Q0.31 raw."""
    fx = NumpyFixedPoint
    a = np.asarray(a, np.int64)
    negative = a < 0
    n = np.where(negative, a, _wrap32(-a))
    # neg_tanh_on_negative_values: ExactMulByPot<1> keeps the raw value, one more integer bit.
    t = _one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, fx, integer_bits + 1), fx)
    return np.where(a == 0, 0, np.where(negative, _wrap32(-t), t))


def logistic_int8(x, p: SigmoidParams) -> np.ndarray:
    v, q4 = _input_q4(x, p)
    out = rounding_divide_by_pot(gemmlowp_logistic(q4), 31 - 8) - 128
    out = np.where(v <= -p.input_range_radius, -128, np.where(v >= p.input_range_radius, 127, out))
    return np.clip(out, -128, 127).astype(np.int8)


def tanh_int8(x, p: SigmoidParams) -> np.ndarray:
    v, q4 = _input_q4(x, p)
    out = rounding_divide_by_pot(gemmlowp_tanh(q4), 31 - 7)
    out = np.where(v <= -p.input_range_radius, -128, np.where(v >= p.input_range_radius, 127, out))
    return np.clip(out, -128, 127).astype(np.int8)
