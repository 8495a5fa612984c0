"""TFLM's int8 SUB (``reference_ops::SubElementwise`` / ``BroadcastSubRecursiveDimensions``).

The arithmetic is ADD's (:mod:`.add`) with the second scaled input subtracted, but the
parameters differ in one detail that changes results: ``CalculateOpDataSub`` forms
``twice_max_input_scale`` and the three real multipliers in float32 before promoting them to
double, where ADD works in double throughout.
"""

from __future__ import annotations

import numpy as np

from .add import ADD_LEFT_SHIFT, AddParams, _quantize_multiplier_smaller_than_one_exp
from .fixed_point import multiply_by_quantized_multiplier


def sub_params(scale1, zp1, scale2, zp2, out_scale, out_zp, act_min=-128, act_max=127) -> AddParams:
    """:class:`~dtmm_tvm.quant.add.AddParams` of TFLM's int8 SUB."""
    f32 = np.float32
    s1, s2, so = f32(scale1), f32(scale2), f32(out_scale)
    twice_max = f32(2) * max(s1, s2)
    m1, sh1 = _quantize_multiplier_smaller_than_one_exp(float(f32(s1 / twice_max)))
    m2, sh2 = _quantize_multiplier_smaller_than_one_exp(float(f32(s2 / twice_max)))
    mo, sho = _quantize_multiplier_smaller_than_one_exp(float(f32(twice_max / f32(f32(1 << ADD_LEFT_SHIFT) * so))))
    return AddParams(-int(zp1), -int(zp2), int(out_zp), ADD_LEFT_SHIFT, m1, sh1, m2, sh2, mo, sho, int(act_min), int(act_max))


def sub_int8(x1, x2, p: AddParams) -> np.ndarray:
    a = (np.asarray(x1, np.int64) + p.input1_offset) * (1 << p.left_shift)
    b = (np.asarray(x2, np.int64) + p.input2_offset) * (1 << p.left_shift)
    scaled1 = multiply_by_quantized_multiplier(a, p.input1_multiplier, p.input1_shift)
    scaled2 = multiply_by_quantized_multiplier(b, p.input2_multiplier, p.input2_shift)
    raw = multiply_by_quantized_multiplier(scaled1 - scaled2, p.output_multiplier, p.output_shift) + p.output_offset
    return np.clip(raw, p.act_min, p.act_max).astype(np.int8)
