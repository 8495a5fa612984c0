"""int8 ADD as a TIR PrimFunc, bit-exact with TFLM (see :mod:`dtmm_tvm.quant.add`).

Two implementations behind :func:`add_int8`:

- for a C target (``Target`` kind ``c``, default ``Target.current()``) and inputs with the
  output's element count (no broadcasting), a one-statement PrimFunc calling the C micro-kernel
  ``dtmm_add_s8`` (``dtmm_tvm/kernels``: MVE VQRDMULH/VRSHL, DSP SXTAB16/SMMULR, portable C);
- otherwise (broadcasting, host LLVM builds) the plain TIR loop.
"""

from __future__ import annotations

import math

import numpy as np
import tvm
from tvm import tirx
from tvm.script import tirx as T

from ..kernels import with_c_kernels
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


C_KERNEL = "dtmm_add_s8"


def _c_target(target):
    if target is None:
        target = tvm.target.Target.current(allow_none=True)
    return target if target is not None and str(target.kind.name) == "c" else None


def uses_micro_kernel(shape1, shape2, params: AddParams, target=None) -> bool:
    """True when :func:`add_int8` builds the ``dtmm_add_s8`` call for these shapes on ``target``."""
    n1, n2 = math.prod(int(d) for d in shape1), math.prod(int(d) for d in shape2)
    n = math.prod(int(d) for d in np.broadcast_shapes(tuple(shape1), tuple(shape2)))
    shifts_ok = max(params.input1_shift, params.input2_shift, params.output_shift) <= 0
    return _c_target(target) is not None and n1 == n2 == n and shifts_ok and 0 <= params.left_shift <= 22


def add_int8(shape1, shape2, params: AddParams, name: str = "add_int8", *, target=None) -> tirx.PrimFunc:
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
    target
        Default ``Target.current()``; a C target with equal-size inputs selects the micro-kernel
        (attribute ``"dtmm.c_kernels"``), anything else the TIR loop.

    Returns
    -------
    tvm.tirx.PrimFunc
        ``f(x1: int8[shape1], x2: int8[shape2], out: int8[broadcast shape])``.
    """
    shape1, shape2 = tuple(int(d) for d in shape1), tuple(int(d) for d in shape2)
    out_shape = tuple(int(d) for d in np.broadcast_shapes(shape1, shape2))
    if uses_micro_kernel(shape1, shape2, params, target):
        attrs = {"global_symbol": name, "dtmm.op": "add", "op_pattern": 8, "tirx.noalias": True}
        return _add_micro(shape1, shape2, out_shape, params, attrs)
    return binary_int8(shape1, shape2, _add_value, params, "add", name)


def binary_int8(shape1, shape2, value, params, op: str, name: str) -> tirx.PrimFunc:
    """An int8 elementwise binary op with numpy broadcasting (ADD, MUL, SUB): ``value(a, b,
    params, t32, t64)`` gives one output element in TFLM's fixed-point arithmetic."""
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


def _add_micro(shape1, shape2, out_shape, params: AddParams, attrs) -> tirx.PrimFunc:
    """``dtmm_add_s8(x1, x2, out, size, ...params)``: one extern call over the flat tensors."""
    p = params
    scalars = [math.prod(out_shape), p.input1_offset, p.input1_multiplier, p.input1_shift, p.input2_offset,
               p.input2_multiplier, p.input2_shift, p.output_offset, p.output_multiplier, p.output_shift,
               p.left_shift, p.act_min, p.act_max]

    @T.prim_func
    def add_micro(x1: T.Buffer(shape1, "int8"), x2: T.Buffer(shape2, "int8"), out: T.Buffer(out_shape, "int8")):
        T.func_attr(attrs)
        T.evaluate(T.call_extern("void", C_KERNEL, x1.data, x2.data, out.data, *scalars))

    return with_c_kernels(add_micro, [C_KERNEL])
