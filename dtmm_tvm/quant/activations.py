"""TFLM's int8 elementwise activations and (re)quantization, as exact numpy functions.

Each is a function of one int8 value, so evaluating it on :data:`INT8_VALUES` gives the
256-entry table the generic lookup kernel (:mod:`dtmm_tvm.ops.lookup_table`) indexes: the table is
computed here, at compile time, with TFLM's own arithmetic, so the kernel is bit-exact by
construction (CMSIS-NN and TFLM use lookup tables for the same ops).

Covered (the TFLM kernel each mirrors):

- RELU (``ReluQuantized``: requantize by input/output scale, clamp at the output zero point),
- RELU6 (``Relu6Quantized``: clamp the raw input to ``[zero, six]`` in the input's quantization),
- LEAKY_RELU (``QuantizeLeakyRelu``: one multiplier for x >= 0, one for alpha * x),
- QUANTIZE int8 -> int8 (``Requantize``), DEQUANTIZE int8 -> float32 (``Dequantize``),
- LOGISTIC / TANH / HARD_SWISH in :mod:`.logistic`, :mod:`.tanh`, :mod:`.hard_swish`.

Scales are float32 in TFLite; where TFLM divides them in float before promoting to double, so do we.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fixed_point import multiply_by_quantized_multiplier, quantize_multiplier

INT8_VALUES = np.arange(-128, 128, dtype=np.int64)


def _f32(v) -> np.float32:
    return np.float32(v)


@dataclass(frozen=True)
class RequantizeParams:
    """``x -> clamp(out_zp + MultiplyByQuantizedMultiplier(x - in_zp, multiplier, shift))``."""

    input_zero_point: int
    output_zero_point: int
    multiplier: int
    shift: int
    act_min: int = -128
    act_max: int = 127


def requantize_int8(x, p: RequantizeParams) -> np.ndarray:
    x = np.asarray(x, np.int64)
    out = p.output_zero_point + multiply_by_quantized_multiplier(x - p.input_zero_point, p.multiplier, p.shift)
    return np.clip(out, p.act_min, p.act_max).astype(np.int8)


def relu_params(in_scale, in_zp, out_scale, out_zp) -> RequantizeParams:
    """``CalculateReluOpData<int8_t>``: multiplier ``float(in / out)``, min = output zero point."""
    mult, shift = quantize_multiplier(float(_f32(_f32(in_scale) / _f32(out_scale))))
    return RequantizeParams(int(in_zp), int(out_zp), mult, shift, max(-128, int(out_zp)), 127)


def quantize_params(in_scale, in_zp, out_scale, out_zp) -> RequantizeParams:
    """QUANTIZE int8 -> int8 (``PrepareQuantizeReference``): multiplier ``double(in) / double(out)``."""
    mult, shift = quantize_multiplier(float(_f32(in_scale)) / float(_f32(out_scale)))
    return RequantizeParams(int(in_zp), int(out_zp), mult, shift)


def relu6_bounds(in_scale, in_zp) -> tuple[int, int]:
    """``Relu6Prepare``: ``zero`` = input zero point, ``six = FloatToQuantizedType(6, scale, zp)``."""
    q = float(_f32(6.0) / _f32(in_scale))  # round(): half away from zero
    six = int(np.floor(np.abs(q) + 0.5)) * (1 if q >= 0 else -1)
    return int(in_zp), int(np.clip(six + int(in_zp), -128, 127))


def relu6_int8(x, zero: int, six: int) -> np.ndarray:
    x = np.asarray(x, np.int64)
    return np.where(x > six, six, np.where(x < zero, zero, x)).astype(np.int8)


@dataclass(frozen=True)
class LeakyReluParams:
    input_zero_point: int
    output_zero_point: int
    multiplier_identity: int
    shift_identity: int
    multiplier_alpha: int
    shift_alpha: int


def leaky_relu_params(in_scale, in_zp, out_scale, out_zp, alpha) -> LeakyReluParams:
    """``CalculateOpDataLeakyRelu``: both multipliers are float32 quotients promoted to double."""
    alpha_real = float(_f32(_f32(_f32(in_scale) * _f32(alpha)) / _f32(out_scale)))
    identity_real = float(_f32(_f32(in_scale) / _f32(out_scale)))
    ma, sa = quantize_multiplier(alpha_real)
    mi, si = quantize_multiplier(identity_real)
    return LeakyReluParams(int(in_zp), int(out_zp), mi, si, ma, sa)


def leaky_relu_int8(x, p: LeakyReluParams) -> np.ndarray:
    """``QuantizeLeakyRelu<int8_t>`` (a negative alpha multiplies by |m| and negates)."""
    v = np.asarray(x, np.int64) - p.input_zero_point
    identity = multiply_by_quantized_multiplier(v, p.multiplier_identity, p.shift_identity)
    alpha = multiply_by_quantized_multiplier(v, abs(p.multiplier_alpha), p.shift_alpha)
    alpha = -alpha if p.multiplier_alpha < 0 else alpha
    out = p.output_zero_point + np.where(v >= 0, identity, alpha)
    return np.clip(out, -128, 127).astype(np.int8)


def dequantize_float32(x, scale, zero_point) -> np.ndarray:
    """``reference_ops::Dequantize``: ``float(double(scale) * (q - zero_point))``."""
    return (float(_f32(scale)) * (np.asarray(x, np.int64) - int(zero_point)).astype(np.float64)).astype(np.float32)


def quantize_float32(x, scale, zero_point) -> np.ndarray:
    """``reference_ops::AffineQuantize`` float32 -> int8: ``round(x / scale)`` in float32, half
    away from zero, plus the zero point, clamped."""
    q = (np.asarray(x, np.float32) / _f32(scale)).astype(np.float64)  # float32 quotient, exact in double
    rounded = np.sign(q) * np.floor(np.abs(q) + 0.5)
    return np.clip(rounded + int(zero_point), -128, 127).astype(np.int8)
