"""int8 MUL and SUB as TIR PrimFuncs, bit-exact with TFLM (:mod:`dtmm_tvm.quant.mul`,
:mod:`dtmm_tvm.quant.sub`). Inputs broadcast with numpy rules, as TFLM's 6-D broadcast kernels do.
"""

from __future__ import annotations

import math

import numpy as np
from tvm import tirx
from tvm.script import tirx as T

from ..quant.add import AddParams
from ..quant.mul import MulParams
from .add import _broadcast_offset
from .softmax import TirFixedPoint, _track, scratch_slots


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


def _binary_int8(shape1, shape2, value, params, op: str, name: str) -> tirx.PrimFunc:
    shape1, shape2 = tuple(int(d) for d in shape1), tuple(int(d) for d in shape2)
    out_shape = tuple(int(d) for d in np.broadcast_shapes(shape1, shape2))
    n1, n2, n = math.prod(shape1), math.prod(shape2), math.prod(out_shape)
    attrs = {"global_symbol": name, "dtmm.op": op, "op_pattern": 8, "tirx.noalias": True}

    def build(n32: int, n64: int):
        @T.prim_func
        def binary(x1: T.Buffer(shape1, "int8"), x2: T.Buffer(shape2, "int8"), out: T.Buffer(out_shape, "int8")):
            T.func_attr(attrs)
            a = T.decl_buffer((n1,), "int8", data=x1.data)
            b = T.decl_buffer((n2,), "int8", data=x2.data)
            o = T.decl_buffer((n,), "int8", data=out.data)
            t32 = T.alloc_buffer((n32,), "int32")
            t64 = T.alloc_buffer((n64,), "int64")
            for i in range(n):
                o[i] = value(
                    T.Cast("int32", a[_broadcast_offset(i, out_shape, shape1)]),
                    T.Cast("int32", b[_broadcast_offset(i, out_shape, shape2)]),
                    params, t32, t64,
                )

        return binary

    return build(*scratch_slots(build))


def mul_int8(shape1, shape2, params: MulParams, name: str = "mul_int8") -> tirx.PrimFunc:
    """``f(x1: int8[shape1], x2: int8[shape2], out: int8[broadcast])`` computing TFLM's MUL."""
    return _binary_int8(shape1, shape2, _mul_value, params, "mul", name)


def sub_int8(shape1, shape2, params: AddParams, name: str = "sub_int8") -> tirx.PrimFunc:
    """``f(x1: int8[shape1], x2: int8[shape2], out: int8[broadcast])`` computing TFLM's SUB."""
    return _binary_int8(shape1, shape2, _sub_value, params, "sub", name)
