"""int8 MUL and SUB as TIR PrimFuncs, bit-exact with TFLM (:mod:`dtmm_tvm.quant.mul`,
:mod:`dtmm_tvm.quant.sub`). Inputs broadcast with numpy rules, as TFLM's 6-D broadcast kernels do.
"""

from __future__ import annotations

from tvm import tirx

from ..quant.add import AddParams
from ..quant.mul import MulParams
from .add import binary_int8
from .softmax import TirFixedPoint, _track


def _mul_value(a, b, p: MulParams, t32, t64):
    fx = _track(TirFixedPoint(t32, t64))
    product = fx.bind((a + p.input1_offset) * (b + p.input2_offset))
    raw = fx.multiply_by_quantized_multiplier(product, p.output_multiplier, p.output_shift)
    return tirx.Cast("int8", fx.clamp(raw + p.output_offset, p.act_min, p.act_max))


def _sub_value(a, b, p: AddParams, t32, t64):
    fx = _track(TirFixedPoint(t32, t64))
    shifted1 = (a + p.input1_offset) << p.left_shift
    shifted2 = (b + p.input2_offset) << p.left_shift
    scaled1 = fx.bind(fx.multiply_by_quantized_multiplier(shifted1, p.input1_multiplier, p.input1_shift))
    scaled2 = fx.bind(fx.multiply_by_quantized_multiplier(shifted2, p.input2_multiplier, p.input2_shift))
    raw = fx.multiply_by_quantized_multiplier(scaled1 - scaled2, p.output_multiplier, p.output_shift)
    return tirx.Cast("int8", fx.clamp(raw + p.output_offset, p.act_min, p.act_max))


def mul_int8(shape1, shape2, params: MulParams, name: str = "mul_int8") -> tirx.PrimFunc:
    """``f(x1: int8[shape1], x2: int8[shape2], out: int8[broadcast])`` computing TFLM's MUL."""
    return binary_int8(shape1, shape2, _mul_value, params, "mul", name)


def sub_int8(shape1, shape2, params: AddParams, name: str = "sub_int8") -> tirx.PrimFunc:
    """``f(x1: int8[shape1], x2: int8[shape2], out: int8[broadcast])`` computing TFLM's SUB."""
    return binary_int8(shape1, shape2, _sub_value, params, "sub", name)
