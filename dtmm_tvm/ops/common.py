"""Helpers shared by the conv / depthwise / fully connected TIR kernel builders.

The kernels are block-less TVMScript loop nests (``tvm.script.tirx``): each is one complete
TFLite operator (accumulate, add bias, requantize, clamp) that writes straight to its output. The
scalar accumulator is a 1-element ``"global"`` buffer, which TVM's C codegen emits as
``int32_t acc[1]`` on the stack (CodeGenC rejects ``"local"`` allocations).
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from ..quant.conv import Conv2DParams
from .fixed_point import rounding_divide_by_pot, saturating_rounding_doubling_high_mul

# A kernel is a whole TFLite operator: Relax's FuseOps must never merge it with a neighbour
# (FuseTIR cannot fuse block-less TIR), so every kernel is marked opaque.
OPAQUE = 8


def tap_in_bounds(ih, iw, params: Conv2DParams):
    """TFLM's ``is_point_inside_image`` for one kernel tap, reduced to the checks that can fail.

    A side needs a check only when the padding or the last window can reach past it; for a
    VALID conv this returns the Python ``True`` and TVMScript drops the ``if`` altogether.

    Parameters
    ----------
    ih, iw
        The tap's input row and column expressions.
    params
        The layer (kernel taps span at most ``KH`` x ``KW`` positions).
    """
    _, height, width, _ = params.input_shape
    _, oh_size, ow_size, _ = params.output_shape
    kh_size, kw_size = params.kernel_size
    top, left = params.padding[0], params.padding[1]
    last_row = (oh_size - 1) * params.strides[0] - top + (kh_size - 1) * params.dilation[0]
    last_col = (ow_size - 1) * params.strides[1] - left + (kw_size - 1) * params.dilation[1]
    zero = tirx.const(0, "int32")
    checks = []
    if top > 0:
        checks.append(zero <= ih)
    if last_row >= height:
        checks.append(ih < height)
    if left > 0:
        checks.append(zero <= iw)
    if last_col >= width:
        checks.append(iw < width)
    return tirx.all(*checks) if checks else True


@T.macro
def requantize_store(out, index, total, mult, shift, out_zp, act_min, act_max):
    """``out[index] = clamp(MultiplyByQuantizedMultiplier(total, mult, shift) + out_zp)``.

    The same arithmetic as :func:`dtmm_tvm.ops.fixed_point.requantize` (TFLM's double rounding),
    staged through lets so every subexpression is computed once and the C stays readable.
    """
    rq_total: T.let = total
    rq_shift: T.let = shift
    rq_left: T.let = T.max(rq_shift, 0)
    rq_right: T.let = T.max(0 - rq_shift, 0)
    rq_shifted: T.let = rq_total << rq_left
    # ``mult`` stays an inline load: let-binding it makes TVM's integer analyzer take seconds
    # per kernel on the int64 product (measured), for no change in the generated C.
    rq_high: T.let = saturating_rounding_doubling_high_mul(rq_shifted, mult)
    rq_scaled: T.let = rounding_divide_by_pot(rq_high, rq_right) + out_zp
    out[index] = T.Cast("int8", T.max(T.min(rq_scaled, act_max), act_min))


@T.macro
def requantize_store_f32(out, index, total, mult, shift, out_zp, act_min, act_max):
    """``requantize_store`` for ONNX float32 records (``mult`` holds a float32 scale's bits):
    ``out[index] = clamp(RoundHalfToEven(float(total) * scale) + out_zp)``, onnxruntime's
    MlasRequantizeOutput (see :mod:`dtmm_tvm.quant.onnx`); ``shift`` carries only the tag."""
    rq_value: T.let = T.Cast("float32", total) * T.reinterpret("float32", mult)
    rq_clamped: T.let = T.max(T.min(rq_value, T.float32(65536)), T.float32(-65536))
    rq_scaled: T.let = T.Cast("int32", T.nearbyint(rq_clamped)) + out_zp
    out[index] = T.Cast("int8", T.max(T.min(rq_scaled, act_max), act_min))


def requantize_macro(params):
    """The requantize-and-store macro of a layer's requantization mode (``params.requantization``)."""
    return requantize_store_f32 if getattr(params, "requantization", "tflite") == "onnx" else requantize_store


def with_attrs(func: tirx.PrimFunc, op_name: str) -> tirx.PrimFunc:
    """Attach ``{"dtmm.op": op_name, "op_pattern": 8}`` to a freshly parsed kernel."""
    return func.with_attr({"dtmm.op": op_name, "op_pattern": OPAQUE})


#: PrimFunc attribute of kernels that expect the input offset folded into their bias constant.
BIAS_ATTR = "dtmm.bias"
FOLDED = "folded_input_offset"


def kernel_bias(func: tirx.PrimFunc, bias, fold) -> "np.ndarray":
    """The bias constant to pass to ``func``: ``fold()`` (the bias with the input offset folded
    in) when ``func`` carries ``BIAS_ATTR == FOLDED``, else the model's bias as int32."""
    import numpy as np

    attrs = func.attrs
    if attrs is not None and BIAS_ATTR in attrs and str(attrs[BIAS_ATTR]) == FOLDED:
        return fold()
    return np.asarray(bias, np.int32)
