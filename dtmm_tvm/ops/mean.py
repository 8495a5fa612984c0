"""int8 MEAN over H, W of NHWC as a TIR PrimFunc, bit-exact with TFLM (:mod:`dtmm_tvm.quant.mean`)."""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from ..quant.mean import MeanParams
from .softmax import TirFixedPoint, scratch_slots, _track


def _mean_value(total, p: MeanParams, t32, t64):
    """Requantize one channel's int32 sum like TFLM's integer ``QuantizedMeanOrSum``."""
    fx = _track(TirFixedPoint(t32, t64))
    shifted = total - p.input_zero_point * p.count
    scaled = fx.multiply_by_quantized_multiplier(shifted, p.multiplier, p.shift)
    return tirx.Cast("int8", fx.clamp(scaled + p.output_zero_point, -128, 127))


def mean_int8(params: MeanParams, name: str = "mean_int8") -> tirx.PrimFunc:
    """Build the int8 mean over axes 1 and 2 of an NHWC tensor.

    Parameters
    ----------
    params
        From :func:`dtmm_tvm.quant.mean.mean_params` (input shape, keep_dims, requantization).
    name
        The PrimFunc's ``global_symbol``.

    Returns
    -------
    tvm.tirx.PrimFunc
        ``f(x: int8[N, H, W, C], out: int8[N, 1, 1, C] or int8[N, C])``.
    """
    n, h, w, c = params.input_shape
    out_shape = params.output_shape
    attrs = {"global_symbol": name, "dtmm.op": "mean", "op_pattern": 8, "tirx.noalias": True}

    def build(n32: int, n64: int):
        @T.prim_func
        def mean(x: T.Buffer((n, h, w, c), "int8"), out: T.Buffer(out_shape, "int8")):
            T.func_attr(attrs)
            o = T.decl_buffer((n * c,), "int8", data=out.data)
            acc = T.alloc_buffer((1,), "int32")
            t32 = T.alloc_buffer((n32,), "int32")
            t64 = T.alloc_buffer((n64,), "int64")
            for b, ch in T.grid(n, c):
                acc[0] = 0
                for y, xx in T.grid(h, w):
                    acc[0] = acc[0] + T.Cast("int32", x[b, y, xx, ch])
                o[b * c + ch] = _mean_value(acc[0], params, t32, t64)

        return mean

    return build(*scratch_slots(build))
