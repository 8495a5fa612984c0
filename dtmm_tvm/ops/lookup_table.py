"""One kernel for every elementwise int8 function: a 256-entry lookup table.

An int8 elementwise op (RELU, RELU6, LEAKY_RELU, LOGISTIC, TANH, HARD_SWISH, QUANTIZE int8 -> int8,
DEQUANTIZE int8 -> float32) is a function of one of 256 values with the layer's parameters fixed,
so its TFLM arithmetic runs once per value at compile time (:mod:`dtmm_tvm.quant.activations`) and
the kernel is one load per element: ``out[i] = table[x[i] + 128]``. The table is a constant input
(256 bytes of flash, 1 KiB for float32 outputs).
"""

from __future__ import annotations

import math

from tvm import tirx
from tvm.script import tirx as T

from .common import OPAQUE


def lookup_table_int8(shape, out_dtype: str = "int8", op: str = "lookup_table", name: str = "lookup_table") -> tirx.PrimFunc:
    """Build ``out = table[x + 128]`` elementwise.

    Parameters
    ----------
    shape
        Shape of the int8 input and of the output.
    out_dtype
        ``"int8"`` or ``"float32"`` (DEQUANTIZE).
    op
        The TFLite-level op name recorded as ``"dtmm.op"``.

    Returns
    -------
    tvm.tirx.PrimFunc
        ``f(x: int8[shape], table: out_dtype[256], out: out_dtype[shape])``.
    """
    shape = tuple(int(d) for d in shape)
    n = math.prod(shape)
    attrs = {"global_symbol": name, "dtmm.op": op, "op_pattern": OPAQUE, "tirx.noalias": True}

    @T.prim_func
    def lookup(x: T.Buffer(shape, "int8"), table: T.Buffer((256,), out_dtype), out: T.Buffer(shape, out_dtype)):
        T.func_attr(attrs)
        a = T.decl_buffer((n,), "int8", data=x.data)
        o = T.decl_buffer((n,), out_dtype, data=out.data)
        for i in range(n):
            o[i] = table[T.Cast("int32", a[i]) + 128]

    return lookup
