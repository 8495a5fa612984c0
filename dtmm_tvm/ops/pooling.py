"""int8 AVERAGE_POOL_2D / MAX_POOL_2D as TIR PrimFuncs, bit-exact with TFLM.

See :mod:`dtmm_tvm.quant.pooling` for the semantics: the window is clipped to the input (no padded
cells are read or counted), the average rounds half away from zero with C truncating division.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from ..quant.pooling import Pool2DParams


def _rounded_average(acc, count):
    """``acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count`` in C semantics."""
    half = tirx.truncdiv(count, 2)
    return tirx.Select(acc > 0, tirx.truncdiv(acc + half, count), tirx.truncdiv(acc - half, count))


def _clamp(v, p: Pool2DParams):
    return tirx.Cast("int8", tirx.max(tirx.min(v, p.act_max), p.act_min))


def pool2d_int8(kind: str, params: Pool2DParams, name: str | None = None) -> tirx.PrimFunc:
    """Build an int8 2-D pooling kernel over NHWC.

    Parameters
    ----------
    kind
        ``"avg"`` (AVERAGE_POOL_2D) or ``"max"`` (MAX_POOL_2D).
    params
        From :func:`dtmm_tvm.quant.pooling.pool2d_params`.
    name
        The PrimFunc's ``global_symbol`` (default ``"<kind>_pool2d_int8"``).

    Returns
    -------
    tvm.tirx.PrimFunc
        ``f(x: int8[N, H, W, C], out: int8[N, OH, OW, C])``; one int32 global accumulator.
    """
    if kind not in ("avg", "max"):
        raise ValueError(f"pooling kind must be 'avg' or 'max', not {kind!r}")
    p = params
    n, h, w, c = p.input_shape
    _, oh, ow, _ = p.output_shape
    fh, fw, sh, sw, ph, pw = p.filter_height, p.filter_width, p.stride_height, p.stride_width, p.pad_height, p.pad_width
    attrs = {
        "global_symbol": name or f"{kind}_pool2d_int8",
        "dtmm.op": "average_pool2d" if kind == "avg" else "max_pool2d",
        "op_pattern": 8,
        "tirx.noalias": True,
    }
    is_avg = kind == "avg"

    if fh == 1 and fw == 1 and ph == 0 and pw == 0:
        # A 1x1 window is a strided copy through the clamp. Written without the accumulator: with
        # the window loops gone, TVM 0.27's StmtSimplify forwards the accumulator's initial value
        # past its update and the C clamps that stale value (LLVM builds are right).
        @T.prim_func
        def pool_1x1(x: T.Buffer((n, h, w, c), "int8"), out: T.Buffer((n, oh, ow, c), "int8")):
            T.func_attr(attrs)
            for b, oy, ox, ch in T.grid(n, oh, ow, c):
                out[b, oy, ox, ch] = _clamp(T.Cast("int32", x[b, oy * sh, ox * sw, ch]), p)

        return pool_1x1

    @T.prim_func
    def pool(x: T.Buffer((n, h, w, c), "int8"), out: T.Buffer((n, oh, ow, c), "int8")):
        T.func_attr(attrs)
        acc = T.alloc_buffer((1,), "int32")
        for b, oy, ox, ch in T.grid(n, oh, ow, c):
            # The window clipped to the input, as TFLM's filter_{x,y}_{start,end}.
            y0: T.let = T.max(oy * sh - ph, 0)
            y1: T.let = T.min(oy * sh - ph + fh, h)
            x0: T.let = T.max(ox * sw - pw, 0)
            x1: T.let = T.min(ox * sw - pw + fw, w)
            if is_avg:
                acc[0] = 0
                for iy in range(y0, y1):
                    for ix in range(x0, x1):
                        acc[0] = acc[0] + T.Cast("int32", x[b, iy, ix, ch])
                out[b, oy, ox, ch] = _clamp(_rounded_average(acc[0], (y1 - y0) * (x1 - x0)), p)
            else:
                acc[0] = -128
                for iy in range(y0, y1):
                    for ix in range(x0, x1):
                        acc[0] = T.max(acc[0], T.Cast("int32", x[b, iy, ix, ch]))
                out[b, oy, ox, ch] = _clamp(acc[0], p)

    return pool


def avg_pool2d_int8(params: Pool2DParams, name: str = "avg_pool2d_int8") -> tirx.PrimFunc:
    """AVERAGE_POOL_2D: see :func:`pool2d_int8`."""
    return pool2d_int8("avg", params, name)


def max_pool2d_int8(params: Pool2DParams, name: str = "max_pool2d_int8") -> tirx.PrimFunc:
    """MAX_POOL_2D: see :func:`pool2d_int8`."""
    return pool2d_int8("max", params, name)
