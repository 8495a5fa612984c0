"""Int8 fully connected layer (TFLite FULLY_CONNECTED) as a TIR kernel.

Mirrors TFLM's ``reference_integer_ops::FullyConnected``: ``acc = sum_k (x + input_offset) *
(w + weights_offset) + bias``, then requantization and clamp. Multipliers are per output
channel; a per-tensor model passes its one multiplier repeated ``O`` times (what
:func:`dtmm_tvm.quant.conv.conv_layer_from_tflite` returns). The numpy twin is
:func:`dtmm_tvm.quant.conv.fully_connected`.

Two implementations behind one builder:

- for a C target (``Target`` kind ``c``) and ``weights_offset == 0`` (always so for TFLite int8)
  a one-statement PrimFunc calling the C micro-kernel ``dtmm_fully_connected_s8``
  (``dtmm_tvm/kernels``: MVE VMLADAVA / DSP SMLAD / portable, ``rows_per_block`` outputs sharing
  each input load). Its ``bias`` argument is the *folded* bias ``bias + input_offset *
  sum_k w[o, k]`` (attribute ``"dtmm.bias"`` = ``"folded_input_offset"``; compute it with
  :func:`kernel_bias`), so the inner loop is a plain int8 dot product;
- otherwise the plain TIR loop nest, which takes the model's bias as is.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import tirx
from tvm.script import tirx as T

from ..kernels import target_isa, with_c_kernels
from ..quant.conv import FullyConnectedParams
from ..schedules.fully_connected import (ROWS_PER_BLOCK, FullyConnectedSchedule, c_target, default_schedule,
                                         schedule_space)
from ..schedules.records import lookup_schedule
from .common import BIAS_ATTR, FOLDED, requantize_macro, with_attrs

__all__ = ["FullyConnectedSchedule", "default_schedule", "schedule_space", "scratch_bytes", "fold_bias",
           "fully_connected_int8", "C_KERNEL"]

C_KERNEL = "dtmm_fully_connected_s8"
def scratch_bytes(params: FullyConnectedParams) -> int:
    """Arena scratch of the micro-kernel (``dtmm_fully_connected_s8_get_buffer_size``): none."""
    return 0


def fold_bias(params: FullyConnectedParams, weight, bias) -> np.ndarray:
    """``bias + input_offset * sum_k w[o, k]`` as int32 (wrapping like the kernel's accumulator)."""
    w = np.asarray(weight, dtype=np.int64).reshape(params.weight_shape)
    o = params.weight_shape[0]
    b = np.zeros(o, np.int64) if bias is None else np.asarray(bias, np.int64).reshape(-1)
    return (b + (-params.input_zero_point) * w.sum(axis=1)).astype(np.int32)


def fully_connected_int8(params: FullyConnectedParams, *, target=None,
                         schedule: FullyConnectedSchedule | None = None) -> tirx.PrimFunc:
    """Build the int8 fully connected kernel of one layer.

    Parameters
    ----------
    params
        The layer.
    target
        Default ``Target.current()``; a C target selects the micro-kernel.
    schedule
        Default :func:`default_schedule`.

    Returns
    -------
    tvm.tirx.PrimFunc
        ``main(x, w, bias, mult, shift, out)``: ``x`` int8 ``[N, K]``, ``w`` int8 ``[O, K]``,
        ``bias`` / ``mult`` / ``shift`` int32 ``[O]`` (zeros as bias when the model has none),
        ``out`` int8 ``[N, O]``. Attributes ``{"dtmm.op": "fully_connected", "op_pattern": 8}``;
        the micro-kernel version also ``"dtmm.c_kernels"``, ``"dtmm.schedule"`` and
        ``"dtmm.bias"`` (see :func:`kernel_bias`).
    """
    if schedule is None:  # tuning records (dtmm_tvm.schedules.apply_records) first, then the default
        schedule = lookup_schedule("fully_connected", params, target)
    schedule = schedule or default_schedule(params, target)
    if not schedule.micro_kernel or c_target(target) is None or params.weight_zero_point != 0:
        return _fully_connected_tir(params)
    return _fully_connected_micro(params, schedule)


def _fully_connected_micro(params: FullyConnectedParams, schedule: FullyConnectedSchedule) -> tirx.PrimFunc:
    n_size, k_size = params.input_shape
    o_size = params.weight_shape[0]
    scalars = [n_size, k_size, o_size, params.output_zero_point, params.act_min, params.act_max,
               schedule.rows_per_block]

    @T.prim_func
    def fully_connected(
        x: T.Buffer((n_size, k_size), "int8"),
        w: T.Buffer((o_size, k_size), "int8"),
        bias: T.Buffer((o_size,), "int32"),
        mult: T.Buffer((o_size,), "int32"),
        shift: T.Buffer((o_size,), "int32"),
        out: T.Buffer((n_size, o_size), "int8"),
    ):
        T.evaluate(T.call_extern("void", C_KERNEL, x.data, w.data, bias.data, mult.data, shift.data, out.data,
                                 *scalars))

    func = with_attrs(fully_connected, "fully_connected")
    func = with_c_kernels(func, [C_KERNEL])
    return func.with_attr({BIAS_ATTR: FOLDED, "dtmm.schedule": f"rows_per_block={schedule.rows_per_block}"})


def _fully_connected_tir(params: FullyConnectedParams) -> tirx.PrimFunc:
    """The plain TIR loop nest (takes the model's bias)."""
    n_size, k_size = params.input_shape
    o_size = params.weight_shape[0]
    input_offset = -params.input_zero_point
    weights_offset = -params.weight_zero_point
    out_zp, act_min, act_max = params.output_zero_point, params.act_min, params.act_max

    def weight(value):
        # int8 TFLite weights are symmetric: emit the offset add only when there is one.
        widened = tirx.Cast("int32", value)
        return widened + weights_offset if weights_offset else widened

    requantize_store_of_layer = requantize_macro(params)  # TFLite or ONNX records
    @T.prim_func
    def fully_connected(
        x: T.Buffer((n_size, k_size), "int8"),
        w: T.Buffer((o_size, k_size), "int8"),
        bias: T.Buffer((o_size,), "int32"),
        mult: T.Buffer((o_size,), "int32"),
        shift: T.Buffer((o_size,), "int32"),
        out: T.Buffer((n_size, o_size), "int8"),
    ):
        acc = T.decl_buffer((1,), "int32", scope="global")
        for n, o in T.grid(n_size, o_size):
            acc[0] = 0
            for k in range(k_size):
                acc[0] = acc[0] + (T.Cast("int32", x[n, k]) + input_offset) * weight(w[o, k])
            requantize_store_of_layer(out, (n, o), acc[0] + bias[o], mult[o], shift[o], out_zp, act_min, act_max)

    return with_attrs(fully_connected, "fully_connected")
