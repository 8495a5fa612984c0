"""TFLM's int8 AVERAGE_POOL_2D and MAX_POOL_2D: parameters and bit-exact numpy references.

Pooling needs no requantization: TFLM's Prepare requires equal input and output quantization, so
the only integer semantics are the window geometry (``ComputePaddingHeightWidth``), the rounding of
the average (``(sum +- count / 2) / count`` with C truncation, ``count`` being the number of
in-bounds cells only) and the fused-activation clamp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fixed_point import activation_range


def _out_size(padding: str, in_size: int, filter_size: int, stride: int) -> int:
    """TFLite's ``ComputeOutSize`` (dilation 1)."""
    if padding == "SAME":
        return (in_size + stride - 1) // stride
    if padding == "VALID":
        return (in_size + stride - filter_size) // stride
    raise ValueError(f"unknown padding {padding!r}")


def _padding(stride: int, in_size: int, filter_size: int, out_size: int) -> int:
    """TFLite's ``ComputePadding``: the leading pad (C truncating division, floored at 0)."""
    total = (out_size - 1) * stride + filter_size - in_size
    return max(int(total / 2), 0)  # int(x / 2) truncates like C for a negative total


@dataclass(frozen=True)
class Pool2DParams:
    """Geometry and clamp of one int8 2-D pooling layer over an NHWC tensor."""

    input_shape: tuple[int, int, int, int]  # N, H, W, C
    output_shape: tuple[int, int, int, int]
    filter_height: int
    filter_width: int
    stride_height: int
    stride_width: int
    pad_height: int  # leading padding (top)
    pad_width: int  # leading padding (left)
    act_min: int
    act_max: int


def pool2d_params(
    input_shape,
    filter_size,
    strides,
    padding: str,
    out_scale: float,
    out_zp: int,
    activation: str = "NONE",
) -> Pool2DParams:
    """Compute :class:`Pool2DParams` like TFLM's ``PoolingPrepare``.

    Parameters
    ----------
    input_shape
        ``(N, H, W, C)``.
    filter_size, strides
        ``(height, width)`` pairs (``Pool2DOptions`` FilterHeight/Width, StrideH/W).
    padding
        ``"SAME"`` or ``"VALID"``.
    out_scale, out_zp
        The output quantization (equal to the input's for a valid TFLite model); only used for the
        fused activation clamp.
    activation
        Fused activation name (``"NONE"``, ``"RELU"``, ``"RELU6"``, ``"RELU_N1_TO_1"``).
    """
    n, h, w, c = (int(d) for d in input_shape)
    fh, fw = (int(v) for v in filter_size)
    sh, sw = (int(v) for v in strides)
    oh, ow = _out_size(padding, h, fh, sh), _out_size(padding, w, fw, sw)
    if oh <= 0 or ow <= 0:
        raise ValueError(f"pooling window {fh}x{fw} does not fit input {h}x{w} with {padding} padding")
    act_min, act_max = activation_range(activation, out_scale, out_zp)
    return Pool2DParams(
        input_shape=(n, h, w, c),
        output_shape=(n, oh, ow, c),
        filter_height=fh,
        filter_width=fw,
        stride_height=sh,
        stride_width=sw,
        pad_height=_padding(sh, h, fh, oh),
        pad_width=_padding(sw, w, fw, ow),
        act_min=act_min,
        act_max=act_max,
    )


def _windows(p: Pool2DParams):
    """Yield ``(oy, ox, y0, y1, x0, x1)``: each output cell's in-bounds input window."""
    _, h, w, _ = p.input_shape
    _, oh, ow, _ = p.output_shape
    for oy in range(oh):
        iy = oy * p.stride_height - p.pad_height
        y0, y1 = max(0, iy), min(h, iy + p.filter_height)
        for ox in range(ow):
            ix = ox * p.stride_width - p.pad_width
            yield oy, ox, y0, y1, max(0, ix), min(w, ix + p.filter_width)


def avg_pool2d_int8(x: np.ndarray, params: Pool2DParams) -> np.ndarray:
    """TFLM's ``reference_integer_ops::AveragePool`` on an int8 NHWC array."""
    x = np.asarray(x, dtype=np.int64).reshape(params.input_shape)
    out = np.empty(params.output_shape, dtype=np.int64)
    for oy, ox, y0, y1, x0, x1 in _windows(params):
        acc = x[:, y0:y1, x0:x1, :].sum(axis=(1, 2))
        count = (y1 - y0) * (x1 - x0)
        half = count // 2
        # C integer division truncates toward zero.
        num = np.where(acc > 0, acc + half, acc - half)
        out[:, oy, ox, :] = np.sign(num) * (np.abs(num) // count)
    return np.clip(out, params.act_min, params.act_max).astype(np.int8)


def max_pool2d_int8(x: np.ndarray, params: Pool2DParams) -> np.ndarray:
    """TFLM's ``reference_integer_ops::MaxPool`` on an int8 NHWC array."""
    x = np.asarray(x, dtype=np.int8).reshape(params.input_shape)
    out = np.empty(params.output_shape, dtype=np.int64)
    for oy, ox, y0, y1, x0, x1 in _windows(params):
        out[:, oy, ox, :] = x[:, y0:y1, x0:x1, :].max(axis=(1, 2))
    return np.clip(out, params.act_min, params.act_max).astype(np.int8)
