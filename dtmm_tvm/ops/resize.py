"""RESIZE_NEAREST_NEIGHBOR as a gather with TFLM's source indices (int8 or float32 NHWC).

TFLM's ``GetNearestNeighbor`` computes each source row/column in float32 (``align_corners`` rounds,
otherwise floors; ``half_pixel_centers`` adds 0.5). The indices depend only on the sizes, so they are
computed here at compile time (:func:`nearest_indices`) and baked into the kernel as a table of
immediates; the kernel copies ``depth`` values per output pixel.
"""

from __future__ import annotations

import math

import numpy as np
from tvm import tirx
from tvm.script import tirx as T

from .common import OPAQUE


def nearest_indices(in_size: int, out_size: int, align_corners: bool, half_pixel_centers: bool) -> list[int]:
    """TFLM's ``GetNearestNeighbor`` for every output index (float32 arithmetic)."""
    f32 = np.float32
    scale = f32(in_size - 1) / f32(out_size - 1) if align_corners and out_size > 1 else f32(in_size) / f32(out_size)
    offset = f32(0.5) if half_pixel_centers else f32(0.0)
    result = []
    for i in range(out_size):
        v = float((f32(i) + offset) * scale)
        index = int(math.copysign(math.floor(abs(v) + 0.5), v)) if align_corners else int(math.floor(v))
        index = min(index, in_size - 1)
        if half_pixel_centers:
            index = max(0, index)
        result.append(index)
    return result


def _select_chain(i, values):
    """``values[i]`` for a loop variable ``i`` as nested selects (sizes are small)."""
    expr = tirx.const(values[-1], "int32")
    for k in range(len(values) - 2, -1, -1):
        expr = tirx.Select(i == k, tirx.const(values[k], "int32"), expr)
    return expr


def resize_nearest(input_shape, output_hw, align_corners: bool, half_pixel_centers: bool, dtype: str = "int8",
                   name: str = "resize_nearest") -> tirx.PrimFunc:
    """``f(x: dtype[N, H, W, C], out: dtype[N, OH, OW, C])``."""
    n, h, w, c = (int(d) for d in input_shape)
    oh, ow = (int(d) for d in output_hw)
    rows = nearest_indices(h, oh, align_corners, half_pixel_centers)
    cols = nearest_indices(w, ow, align_corners, half_pixel_centers)
    attrs = {"global_symbol": name, "dtmm.op": "resize_nearest_neighbor", "op_pattern": OPAQUE, "tirx.noalias": True}

    @T.prim_func
    def resize(x: T.Buffer((n, h, w, c), dtype), out: T.Buffer((n, oh, ow, c), dtype)):
        T.func_attr(attrs)
        for b, y in T.grid(n, oh):
            src_y: T.let = _select_chain(y, rows)
            for xx in range(ow):
                src_x: T.let = _select_chain(xx, cols)
                for ch in range(c):
                    out[b, y, xx, ch] = x[b, src_y, src_x, ch]

    return resize
