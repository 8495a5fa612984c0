"""TFLM's int8 MUL (``reference_integer_ops::Mul`` / ``BroadcastMul6DSlow``), exact in numpy.

``out = clamp(out_zp + MultiplyByQuantizedMultiplier((x1 - zp1) * (x2 - zp2), m, shift))`` with one
multiplier for ``double(s1) * double(s2) / double(s_out)`` (``CalculateOpDataMul``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fixed_point import multiply_by_quantized_multiplier, quantize_multiplier


@dataclass(frozen=True)
class MulParams:
    input1_offset: int  # -zero_point of input 1
    input2_offset: int
    output_offset: int  # +zero_point of the output
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int


def mul_params(scale1, zp1, scale2, zp2, out_scale, out_zp, act_min=-128, act_max=127) -> MulParams:
    s1, s2, so = (float(np.float32(s)) for s in (scale1, scale2, out_scale))
    mult, shift = quantize_multiplier(s1 * s2 / so)
    return MulParams(-int(zp1), -int(zp2), int(out_zp), mult, shift, int(act_min), int(act_max))


def mul_int8(x1, x2, p: MulParams) -> np.ndarray:
    """Numpy broadcasting, as ``BroadcastMul6DSlow``."""
    a = np.asarray(x1, np.int64) + p.input1_offset
    b = np.asarray(x2, np.int64) + p.input2_offset
    out = p.output_offset + multiply_by_quantized_multiplier(a * b, p.output_multiplier, p.output_shift)
    return np.clip(out, p.act_min, p.act_max).astype(np.int8)
