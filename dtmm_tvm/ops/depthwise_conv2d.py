"""Int8 depthwise 2-D convolution (TFLite DEPTHWISE_CONV_2D) as a TIR kernel.

Mirrors TFLM's ``reference_integer_ops::DepthwiseConvPerChannel``: output channel
``oc = c * depth_multiplier + m`` reads input channel ``c`` only. The weight buffer keeps
TFLite's own layout ``[1, KH, KW, Cin * M]`` (``params.weight_shape``), so the model's constant
is passed unchanged. The numpy twin is :func:`dtmm_tvm.quant.conv.depthwise_conv2d`.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from ..quant.conv import Conv2DParams
from .common import requantize_store, tap_in_bounds, with_attrs


def depthwise_conv2d_int8(params: Conv2DParams) -> tirx.PrimFunc:
    """Build the int8 depthwise conv kernel of one layer.

    Parameters
    ----------
    params
        The layer, ``depthwise=True``; any kernel, stride, padding, dilation, multiplier.

    Returns
    -------
    tvm.tirx.PrimFunc
        ``main(x, w, bias, mult, shift, out)``: ``x`` int8 ``params.input_shape`` (NHWC),
        ``w`` int8 ``[1, KH, KW, Cin * M]``, ``bias`` / ``mult`` / ``shift`` int32 ``[Cin * M]``,
        ``out`` int8 ``params.output_shape``.
        Attributes ``{"dtmm.op": "depthwise_conv2d", "op_pattern": 8}``.
    """
    if not params.depthwise:
        raise ValueError("depthwise_conv2d_int8 needs depthwise params (depthwise=True)")
    n_size, _, _, cin = params.input_shape
    _, oh_size, ow_size, cout = params.output_shape
    kh_size, kw_size = params.kernel_size
    mult_size = params.depth_multiplier
    sh, sw = params.strides
    dh, dw = params.dilation
    pad_top, pad_left = params.padding[0], params.padding[1]
    input_offset = -params.input_zero_point
    out_zp, act_min, act_max = params.output_zero_point, params.act_min, params.act_max
    x_shape, w_shape, o_shape = params.input_shape, params.weight_shape, params.output_shape

    @T.prim_func
    def depthwise_conv2d(
        x: T.Buffer(x_shape, "int8"),
        w: T.Buffer(w_shape, "int8"),
        bias: T.Buffer((cout,), "int32"),
        mult: T.Buffer((cout,), "int32"),
        shift: T.Buffer((cout,), "int32"),
        out: T.Buffer(o_shape, "int8"),
    ):
        acc = T.decl_buffer((1,), "int32", scope="global")
        for n, oh, ow, c, m in T.grid(n_size, oh_size, ow_size, cin, mult_size):
            oc: T.let = c * mult_size + m
            acc[0] = 0
            for kh, kw in T.grid(kh_size, kw_size):
                ih: T.let = oh * sh - pad_top + kh * dh
                iw: T.let = ow * sw - pad_left + kw * dw
                if tap_in_bounds(ih, iw, params):
                    acc[0] = acc[0] + (T.Cast("int32", x[n, ih, iw, c]) + input_offset) * T.Cast(
                        "int32", w[0, kh, kw, oc]
                    )
            requantize_store(out, (n, oh, ow, oc), acc[0] + bias[oc], mult[oc], shift[oc], out_zp, act_min, act_max)

    return with_attrs(depthwise_conv2d, "depthwise_conv2d")
