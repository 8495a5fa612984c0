"""ONNX QDQ operators with no TFLite twin, as TIR kernels calling C micro-kernels.

onnxruntime's QuantizeLinear (model input), DequantizeLinear (model output),
QLinearGlobalAveragePool and QLinearSoftmax: semantics in :mod:`dtmm_tvm.quant.onnx`, C in
``dtmm_tvm/kernels/dtmm_{quantize_linear,dequantize_linear,qlinear_global_avg_pool,
qlinear_softmax}_s8.c``. Float parameters (scales, the softmax table) are kernel arguments backed
by float32 constants, so their bits reach the C exactly. Conv, depthwise and Gemm/MatMul reuse
the int8 kernels of :mod:`dtmm_tvm.ops` with ``requantization="onnx"`` records.
"""

from __future__ import annotations

import math

from tvm import tirx
from tvm.script import tirx as T

from ..kernels import with_c_kernels
from .common import with_attrs


def quantize_linear(shape, zero_point: int) -> tirx.PrimFunc:
    """``f(x: float32[shape], scale: float32[1], out: int8[shape])``: QuantizeLinear."""
    shape = tuple(int(d) for d in shape)
    size = math.prod(shape)

    @T.prim_func
    def quantize_linear_s8(x: T.Buffer(shape, "float32"), scale: T.Buffer((1,), "float32"),
                           out: T.Buffer(shape, "int8")):
        T.evaluate(T.call_extern("void", "dtmm_quantize_linear_s8", x.data, scale.data, out.data, size, zero_point))

    return with_c_kernels(with_attrs(quantize_linear_s8, "quantize_linear"), ["dtmm_quantize_linear_s8"])


def dequantize_linear(shape, zero_point: int) -> tirx.PrimFunc:
    """``f(x: int8[shape], scale: float32[1], out: float32[shape])``: DequantizeLinear."""
    shape = tuple(int(d) for d in shape)
    size = math.prod(shape)

    @T.prim_func
    def dequantize_linear_s8(x: T.Buffer(shape, "int8"), scale: T.Buffer((1,), "float32"),
                             out: T.Buffer(shape, "float32")):
        T.evaluate(T.call_extern("void", "dtmm_dequantize_linear_s8", x.data, scale.data, out.data, size, zero_point))

    return with_c_kernels(with_attrs(dequantize_linear_s8, "dequantize_linear"), ["dtmm_dequantize_linear_s8"])


def global_avg_pool(input_shape, input_zp: int, output_zp: int) -> tirx.PrimFunc:
    """``f(x: int8[N, H, W, C], scale: float32[1], out: int8[N, 1, 1, C])``: QLinearGlobalAveragePool
    (NHWC), ``scale`` from :func:`dtmm_tvm.quant.onnx.global_avg_pool_scale`."""
    n, h, w, c = (int(d) for d in input_shape)
    out_shape = (n, 1, 1, c)

    @T.prim_func
    def qlinear_global_avg_pool(x: T.Buffer((n, h, w, c), "int8"), scale: T.Buffer((1,), "float32"),
                                out: T.Buffer(out_shape, "int8")):
        sums = T.decl_buffer((c,), "int32", scope="global")
        T.evaluate(T.call_extern("void", "dtmm_qlinear_global_avg_pool_s8", x.data, scale.data, out.data,
                                 sums.data, n, h * w, c, input_zp, output_zp))

    func = with_attrs(qlinear_global_avg_pool, "global_avg_pool")
    return with_c_kernels(func, ["dtmm_qlinear_global_avg_pool_s8"])


def softmax(shape, output_zp: int) -> tirx.PrimFunc:
    """``f(x: int8[shape], table: float32[256], y_scale_inv: float32[1], out: int8[shape])``:
    QLinearSoftmax over the last axis (table and ``y_scale_inv`` from :mod:`dtmm_tvm.quant.onnx`)."""
    shape = tuple(int(d) for d in shape)
    depth = shape[-1]
    rows = math.prod(shape) // depth

    @T.prim_func
    def qlinear_softmax(x: T.Buffer(shape, "int8"), table: T.Buffer((256,), "float32"),
                        y_scale_inv: T.Buffer((1,), "float32"), out: T.Buffer(shape, "int8")):
        T.evaluate(T.call_extern("void", "dtmm_qlinear_softmax_s8", x.data, table.data, y_scale_inv.data,
                                 out.data, rows, depth, output_zp))

    return with_c_kernels(with_attrs(qlinear_softmax, "softmax"), ["dtmm_qlinear_softmax_s8"])


def qlinear_add(shape, offset: int, act_min: int, act_max: int) -> tirx.PrimFunc:
    """``f(a: int8[shape], b: int8[shape], params: float32[3], out: int8[shape])``: QLinearAdd of
    two tensors of one shape, ``params`` from :func:`dtmm_tvm.quant.onnx.qlinear_add_params`;
    ``offset`` 128 for uint8 models (``act_min``/``act_max`` in the model's own type)."""
    shape = tuple(int(d) for d in shape)
    size = math.prod(shape)

    @T.prim_func
    def qlinear_add_s8(a: T.Buffer(shape, "int8"), b: T.Buffer(shape, "int8"), params: T.Buffer((3,), "float32"),
                       out: T.Buffer(shape, "int8")):
        T.evaluate(T.call_extern("void", "dtmm_qlinear_add_s8", a.data, b.data, params.data, out.data, size,
                                 offset, act_min, act_max))

    return with_c_kernels(with_attrs(qlinear_add_s8, "add"), ["dtmm_qlinear_add_s8"])


def qlinear_mul(shape, offset: int, a_zp: int, b_zp: int, y_zp: int, act_min: int, act_max: int) -> tirx.PrimFunc:
    """``f(a: int8[shape], b: int8[shape], ratio: float32[1], out: int8[shape])``: QLinearMul of two
    tensors of one shape, ``ratio`` from :func:`dtmm_tvm.quant.onnx.qlinear_mul_scale`; zero
    points, ``act_min``/``act_max`` in the model's own type (``offset`` 128 for uint8 models)."""
    shape = tuple(int(d) for d in shape)
    size = math.prod(shape)

    @T.prim_func
    def qlinear_mul_s8(a: T.Buffer(shape, "int8"), b: T.Buffer(shape, "int8"), ratio: T.Buffer((1,), "float32"),
                       out: T.Buffer(shape, "int8")):
        T.evaluate(T.call_extern("void", "dtmm_qlinear_mul_s8", a.data, b.data, ratio.data, out.data, size,
                                 offset, a_zp, b_zp, y_zp, act_min, act_max))

    return with_c_kernels(with_attrs(qlinear_mul_s8, "mul"), ["dtmm_qlinear_mul_s8"])


def avg_pool(input_shape, output_shape, kernel, strides, pads, count_include_pad: bool, offset: int, output_zp: int,
             act_min: int, act_max: int) -> tirx.PrimFunc:
    """``f(x: int8[N, H, W, C], table: float32[256], y_scale: float32[1], out: int8[N, OH, OW, C])``:
    QLinearAveragePool (NHWC) with a window smaller than the image; ``table[x + 128]`` is the
    dequantized input (:func:`dtmm_tvm.quant.onnx.dequantize_linear`), ``pads`` = (top, left);
    ``output_zp``, ``act_min``/``act_max`` in the model's own type (``offset`` 128 for uint8)."""
    n, h, w, c = (int(d) for d in input_shape)
    out_shape = tuple(int(d) for d in output_shape)
    (kh, kw), (sh, sw), (pt, pl) = kernel, strides, pads

    @T.prim_func
    def qlinear_avg_pool(x: T.Buffer((n, h, w, c), "int8"), table: T.Buffer((256,), "float32"),
                         y_scale: T.Buffer((1,), "float32"), out: T.Buffer(out_shape, "int8")):
        sums = T.decl_buffer((c,), "float32", scope="global")
        T.evaluate(T.call_extern("void", "dtmm_qlinear_avg_pool_s8", x.data, table.data, y_scale.data, out.data,
                                 sums.data, n, h, w, c, out_shape[1], out_shape[2], kh, kw, sh, sw, pt, pl,
                                 int(count_include_pad), offset, output_zp, act_min, act_max))

    return with_c_kernels(with_attrs(qlinear_avg_pool, "avg_pool2d"), ["dtmm_qlinear_avg_pool_s8"])
