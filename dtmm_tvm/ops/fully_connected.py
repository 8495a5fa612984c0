"""Int8 fully connected layer (TFLite FULLY_CONNECTED) as a TIR kernel.

Mirrors TFLM's ``reference_integer_ops::FullyConnected``: ``acc = sum_k (x + input_offset) *
(w + weights_offset) + bias``, then requantization and clamp. Multipliers are per output
channel; a per-tensor model passes its one multiplier repeated ``O`` times (what
:func:`dtmm_tvm.quant.conv.conv_layer_from_tflite` returns). The numpy twin is
:func:`dtmm_tvm.quant.conv.fully_connected`.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from ..quant.conv import FullyConnectedParams
from .common import requantize_store, with_attrs


def fully_connected_int8(params: FullyConnectedParams) -> tirx.PrimFunc:
    """Build the int8 fully connected kernel of one layer.

    Parameters
    ----------
    params
        The layer.

    Returns
    -------
    tvm.tirx.PrimFunc
        ``main(x, w, bias, mult, shift, out)``: ``x`` int8 ``[N, K]``, ``w`` int8 ``[O, K]``,
        ``bias`` / ``mult`` / ``shift`` int32 ``[O]`` (zeros as bias when the model has none),
        ``out`` int8 ``[N, O]``. Attributes ``{"dtmm.op": "fully_connected", "op_pattern": 8}``.
    """
    n_size, k_size = params.input_shape
    o_size = params.weight_shape[0]
    input_offset = -params.input_zero_point
    weights_offset = -params.weight_zero_point
    out_zp, act_min, act_max = params.output_zero_point, params.act_min, params.act_max

    def weight(value):
        # int8 TFLite weights are symmetric: emit the offset add only when there is one.
        widened = tirx.Cast("int32", value)
        return widened + weights_offset if weights_offset else widened

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
            requantize_store(out, (n, o), acc[0] + bias[o], mult[o], shift[o], out_zp, act_min, act_max)

    return with_attrs(fully_connected, "fully_connected")
