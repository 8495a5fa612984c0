"""int8 ADD as a TIR PrimFunc, bit-exact with TFLM (see :mod:`dtmm_tvm.quant.add`)."""

from __future__ import annotations

import math

import numpy as np
from tvm import tirx
from tvm.script import tirx as T

from ..quant.add import AddParams
from .softmax import TirFixedPoint, scratch_slots, _track


def _broadcast_offset(i, out_shape, in_shape):
    """Flat offset into an input of ``in_shape`` for flat output index ``i`` (numpy broadcasting)."""
    if tuple(in_shape) == tuple(out_shape):
        return i
    lead = len(out_shape) - len(in_shape)
    offset, in_stride = 0, 1
    for k in range(len(in_shape) - 1, -1, -1):
        if in_shape[k] != 1:
            out_stride = math.prod(out_shape[lead + k + 1 :])
            offset = offset + tirx.floormod(tirx.floordiv(i, out_stride), out_shape[lead + k]) * in_stride
        in_stride *= in_shape[k]
    return offset


def _add_value(a, b, p: AddParams, t32, t64):
    """``reference_integer_ops::AddFunc`` on two int32-widened int8 values."""
    fx = _track(TirFixedPoint(t32, t64))
    shifted1 = (a + p.input1_offset) << p.left_shift
    shifted2 = (b + p.input2_offset) << p.left_shift
    scaled1 = fx.bind(fx.multiply_by_quantized_multiplier(shifted1, p.input1_multiplier, p.input1_shift))
    scaled2 = fx.bind(fx.multiply_by_quantized_multiplier(shifted2, p.input2_multiplier, p.input2_shift))
    raw = fx.multiply_by_quantized_multiplier(scaled1 + scaled2, p.output_multiplier, p.output_shift)
    return tirx.Cast("int8", fx.clamp(raw + p.output_offset, p.act_min, p.act_max))


def add_int8(shape1, shape2, params: AddParams, name: str = "add_int8") -> tirx.PrimFunc:
    """Build ``out = ADD(x1, x2)`` for int8 tensors with TFLM's integer arithmetic.

    Parameters
    ----------
    shape1, shape2
        Shapes of the two inputs; they broadcast with numpy rules (TFLM's ``BroadcastAdd6DSlow``
        computes the same), the output has the broadcast shape.
    params
        From :func:`dtmm_tvm.quant.add.add_params`; baked into the kernel as immediates.
    name
        The PrimFunc's ``global_symbol``.

    Returns
    -------
    tvm.tirx.PrimFunc
        ``f(x1: int8[shape1], x2: int8[shape2], out: int8[broadcast shape])``.
    """
    shape1, shape2 = tuple(int(d) for d in shape1), tuple(int(d) for d in shape2)
    out_shape = tuple(int(d) for d in np.broadcast_shapes(shape1, shape2))
    n1, n2, n = math.prod(shape1), math.prod(shape2), math.prod(out_shape)
    attrs = {"global_symbol": name, "dtmm.op": "add", "op_pattern": 8, "tirx.noalias": True}

    def build(n32: int, n64: int):
        @T.prim_func
        def add(x1: T.Buffer(shape1, "int8"), x2: T.Buffer(shape2, "int8"), out: T.Buffer(out_shape, "int8")):
            T.func_attr(attrs)
            a = T.decl_buffer((n1,), "int8", data=x1.data)
            b = T.decl_buffer((n2,), "int8", data=x2.data)
            o = T.decl_buffer((n,), "int8", data=out.data)
            t32 = T.alloc_buffer((n32,), "int32")
            t64 = T.alloc_buffer((n64,), "int64")
            for i in range(n):
                o[i] = _add_value(
                    T.Cast("int32", a[_broadcast_offset(i, out_shape, shape1)]),
                    T.Cast("int32", b[_broadcast_offset(i, out_shape, shape2)]),
                    params,
                    t32,
                    t64,
                )

        return add

    return build(*scratch_slots(build))
