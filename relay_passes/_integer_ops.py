"""Lowerings of the elementwise, binary and data-movement ops for :mod:`.lower_qdq_to_integer`.

Each function takes the pass's mutator ``lw`` (for ``lw.resolve``, ``lw._call_kernel``,
``lw.visit_expr``) and returns the lowered Relax expression, or None when the chain is not its op.
How TVM's importer writes each TFLite int8 op, and what it becomes (TFLM's semantics in
:mod:`dtmm_tvm.quant`):

- ``quantize([act] multiply|subtract(dequantize(a), dequantize(b)))``: MUL / SUB kernels;
- ``quantize(sigmoid|tanh|leakyrelu(dequantize(x)))``, the hard-swish expression
  ``x * clip(x + 3, 0, 6) / 6`` on ``dequantize(x)``, ``quantize(relu|clip(dequantize(x)))`` (a
  standalone RELU / RELU6) and ``quantize(dequantize(x))`` (QUANTIZE int8 -> int8): one 256-entry
  lookup table each;
- ``quantize(x)`` of a float32 model input (QUANTIZE float -> int8) and a ``dequantize`` that is a
  model output (DEQUANTIZE): the quantize kernel and a float32 lookup table;
- ``quantize(concat(dequantize(...)))`` and ``quantize(maximum|minimum(dequantize(a), dequantize(b)))``:
  TFLM moves / compares the raw int8 values, so they become the same Relax op on int8;
- ``image.resize2d`` nearest neighbour (int8 and float32): a gather with TFLM's indices.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from dtmm_tvm.errors import UnsupportedOpError

from ._match import dtype_of, is_op, scalar, static_shape

INT8_MIN, INT8_MAX = -128, 127


def _dequantized(expr, resolve):
    """(int8 data, scale, zero point) of a per-tensor ``dequantize`` of int8, else None."""
    expr = resolve(expr)
    if not is_op(expr, "relax.dequantize") or dtype_of(expr.args[0]) != "int8":
        return None
    scale, zero_point = scalar(expr.args[1]), scalar(expr.args[2])
    if scale is None or zero_point is None:
        return None
    return expr.args[0], float(np.float32(scale)), int(zero_point)


def _full_range(act_min, act_max) -> bool:
    return act_min <= INT8_MIN and act_max >= INT8_MAX


def _table_call(lw, op: str, x_int8, table: np.ndarray, out_dtype: str = "int8", **layer):
    from dtmm_tvm.ops.lookup_table import lookup_table_int8

    shape = static_shape(x_int8)
    func = lookup_table_int8(shape, out_dtype, op)
    info = {"input_shape": list(shape), "output_shape": list(shape), **layer}
    return lw._call_kernel(func, op, [x_int8, np.ascontiguousarray(table)], shape, info, out_dtype=out_dtype)


def _hard_swish_input(body, resolve):
    """The ``dequantize`` under TVM's hard-swish expression ``x * clip(x + 3, 0, 6) / 6``, else None."""
    if not is_op(body, "relax.divide") or scalar(body.args[1]) != 6.0:
        return None
    product = resolve(body.args[0])
    if not is_op(product, "relax.multiply"):
        return None
    x, relu6 = product.args[0], resolve(product.args[1])
    if not is_op(relu6, "relax.clip") or tuple(float(b.value) for b in relu6.args[1:3]) != (0.0, 6.0):
        return None
    shifted = resolve(relu6.args[0])
    if not is_op(shifted, "relax.add") or scalar(shifted.args[1]) != 3.0 or not shifted.args[0].same_as(x):
        return None
    return x


def lower_quantized(lw, body, activation, out_scale, out_zp, act_min, act_max):
    """Lower a ``quantize`` root whose (activation-stripped) operand is ``body``; None if not ours."""
    from dtmm_tvm.quant import activations as act
    from dtmm_tvm.quant.hard_swish import hard_swish_int8, hard_swish_params
    from dtmm_tvm.quant.logistic import LOGISTIC_OUTPUT, TANH_OUTPUT, logistic_int8, sigmoid_params, tanh_int8

    resolve = lw.resolve
    # QUANTIZE float32 -> int8 of a model input.
    if isinstance(body, relax.Var) and "float" in dtype_of(body) and activation is None:
        return _quantize_input(lw, body, out_scale, out_zp)
    if is_op(body, "relax.multiply") or is_op(body, "relax.subtract"):
        return _lower_mul_sub(lw, body, out_scale, out_zp, act_min, act_max)
    if is_op(body, "relax.maximum") or is_op(body, "relax.minimum"):
        return _lower_max_min(lw, body, act_min, act_max)
    if is_op(body, "relax.concat"):
        return _lower_concat(lw, body, out_scale, out_zp, act_min, act_max)

    # Elementwise ops of one int8 tensor -> lookup tables.
    if activation is not None:
        x = _dequantized(body, resolve)
        if x is None:
            return None
        x_int8, scale, zp = x
        if activation == "RELU":
            p = act.relu_params(scale, zp, out_scale, out_zp)
            table = act.requantize_int8(act.INT8_VALUES, p)
            return _table_call(lw, "relu", x_int8, np.clip(table, act_min, act_max).astype(np.int8))
        if activation == "RELU6":
            zero, six = act.relu6_bounds(scale, zp)
            return _table_call(lw, "relu6", x_int8, act.relu6_int8(act.INT8_VALUES, zero, six))
        raise UnsupportedOpError(f"int8 {activation} as a standalone op: TFLM has no int8 kernel for it")
    if not _full_range(act_min, act_max):
        return None
    hard_swish_x = _hard_swish_input(body, resolve)
    if hard_swish_x is not None:
        x = _dequantized(hard_swish_x, resolve)
        if x is None:
            return None
        try:
            p = hard_swish_params(x[1], x[2], out_scale, out_zp)
        except ValueError as err:
            raise UnsupportedOpError(f"HARD_SWISH: {err}") from None
        return _table_call(lw, "hard_swish", x[0], hard_swish_int8(act.INT8_VALUES, p))
    unary = {"relax.sigmoid": "logistic", "relax.tanh": "tanh", "relax.nn.leakyrelu": "leaky_relu"}
    op = next((name for key, name in unary.items() if is_op(body, key)), None)
    if op is not None:
        x = _dequantized(body.args[0], resolve)
        if x is None:
            return None
        x_int8, scale, zp = x
        if op == "leaky_relu":
            alpha = float(body.attrs.alpha)
            table = act.leaky_relu_int8(act.INT8_VALUES, act.leaky_relu_params(scale, zp, out_scale, out_zp, alpha))
            return _table_call(lw, op, x_int8, table, alpha=alpha)
        expected = LOGISTIC_OUTPUT if op == "logistic" else TANH_OUTPUT
        if np.float32(out_scale) != np.float32(expected[0]) or out_zp != expected[1]:
            raise UnsupportedOpError(
                f"int8 {op.upper()} with output scale {out_scale} and zero point {out_zp}: TFLM's kernel "
                f"requires scale {expected[0]} and zero point {expected[1]} (what the converter writes)"
            )
        fn = logistic_int8 if op == "logistic" else tanh_int8
        return _table_call(lw, op, x_int8, fn(act.INT8_VALUES, sigmoid_params(scale, zp)))
    # QUANTIZE int8 -> int8 (a requantization).
    x = _dequantized(body, resolve)
    if x is not None:
        p = act.quantize_params(x[1], x[2], out_scale, out_zp)
        return _table_call(lw, "quantize", x[0], act.requantize_int8(act.INT8_VALUES, p))
    return None


def _lower_mul_sub(lw, body, out_scale, out_zp, act_min, act_max):
    from dtmm_tvm.ops.mul_sub import mul_int8, sub_int8
    from dtmm_tvm.quant.mul import mul_params
    from dtmm_tvm.quant.sub import sub_params

    lhs, rhs = _dequantized(body.args[0], lw.resolve), _dequantized(body.args[1], lw.resolve)
    if lhs is None or rhs is None:
        return None
    is_mul = is_op(body, "relax.multiply")
    make_params, build, op = (mul_params, mul_int8, "mul") if is_mul else (sub_params, sub_int8, "sub")
    params = make_params(lhs[1], lhs[2], rhs[1], rhs[2], out_scale, out_zp, act_min, act_max)
    shape1, shape2 = static_shape(lhs[0]), static_shape(rhs[0])
    out_shape = static_shape(body)
    layer = {"input_shape": list(shape1), "output_shape": list(out_shape)}
    return lw._call_kernel(build(shape1, shape2, params), op, [lhs[0], rhs[0]], out_shape, layer)


def _lower_max_min(lw, body, act_min, act_max):
    """TFLM's MAXIMUM / MINIMUM compare the raw int8 values (no rescaling), so do we."""
    lhs, rhs = _dequantized(body.args[0], lw.resolve), _dequantized(body.args[1], lw.resolve)
    if lhs is None or rhs is None or not _full_range(act_min, act_max):
        return None
    op = relax.op.maximum if is_op(body, "relax.maximum") else relax.op.minimum
    return op(lw.visit_expr(lhs[0]), lw.visit_expr(rhs[0]))


def _lower_concat(lw, body, out_scale, out_zp, act_min, act_max):
    """TFLM's int8 CONCATENATION copies raw values and requires every input to have the output's
    scale and zero point (its Prepare fails otherwise), so a mismatch is refused, not rescaled."""
    fields = lw.resolve(body.args[0])
    if not isinstance(fields, relax.Tuple):
        return None
    inputs = [_dequantized(f, lw.resolve) for f in fields.fields]
    if any(x is None for x in inputs) or not _full_range(act_min, act_max):
        return None
    for x in inputs:
        if np.float32(x[1]) != np.float32(out_scale) or x[2] != out_zp:
            raise UnsupportedOpError(
                f"int8 CONCATENATION of an input with scale {x[1]}, zero point {x[2]} into output scale "
                f"{out_scale}, zero point {out_zp}: TFLM requires equal quantization (re-export the model)"
            )
    return relax.op.concat([lw.visit_expr(x[0]) for x in inputs], axis=int(body.attrs.axis))


def _quantize_input(lw, x, out_scale, out_zp):
    from dtmm_tvm.ops.quantize import quantize_float32_to_int8

    shape = static_shape(x)
    func = quantize_float32_to_int8(shape, out_zp)
    scale = np.array([out_scale], np.float32)
    layer = {"input_shape": list(shape), "output_shape": list(shape)}
    return lw._call_kernel(func, "quantize_input", [x, scale], shape, layer)


def lower_call(lw, call):
    """Calls lowered on their own: DEQUANTIZE at a model output and nearest-neighbour resize."""
    from dtmm_tvm.quant.activations import INT8_VALUES, dequantize_float32

    if is_op(call, "relax.dequantize") and call in getattr(lw, "dtmm_outputs", ()):
        x = _dequantized(call, lw.resolve)
        if x is None or dtype_of(call) != "float32":
            return None
        return _table_call(lw, "dequantize", x[0], dequantize_float32(INT8_VALUES, x[1], x[2]), "float32")
    if is_op(call, "relax.image.resize2d"):
        return _lower_resize(lw, call)
    return None


def _lower_resize(lw, call):
    from dtmm_tvm.ops.resize import resize_nearest

    attrs = call.attrs
    if attrs.method != "nearest_neighbor":
        return None
    dtype = dtype_of(call)
    if attrs.layout != "NHWC" or dtype not in ("int8", "float32"):
        raise UnsupportedOpError(f"RESIZE_NEAREST_NEIGHBOR on a {dtype} {attrs.layout} tensor is not supported")
    mode = str(attrs.coordinate_transformation_mode)
    if mode not in ("asymmetric", "align_corners", "half_pixel"):
        raise UnsupportedOpError(f"RESIZE_NEAREST_NEIGHBOR with coordinate mode {mode} is not supported")
    x = call.args[0]
    in_shape, out_shape = static_shape(x), static_shape(call)
    func = resize_nearest(in_shape, out_shape[1:3], mode == "align_corners", mode == "half_pixel", dtype)
    layer = {"input_shape": list(in_shape), "output_shape": list(out_shape), "align_corners": mode == "align_corners",
             "half_pixel_centers": mode == "half_pixel"}
    return lw._call_kernel(func, "resize_nearest_neighbor", [x], out_shape, layer, out_dtype=dtype)


def model_output_values(func, resolve) -> set:
    """The calls whose values ``func`` returns (through a returned tuple)."""
    result = resolve(func.body.body)
    fields = result.fields if isinstance(result, relax.Tuple) else [result]
    return {resolve(f) for f in fields}
