"""TFLite / TFLM integer requantization semantics in numpy.

TFLM (without TFLITE_SINGLE_ROUNDING, its default) requantizes an int32 accumulator with
``MultiplyByQuantizedMultiplier``: a saturating rounding doubling high multiply by a Q31 multiplier
followed by a rounding right shift. Everything here mirrors
``tensorflow/lite/kernels/internal/common.h`` and ``quantization_util.cc`` bit for bit; the TIR twin
lives in :mod:`dtmm_tvm.ops.fixed_point`.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """Split a real multiplier into a Q31 ``multiplier`` and a power-of-two ``shift``.

    Mirrors TFLite's ``QuantizeMultiplier``: ``real = multiplier * 2**(shift - 31)``.
    """
    real_multiplier = float(real_multiplier)
    if real_multiplier == 0.0:
        return 0, 0
    fraction, shift = math.frexp(real_multiplier)
    scaled = fraction * (1 << 31)
    q = int(math.copysign(math.floor(abs(scaled) + 0.5), scaled))  # TfLiteRound: half away from zero
    if q == (1 << 31):
        q //= 2
        shift += 1
    if shift < -31:
        shift, q = 0, 0
    if shift > 30:
        shift, q = 30, (1 << 31) - 1
    return q, shift


def quantize_multiplier_array(real_multipliers) -> tuple[np.ndarray, np.ndarray]:
    """Vector form of :func:`quantize_multiplier`: int32 multipliers and int32 shifts."""
    pairs = [quantize_multiplier(float(m)) for m in np.asarray(real_multipliers, dtype=np.float64).ravel()]
    mult = np.array([p[0] for p in pairs], dtype=np.int32)
    shift = np.array([p[1] for p in pairs], dtype=np.int32)
    return mult, shift


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp's SaturatingRoundingDoublingHighMul on int32 arrays (broadcasting)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    total = ab + nudge
    # C's int64 division truncates toward zero.
    result = np.where(total >= 0, total // (1 << 31), -((-total) // (1 << 31)))
    return np.where(overflow, INT32_MAX, result).astype(np.int64)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT: round half away from zero of ``x / 2**exponent``."""
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0).astype(np.int64)
    return (x >> exponent) + (remainder > threshold).astype(np.int64)


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """TFLM's ``MultiplyByQuantizedMultiplier`` (double rounding) on int32 values, as int64."""
    x = np.asarray(x, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    left_shift = np.maximum(shift, 0)
    right_shift = np.maximum(-shift, 0)
    # TFLM multiplies in int32; the shifted value stays in range for valid models.
    shifted = (x * (np.int64(1) << left_shift)).astype(np.int32).astype(np.int64)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right_shift)


def requantize(acc, multiplier, shift, output_zero_point: int, act_min: int, act_max: int) -> np.ndarray:
    """int32 accumulator -> int8: scale, add the output zero point, clamp."""
    out = multiply_by_quantized_multiplier(acc, multiplier, shift) + int(output_zero_point)
    return np.clip(out, act_min, act_max).astype(np.int8)


def tflite_round(value) -> int:
    """TfLiteRound on a float32: round half away from zero."""
    value = np.float32(value)
    return int(np.sign(value) * np.floor(np.abs(value) + np.float32(0.5)))


def activation_range(activation: str | None, scale, zero_point: int, qmin: int = -128,
                     qmax: int = 127) -> tuple[int, int]:
    """TFLite's ``CalculateActivationRangeQuantized``: the int8 clamp of a fused activation.

    Each bound is ``zero_point + TfLiteRound(f / scale)`` computed in float32, as TFLite does.

    Raises
    ------
    UnsupportedOpError
        For activations without an integer clamp (TANH, SIGN_BIT).
    """
    from ..errors import UnsupportedOpError

    scale = np.float32(np.asarray(scale).reshape(-1)[0])

    def quantize(f: float) -> int:
        return int(zero_point) + tflite_round(np.float32(f) / scale)

    if activation in (None, "NONE", 0):
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, quantize(0.0)), qmax
    if activation == "RELU6":
        return max(qmin, quantize(0.0)), min(qmax, quantize(6.0))
    if activation == "RELU_N1_TO_1":
        return max(qmin, quantize(-1.0)), min(qmax, quantize(1.0))
    raise UnsupportedOpError(f"fused activation {activation} has no integer lowering")
