"""Dense int8 2-D convolution (TFLite CONV_2D, NHWC / OHWI) as a TIR kernel.

Mirrors TFLM's ``reference_integer_ops::ConvPerChannel`` bit for bit: for every output pixel and
channel, ``acc = sum over in-bounds taps (x + input_offset) * w``, then ``+ bias``, per-channel
requantization (double rounding), ``+ output_zero_point`` and the activation clamp. Padded taps are
skipped, exactly as TFLM does. The numpy twin is :func:`dtmm_tvm.quant.conv.conv2d`.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from ..quant.conv import Conv2DParams
from ..schedules.conv import resolve
from ..schedules.records import lookup_schedule
from .common import requantize_macro, tap_in_bounds, with_attrs


def conv2d_int8(params: Conv2DParams, *, target=None, schedule=None) -> tirx.PrimFunc:
    """Build the dense int8 conv kernel of one layer.

    Parameters
    ----------
    params
        The layer (``depthwise=False``); any kernel size, stride, padding and dilation.
    target
        ``tvm.target.Target`` (default ``Target.current()``): a C target gets the micro-kernel
        version (:mod:`dtmm_tvm.ops.conv2d_micro`, MVE/DSP/portable C chosen by the target's
        features); no target or a non-C one gets the plain TIR loop nest below.
    schedule
        :class:`dtmm_tvm.schedules.conv.ConvSchedule`; default
        :func:`~dtmm_tvm.schedules.conv.default_schedule` for the target.

    Returns
    -------
    tvm.tirx.PrimFunc
        ``main(x, w, bias, mult, shift, out)`` in destination-passing style:
        ``x`` int8 ``params.input_shape`` (NHWC), ``w`` int8 ``params.weight_shape`` (OHWI),
        ``bias`` / ``mult`` / ``shift`` int32 ``[Cout]``, ``out`` int8 ``params.output_shape``.
        Attributes ``{"dtmm.op": "conv2d", "op_pattern": 8}``.
    """
    if params.depthwise:
        raise ValueError("conv2d_int8 got depthwise params; use depthwise_conv2d_int8")
    if schedule is None:  # tuning records (dtmm_tvm.schedules.apply_records) first, then the default
        schedule = lookup_schedule("conv2d", params, target)
    target, schedule = resolve(params, target, schedule)
    if schedule.micro_kernel:
        from .conv2d_micro import build_conv_micro

        return build_conv_micro(params, None, target, schedule, "conv2d")
    n_size, height, width, cin = params.input_shape
    _, oh_size, ow_size, cout = params.output_shape
    kh_size, kw_size = params.kernel_size
    sh, sw = params.strides
    dh, dw = params.dilation
    pad_top, pad_left = params.padding[0], params.padding[1]
    input_offset = -params.input_zero_point
    out_zp, act_min, act_max = params.output_zero_point, params.act_min, params.act_max
    x_shape, w_shape, o_shape = params.input_shape, params.weight_shape, params.output_shape

    requantize_store_of_layer = requantize_macro(params)  # TFLite or ONNX records
    @T.prim_func
    def conv2d(
        x: T.Buffer(x_shape, "int8"),
        w: T.Buffer(w_shape, "int8"),
        bias: T.Buffer((cout,), "int32"),
        mult: T.Buffer((cout,), "int32"),
        shift: T.Buffer((cout,), "int32"),
        out: T.Buffer(o_shape, "int8"),
    ):
        acc = T.decl_buffer((1,), "int32", scope="global")
        for n, oh, ow, o in T.grid(n_size, oh_size, ow_size, cout):
            acc[0] = 0
            for kh, kw in T.grid(kh_size, kw_size):
                ih: T.let = oh * sh - pad_top + kh * dh
                iw: T.let = ow * sw - pad_left + kw * dw
                if tap_in_bounds(ih, iw, params):
                    for ci in range(cin):
                        acc[0] = acc[0] + (T.Cast("int32", x[n, ih, iw, ci]) + input_offset) * T.Cast(
                            "int32", w[o, kh, kw, ci]
                        )
            requantize_store_of_layer(out, (n, oh, ow, o), acc[0] + bias[o], mult[o], shift[o], out_zp, act_min, act_max)

    return with_attrs(conv2d, "conv2d")
