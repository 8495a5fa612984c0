"""TFLM's int8 ADD: parameters (``CalculateOpDataAdd``) and a bit-exact numpy reference.

TFLM rescales both inputs to a common fixed-point scale before adding: each zero-point corrected
input is shifted left by 20 bits, multiplied by ``scale_i / (2 * max(scale1, scale2))`` (a Q31
multiplier <= 0.5 with a non-positive shift), the two are added, and the sum is scaled by
``2 * max_scale / (2**20 * output_scale)`` into the output. Every multiply is the double-rounding
``MultiplyByQuantizedMultiplierSmallerThanOneExp``. Broadcasting follows numpy rules, which is what
``BroadcastAdd6DSlow`` computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fixed_point import multiply_by_quantized_multiplier, quantize_multiplier

#: ``data->left_shift`` for int8 outputs (15 is the int16 value).
ADD_LEFT_SHIFT = 20


def _quantize_multiplier_smaller_than_one_exp(real: float) -> tuple[int, int]:
    """``QuantizeMultiplierSmallerThanOneExp``: a Q31 multiplier and a non-positive shift."""
    if not 0.0 < real < 1.0:
        raise ValueError(f"ADD rescaling multiplier {real!r} is outside (0, 1)")
    multiplier, shift = quantize_multiplier(real)
    if shift > 0:
        raise ValueError(f"ADD rescaling multiplier {real!r} gave a positive shift")
    return multiplier, shift


@dataclass(frozen=True)
class AddParams:
    """Everything TFLM's int8 ADD Prepare computes (``OpDataAdd``)."""

    input1_offset: int  # -zero_point of input 1
    input2_offset: int
    output_offset: int  # +zero_point of the output
    left_shift: int
    input1_multiplier: int
    input1_shift: int  # <= 0
    input2_multiplier: int
    input2_shift: int
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int


def add_params(
    scale1: float,
    zp1: int,
    scale2: float,
    zp2: int,
    out_scale: float,
    out_zp: int,
    act_min: int = -128,
    act_max: int = 127,
) -> AddParams:
    """Compute :class:`AddParams` from the TFLite scales and zero points like ``CalculateOpDataAdd``.

    Scales are rounded to float32 first (TFLite stores them as float) and then promoted to double,
    as TFLM does. ``act_min``/``act_max`` come from :func:`activation_range`.
    """
    s1, s2, so = (float(np.float32(s)) for s in (scale1, scale2, out_scale))
    twice_max_input_scale = 2.0 * max(s1, s2)
    m1, sh1 = _quantize_multiplier_smaller_than_one_exp(s1 / twice_max_input_scale)
    m2, sh2 = _quantize_multiplier_smaller_than_one_exp(s2 / twice_max_input_scale)
    mo, sho = _quantize_multiplier_smaller_than_one_exp(twice_max_input_scale / ((1 << ADD_LEFT_SHIFT) * so))
    return AddParams(
        input1_offset=-int(zp1),
        input2_offset=-int(zp2),
        output_offset=int(out_zp),
        left_shift=ADD_LEFT_SHIFT,
        input1_multiplier=m1,
        input1_shift=sh1,
        input2_multiplier=m2,
        input2_shift=sh2,
        output_multiplier=mo,
        output_shift=sho,
        act_min=int(act_min),
        act_max=int(act_max),
    )


def add_int8(x1: np.ndarray, x2: np.ndarray, params: AddParams) -> np.ndarray:
    """TFLM's ``reference_integer_ops::AddFunc`` on int8 arrays (numpy broadcasting).

    Returns
    -------
    numpy.ndarray
        int8 array of the broadcast shape.
    """
    p = params
    a = (np.asarray(x1, dtype=np.int64) + p.input1_offset) * (1 << p.left_shift)
    b = (np.asarray(x2, dtype=np.int64) + p.input2_offset) * (1 << p.left_shift)
    scaled1 = multiply_by_quantized_multiplier(a, p.input1_multiplier, p.input1_shift)
    scaled2 = multiply_by_quantized_multiplier(b, p.input2_multiplier, p.input2_shift)
    raw = multiply_by_quantized_multiplier(scaled1 + scaled2, p.output_multiplier, p.output_shift) + p.output_offset
    return np.clip(raw, p.act_min, p.act_max).astype(np.int8)
