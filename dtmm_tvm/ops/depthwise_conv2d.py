"""Int8 depthwise 2-D convolution (TFLite DEPTHWISE_CONV_2D) as a TIR kernel.

Mirrors TFLM's ``reference_integer_ops::DepthwiseConvPerChannel``: output channel
``oc = c * depth_multiplier + m`` reads input channel ``c`` only. The weight buffer keeps
TFLite's own layout ``[1, KH, KW, Cin * M]`` (``params.weight_shape``), so the model's constant
is passed unchanged. The numpy twin is :func:`dtmm_tvm.quant.conv.depthwise_conv2d`.

Two implementations behind one builder:

- for a C target (``Target`` kind ``c``: the dtmm Cortex-M targets) a one-statement PrimFunc that
  calls the C micro-kernel ``dtmm_depthwise_conv_s8`` (``dtmm_tvm/kernels``: MVE / DSP / portable
  paths, channel-vectorized over NHWC, per-pixel tap table). Its ``bias`` argument is the *folded*
  bias ``bias + input_offset * sum_taps w`` (attribute ``"dtmm.bias"`` = ``"folded_input_offset"``;
  compute it with :func:`kernel_bias`), so no offset add is left in the inner loop;
- otherwise (host builds with LLVM, ``schedule.micro_kernel=False``) the plain TIR loop nest,
  which takes the model's bias as is.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import tirx
from tvm.script import tirx as T

from ..kernels import target_isa, with_c_kernels
from ..quant.conv import Conv2DParams
from ..schedules.depthwise import CHANNEL_BLOCKS, DepthwiseSchedule, c_target, default_schedule, schedule_space
from ..schedules.records import lookup_schedule
from .common import BIAS_ATTR, FOLDED, requantize_macro, tap_in_bounds, with_attrs

__all__ = ["DepthwiseSchedule", "default_schedule", "schedule_space", "scratch_bytes", "fold_bias",
           "depthwise_conv2d_int8", "C_KERNEL"]

C_KERNEL = "dtmm_depthwise_conv_s8"
_POINTER_BYTES = 4  # Cortex-M


#: PrimFunc attribute telling the caller which bias the kernel expects.
#: MVE work area of the kernel after the pad pixel, with its alignment slack (``DW_MVE_AREA`` +
#: ``DW_MVE_ALIGN_SLACK`` of dtmm_depthwise_conv_s8.c): the transposed path's weight table and
#: patch, or the lane path's requantization table (kept off the stack).
_MVE_AREA_BYTES = 1600 + 12


def scratch_bytes(params: Conv2DParams, isa: str | None = None) -> int:
    """Arena scratch of the micro-kernel (mirrors ``dtmm_depthwise_conv_s8_get_buffer_size``
    for 32-bit pointers): the tap-pointer table plus one pad pixel (plus the MVE work area when
    ``isa == "mve"``), at least 20 bytes so the codegen always places it in the (aligned) arena."""
    kh, kw = params.kernel_size
    cin = params.input_shape[3]
    area = _MVE_AREA_BYTES if isa == "mve" else 0
    return max(_POINTER_BYTES * kh * kw + (cin + 3) // 4 * 4 + area, 20)


def fold_bias(params: Conv2DParams, weight, bias) -> np.ndarray:
    """``bias + input_offset * sum_{kh,kw} w[0, kh, kw, oc]`` as int32 (wrapping like the kernel).

    Exact: for an in-image tap ``(x + off) * w = x * w + off * w``; a padded tap reads
    ``input_zero_point`` in the kernel, ``(zp + off) = 0``, so it adds ``zp * w = -off * w`` and
    cancels its share of the folded term.
    """
    w = np.asarray(weight, dtype=np.int64).reshape(params.weight_shape)
    cout = params.out_channels
    b = np.zeros(cout, np.int64) if bias is None else np.asarray(bias, np.int64).reshape(-1)
    folded = b + (-params.input_zero_point) * w.sum(axis=(0, 1, 2))
    return folded.astype(np.int32)  # int64 -> int32 wraps, like the int32 accumulator


def depthwise_conv2d_int8(params: Conv2DParams, *, target=None,
                          schedule: DepthwiseSchedule | None = None) -> tirx.PrimFunc:
    """Build the int8 depthwise conv kernel of one layer.

    Parameters
    ----------
    params
        The layer, ``depthwise=True``; any kernel, stride, padding, dilation, multiplier.
    target
        Default ``Target.current()``; a C target selects the micro-kernel.
    schedule
        Default :func:`default_schedule`.

    Returns
    -------
    tvm.tirx.PrimFunc
        ``main(x, w, bias, mult, shift, out)``: ``x`` int8 ``params.input_shape`` (NHWC),
        ``w`` int8 ``[1, KH, KW, Cin * M]``, ``bias`` / ``mult`` / ``shift`` int32 ``[Cin * M]``,
        ``out`` int8 ``params.output_shape``.
        Attributes ``{"dtmm.op": "depthwise_conv2d", "op_pattern": 8}``; the micro-kernel
        version also ``"dtmm.c_kernels"``, ``"dtmm.schedule"`` and ``"dtmm.bias"`` (see
        :func:`kernel_bias`).
    """
    if not params.depthwise:
        raise ValueError("depthwise_conv2d_int8 needs depthwise params (depthwise=True)")
    if schedule is None:  # tuning records (dtmm_tvm.schedules.apply_records) first, then the default
        schedule = lookup_schedule("depthwise_conv2d", params, target)
    schedule = schedule or default_schedule(params, target)
    if not schedule.micro_kernel or c_target(target) is None:
        return _depthwise_tir(params)
    return _depthwise_micro(params, schedule, target_isa(c_target(target)))


def _depthwise_micro(params: Conv2DParams, schedule: DepthwiseSchedule, isa: str) -> tirx.PrimFunc:
    n_size, height, width, cin = params.input_shape
    _, oh_size, ow_size, cout = params.output_shape
    kh_size, kw_size = params.kernel_size
    x_shape, w_shape, o_shape = params.input_shape, params.weight_shape, params.output_shape
    scratch_words = scratch_bytes(params, isa) // 4
    scalars = [n_size, height, width, cin, params.depth_multiplier, oh_size, ow_size, kh_size, kw_size,
               *params.strides, params.padding[0], params.padding[1], *params.dilation,
               params.input_zero_point, params.output_zero_point, params.act_min, params.act_max,
               schedule.channel_block]

    @T.prim_func
    def depthwise_conv2d(
        x: T.Buffer(x_shape, "int8"),
        w: T.Buffer(w_shape, "int8"),
        bias: T.Buffer((cout,), "int32"),
        mult: T.Buffer((cout,), "int32"),
        shift: T.Buffer((cout,), "int32"),
        out: T.Buffer(o_shape, "int8"),
    ):
        scratch = T.decl_buffer((scratch_words,), "int32", scope="global")
        T.evaluate(T.call_extern("void", C_KERNEL, x.data, w.data, bias.data, mult.data, shift.data, out.data,
                                 scratch.data, *scalars))

    func = with_attrs(depthwise_conv2d, "depthwise_conv2d")
    func = with_c_kernels(func, [C_KERNEL])
    return func.with_attr({BIAS_ATTR: FOLDED, "dtmm.schedule": f"channel_block={schedule.channel_block}"})


def _depthwise_tir(params: Conv2DParams) -> tirx.PrimFunc:
    """The plain TIR loop nest (takes the model's bias)."""
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

    requantize_store_of_layer = requantize_macro(params)  # TFLite or ONNX records
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
            requantize_store_of_layer(out, (n, oh, ow, oc), acc[0] + bias[oc], mult[oc], shift[oc], out_zp, act_min, act_max)

    return with_attrs(depthwise_conv2d, "depthwise_conv2d")
