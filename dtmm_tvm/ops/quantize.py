"""float32 -> int8 QUANTIZE at a model's input, as TFLM's ``AffineQuantize`` computes it.

``q = clamp(round(x / scale) + zero_point)`` with the division in float32 and ``round`` half away
from zero. The scale is a 1-element float32 constant (exact in the generated C); the rounding is
written with a truncating int conversion, so no libm call is needed: ``t = (int)v``, then
``t +/- 1`` when the float32 remainder ``v - t`` (exact) reaches one half.
"""

from __future__ import annotations

import math

from tvm import tirx
from tvm.script import tirx as T

from .common import OPAQUE


def quantize_float32_to_int8(shape, zero_point: int, name: str = "quantize") -> tirx.PrimFunc:
    """``f(x: float32[shape], scale: float32[1], out: int8[shape])``."""
    shape = tuple(int(d) for d in shape)
    n = math.prod(shape)
    zp = int(zero_point)
    attrs = {"global_symbol": name, "dtmm.op": "quantize", "op_pattern": OPAQUE, "tirx.noalias": True}

    @T.prim_func
    def quantize(x: T.Buffer(shape, "float32"), scale: T.Buffer((1,), "float32"), out: T.Buffer(shape, "int8")):
        T.func_attr(attrs)
        a = T.decl_buffer((n,), "float32", data=x.data)
        o = T.decl_buffer((n,), "int8", data=out.data)
        for i in range(n):
            # Clamp first (any |v| beyond 300 saturates anyway) so the int conversion is defined.
            v: T.let = T.max(T.min(a[i] / scale[0], T.float32(300.0)), T.float32(-300.0))
            t: T.let = T.Cast("int32", v)
            r: T.let = v - T.Cast("float32", t)
            q: T.let = t + T.Select(r >= T.float32(0.5), 1, 0) - T.Select(r <= T.float32(-0.5), 1, 0) + zp
            o[i] = T.Cast("int8", T.max(T.min(q, 127), -128))

    return quantize
