"""LowerQDQToInteger: int8 quantize/dequantize chains -> integer-only kernels, bit-exact with TFLM.

TVM imports a full-int8 TFLite model as float arithmetic wrapped in quantize/dequantize, e.g. a
conv becomes ``quantize(add(conv2d(dequantize(x), dequantize(W)), dequantize(b)))`` (+ ``clip``
for a fused ReLU). Run as float, that needs an FPU and is up to 1 LSB off TFLite, which uses
fixed-point multipliers. This pass recognises each such chain and replaces it with one
``call_tir`` to an integer kernel from :mod:`dtmm_tvm.ops` that implements TFLM's arithmetic,
with the requantization parameters computed here, once, at compile time.

Chains recognised (root last):
- conv2d / depthwise conv2d: ``[clip] quantize [add dequantize(bias)] conv2d dequantize(x), dequantize(W)``
- fully connected: the same with ``matmul`` and ``permute_dims(W)``
- add: ``[clip] quantize add dequantize(a), dequantize(b)``
- mean over H, W: ``quantize mean dequantize(x)``
- softmax: ``quantize softmax dequantize(x)``
- average pool: ``astype(int8) avg_pool2d astype(int32)`` (TVM's integer pool truncates; TFLM rounds)
- max pool: ``max_pool2d`` on int8 (already exact; lowered to our kernel to avoid TOPI's pad buffer)
- MUL, SUB, the elementwise ops (lookup tables), QUANTIZE/DEQUANTIZE, CONCATENATION,
  MAXIMUM/MINIMUM and nearest-neighbour resize: see :mod:`._integer_ops`
Reshape and clip already run on int8 in the imported graph and stay as they are. SOFTMAX's beta,
which TVM's importer drops, comes from the module attribute ``dtmm.softmax_betas`` set by the
frontend.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from dtmm_tvm.errors import UnsupportedOpError

from . import _integer_ops
from ._match import ValueResolver, drop_unreferenced_prim_funcs, const_value, dtype_of, is_const, is_op, scalar, static_shape

INT8_MIN, INT8_MAX = -128, 127


def _activation_range(root, resolve) -> tuple[object, int, int]:
    """Split an optional int8 ``clip`` off a chain root: (inner expr, act_min, act_max)."""
    if is_op(root, "relax.clip") and dtype_of(root) == "int8":
        low, high = (int(round(float(bound.value))) for bound in root.args[1:3])
        return resolve(root.args[0]), max(low, INT8_MIN), min(high, INT8_MAX)
    return root, INT8_MIN, INT8_MAX


def _float_activation(expr) -> str | None:
    """The TFLite name of a float ReLU-family op (``relu``, ``clip(0, 6)``, ``clip(-1, 1)``)."""
    if is_op(expr, "relax.nn.relu"):
        return "RELU"
    if is_op(expr, "relax.clip") and "float" in dtype_of(expr):
        bounds = tuple(float(b.value) for b in expr.args[1:3])
        return {(0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1"}.get(bounds)
    return None


def _quantize_params(expr):
    """(data, scale, zero_point) of a per-tensor int8 ``quantize``, else None."""
    if not is_op(expr, "relax.quantize") or dtype_of(expr) != "int8":
        return None
    scale, zero_point = scalar(expr.args[1]), scalar(expr.args[2])
    if scale is None or zero_point is None:
        return None
    return expr.args[0], float(np.float32(scale)), int(zero_point)


def _dequantize_params(expr, resolve):
    """(int8 data, scale, zero_point) of a per-tensor ``dequantize`` of an int8 tensor, else None."""
    expr = resolve(expr)
    if not is_op(expr, "relax.dequantize") or dtype_of(expr.args[0]) != "int8":
        return None
    scale, zero_point = scalar(expr.args[1]), scalar(expr.args[2])
    if scale is None or zero_point is None:
        return None
    return expr.args[0], float(np.float32(scale)), int(zero_point)


_LAYOUT_OPS = ("relax.permute_dims", "relax.reshape")


@dataclass(frozen=True)
class ConstantWeight:
    """A quantized constant exactly as its consumer sees it.

    ``values`` (int8) and ``scales`` (float32, one per element) have every layout op of the chain
    between the constant and the consumer applied, in order, so their axes are the consumer's
    axes (``matmul``: [K, O]; ``conv2d``: its ``kernel_layout``). Nothing is inferred from shapes:
    a square weight matrix is as unambiguous as any other. ``chain`` names the ops, for messages.
    """

    values: np.ndarray
    scales: np.ndarray
    chain: tuple[str, ...]

    def channel_scales(self, axis: int, what: str) -> np.ndarray:
        """The per-channel scales along ``axis``; refuses scales that vary along any other axis."""
        per_row = np.moveaxis(self.scales, axis, 0).reshape(self.scales.shape[axis], -1)
        if per_row.size and np.any(per_row != per_row[:, :1]):
            raise UnsupportedOpError(
                f"{what}: weight scales are not per output channel after the layout chain "
                f"{' -> '.join(self.chain)}; this lowering does not understand that chain"
            )
        return np.ascontiguousarray(per_row[:, 0]).astype(np.float32)


def _layout_step(values: np.ndarray, op) -> tuple[np.ndarray, str]:
    """Apply one Relax layout op to a numpy array (numpy and Relax share these semantics)."""
    if is_op(op, "relax.permute_dims"):
        axes = None if op.attrs.axes is None else [int(a) for a in op.attrs.axes]
        return np.transpose(values, axes), f"permute_dims{axes if axes is not None else '(reversed)'}"
    shape = static_shape(op)
    return values.reshape(shape), f"reshape{list(shape)}"


def _constant_dequantize(expr, resolve) -> ConstantWeight | None:
    """The int8 weight and its scales of ``layout*(dequantize(layout*(const int8)))``.

    Layout ops are ``permute_dims`` and ``reshape``, on either side of the ``dequantize``; all of
    them are applied, in order, so the result is in the consumer's layout (see
    :class:`ConstantWeight`). Returns None when ``expr`` is not such a chain or the weights are
    not symmetric.
    """
    expr = resolve(expr)
    outer = []
    while is_op(expr, "relax.reshape") or is_op(expr, "relax.permute_dims"):
        outer.append(expr)
        expr = resolve(expr.args[0])
    if not is_op(expr, "relax.dequantize"):
        return None
    data = resolve(expr.args[0])
    inner = []
    while is_op(data, "relax.reshape") or is_op(data, "relax.permute_dims"):
        inner.append(data)
        data = resolve(data.args[0])
    if not is_const(data) or dtype_of(data) != "int8" or not is_const(expr.args[1]) or not is_const(expr.args[2]):
        return None
    zero_points = const_value(expr.args[2]).reshape(-1)
    if np.any(zero_points != 0):
        return None
    values = const_value(data)
    chain = ["const" + str(list(values.shape))]
    for op in reversed(inner):
        values, step = _layout_step(values, op)
        chain.append(step)
    # Per-element scales in the dequantize's own layout, then carried through the outer ops.
    axis = int(expr.attrs.axis)
    scale = const_value(expr.args[1]).astype(np.float32).reshape(-1)
    if scale.size == 1:
        scales = np.full(values.shape, scale[0], np.float32)
    elif values.ndim and scale.size == values.shape[axis % values.ndim]:
        view = [1] * values.ndim
        view[axis % values.ndim] = scale.size
        scales = np.broadcast_to(scale.reshape(view), values.shape).copy()
    else:
        return None
    chain.append(f"dequantize(axis={axis})")
    for op in reversed(outer):
        values, step = _layout_step(values, op)
        scales, _ = _layout_step(scales, op)
        chain.append(step)
    return ConstantWeight(values, scales, tuple(chain))


def _bias(expr, resolve, channels: int):
    """int32 bias values of ``dequantize(const int32)``, else None."""
    expr = resolve(expr)
    if not is_op(expr, "relax.dequantize"):
        return None
    data = resolve(expr.args[0])
    if not is_const(data) or dtype_of(data) != "int32":
        return None
    values = const_value(data).astype(np.int32).reshape(-1)
    return values if values.size == channels else None


def _layer_attr(info: dict) -> str:
    return json.dumps(info, sort_keys=True)


@mutator
class _Lowerer(PyExprMutator):
    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.mod_ = mod
        self.resolve = None
        self.counters: dict[str, int] = {}

    # --- plumbing -------------------------------------------------------------------------
    def rewrite(self, func: relax.Function) -> relax.Function:
        self.resolve = ValueResolver(func)
        attrs = self.mod_.attrs
        self.softmax_betas = json.loads(str(attrs["dtmm.softmax_betas"])) if attrs and "dtmm.softmax_betas" in attrs else []
        # A quantize wrapped by an int8 clip (a fused ReLU) is lowered once, at the clip.
        self.wrapped = set()
        for value in relax.analysis.get_var2val(func).values():
            if is_op(value, "relax.clip") and dtype_of(value) == "int8":
                inner = self.resolve(value.args[0])
                if is_op(inner, "relax.quantize"):
                    self.wrapped.add(inner)
        self.dtmm_outputs = _integer_ops.model_output_values(func, self.resolve)
        return self.visit_expr(func)

    def _name(self, op: str) -> str:
        index = self.counters.get(op, 0)
        self.counters[op] = index + 1
        return f"{op}_{index}"

    def _call_kernel(self, prim_func, op: str, args, out_shape, layer: dict, out_dtype: str = "int8"):
        name = self._name(op)
        layer = dict(layer, name=name, op=op)
        prim_func = prim_func.with_attr("dtmm.layer", _layer_attr(layer))
        gvar = self.builder_.add_func(prim_func, name)
        new_args = [self.visit_expr(a) if not isinstance(a, np.ndarray) else relax.const(a) for a in args]
        return relax.call_tir(gvar, new_args, relax.TensorType(list(out_shape), out_dtype))

    # --- dispatch -------------------------------------------------------------------------
    def visit_call_(self, call):
        lowered = None
        if dtype_of(call) == "int8" and (
            is_op(call, "relax.clip") or (is_op(call, "relax.quantize") and call not in self.wrapped)
        ):
            lowered = self._lower_quantized_root(call)
        elif is_op(call, "relax.astype") and dtype_of(call) == "int8":
            lowered = self._lower_avg_pool(call)
        elif is_op(call, "relax.nn.max_pool2d") and dtype_of(call) == "int8":
            lowered = self._lower_max_pool(call)
        elif is_op(call, "relax.dequantize") or is_op(call, "relax.image.resize2d"):
            lowered = _integer_ops.lower_call(self, call)
        return lowered if lowered is not None else super().visit_call_(call)

    def _lower_quantized_root(self, root):
        inner, act_min, act_max = _activation_range(root, self.resolve)
        quantized = _quantize_params(inner)
        if quantized is None:
            return None
        data, out_scale, out_zp = quantized
        body = self.resolve(data)
        # A fused activation the importer kept in float (e.g. ADD + RELU): fold it into the clamp.
        activation = _float_activation(body)
        if activation is not None:
            from dtmm_tvm.quant.fixed_point import activation_range

            low, high = activation_range(activation, out_scale, out_zp)
            act_min, act_max = max(act_min, low), min(act_max, high)
            body = self.resolve(body.args[0])
        # MUL, SUB, elementwise ops, requantize, concat, max/min, float input quantize.
        lowered = _integer_ops.lower_quantized(self, body, activation, out_scale, out_zp, act_min, act_max)
        if lowered is not None:
            return lowered
        bias_expr = None
        if is_op(body, "relax.add"):
            lhs, rhs = self.resolve(body.args[0]), self.resolve(body.args[1])
            if is_op(lhs, "relax.nn.conv2d") or is_op(lhs, "relax.matmul"):
                body, bias_expr = lhs, body.args[1]
            elif is_op(rhs, "relax.nn.conv2d") or is_op(rhs, "relax.matmul"):
                body, bias_expr = rhs, body.args[0]
            else:
                return self._lower_add(body, out_scale, out_zp, act_min, act_max)
        if is_op(body, "relax.nn.conv2d"):
            return self._lower_conv2d(body, bias_expr, out_scale, out_zp, act_min, act_max, root)
        if is_op(body, "relax.matmul"):
            return self._lower_fully_connected(body, bias_expr, out_scale, out_zp, act_min, act_max, root)
        if is_op(body, "relax.mean"):
            return self._lower_mean(body, out_scale, out_zp, root)
        if is_op(body, "relax.nn.softmax"):
            return self._lower_softmax(body, out_scale, out_zp, root)
        return None

    # --- conv2d / depthwise ---------------------------------------------------------------
    def _lower_conv2d(self, conv, bias_expr, out_scale, out_zp, act_min, act_max, root):
        from dtmm_tvm.ops.conv2d import conv2d_int8
        from dtmm_tvm.ops.depthwise_conv2d import depthwise_conv2d_int8
        from dtmm_tvm.ops.common import kernel_bias
        from dtmm_tvm.ops.depthwise_conv2d import fold_bias as depthwise_fold_bias
        from dtmm_tvm.quant.conv import Conv2DParams, conv_output_multipliers

        attrs = conv.attrs
        x = _dequantize_params(conv.args[0], self.resolve)
        weights = _constant_dequantize(conv.args[1], self.resolve)
        if x is None or weights is None or attrs.data_layout != "NHWC" or attrs.out_layout != "NHWC":
            return None
        x_int8, in_scale, in_zp = x
        groups = int(attrs.groups)
        input_shape = static_shape(x_int8)
        out_shape = static_shape(root)
        channels_out = out_shape[3]
        # The kernel's axes are named by the conv's kernel_layout; go to OHWI by those names.
        layout = str(attrs.kernel_layout)
        if sorted(layout) != sorted("OHWI") or weights.values.ndim != 4:
            raise UnsupportedOpError(f"conv2d with kernel_layout {layout}: expected a permutation of OHWI")
        ohwi = np.ascontiguousarray(weights.values.transpose([layout.index(a) for a in "OHWI"]))
        w_scales = weights.channel_scales(layout.index("O"), f"conv2d {list(ohwi.shape)} (OHWI)")
        if groups == 1:
            weight = ohwi  # filterlets W[o, kh, kw, :] contiguous
            depth_multiplier = 1
        elif groups == input_shape[3] and ohwi.shape[3] == 1 and ohwi.shape[0] % groups == 0:
            # Depthwise: one input channel per group; TFLite's [1, KH, KW, C*M], output o = c*M + m.
            weight = np.ascontiguousarray(ohwi.transpose(3, 1, 2, 0))
            depth_multiplier = ohwi.shape[0] // groups
        else:
            raise UnsupportedOpError(f"grouped conv2d with groups={groups} is not supported (only 1 or depthwise)")
        if ohwi.shape[0] != channels_out:
            raise UnsupportedOpError(f"conv2d weights {list(ohwi.shape)} (OHWI) do not produce {channels_out} channels")
        bias = np.zeros(channels_out, np.int32)
        if bias_expr is not None:
            bias = _bias(bias_expr, self.resolve, channels_out)
            if bias is None:
                return None
        params = Conv2DParams(
            input_shape=input_shape,
            weight_shape=tuple(weight.shape),
            strides=tuple(int(s) for s in attrs.strides),
            padding=tuple(int(p) for p in attrs.padding),
            dilation=tuple(int(d) for d in attrs.dilation),
            input_zero_point=in_zp,
            output_zero_point=out_zp,
            act_min=act_min,
            act_max=act_max,
            depth_multiplier=depth_multiplier,
            depthwise=groups != 1,
        )
        mult, shift = conv_output_multipliers(in_scale, w_scales, out_scale)
        kh, kw = (weight.shape[1], weight.shape[2])
        n, oh, ow, oc = out_shape
        if groups == 1:
            func = conv2d_int8(params)
            macs = n * oh * ow * oc * kh * kw * input_shape[3]
            op = "conv2d"
        else:
            func = depthwise_conv2d_int8(params)
            # The micro-kernel takes the input offset folded into the bias (exact, compile time).
            bias = kernel_bias(func, bias, lambda: depthwise_fold_bias(params, weight, bias))
            macs = n * oh * ow * oc * kh * kw
            op = "depthwise_conv2d"
        func = func.with_attr("dtmm.params", json.dumps(_params_json(params)))
        layer = {
            "format": "dense",
            "input_shape": list(input_shape),
            "output_shape": list(out_shape),
            "kernel": [int(kh), int(kw)],
            "strides": list(params.strides),
            "padding": list(params.padding),
            "macs": int(macs),
            "kept_macs": int(macs),
            "dense_weight_bytes": int(weight.size),
            "stored_weight_bytes": int(weight.size),
        }
        return self._call_kernel(func, op, [x_int8, weight, bias, mult, shift], out_shape, layer)

    # --- fully connected ------------------------------------------------------------------
    def _lower_fully_connected(self, matmul, bias_expr, out_scale, out_zp, act_min, act_max, root):
        from dtmm_tvm.ops.fully_connected import fully_connected_int8
        from dtmm_tvm.ops.common import kernel_bias
        from dtmm_tvm.ops.fully_connected import fold_bias as fc_fold_bias
        from dtmm_tvm.quant.conv import FullyConnectedParams, conv_output_multipliers

        x = _dequantize_params(matmul.args[0], self.resolve)
        weights = _constant_dequantize(matmul.args[1], self.resolve)
        if x is None or weights is None:
            return None
        x_int8, in_scale, in_zp = x
        x_shape = static_shape(x_int8)
        # matmul's right operand is [K, O] by matmul's definition, whatever the chain that made it
        # (TVM's importer writes permute_dims(W[O, K])); TFLite's FC kernel wants [O, K].
        if weights.values.ndim != 2 or weights.values.shape[0] != x_shape[-1]:
            raise UnsupportedOpError(
                f"fully connected: input {list(x_shape)} times weights {list(weights.values.shape)} "
                f"(after {' -> '.join(weights.chain)}) is not a [rows, K] x [K, O] product"
            )
        weight = np.ascontiguousarray(weights.values.T)
        w_scales = weights.channel_scales(1, f"fully connected {list(weight.shape)} ([O, K])")
        out_shape = static_shape(root)
        channels_out = weight.shape[0]
        bias = np.zeros(channels_out, np.int32)
        if bias_expr is not None:
            bias = _bias(bias_expr, self.resolve, channels_out)
            if bias is None:
                return None
        # TFLite's FULLY_CONNECTED works on rows of the last axis (keep_num_dims keeps the rest).
        rows = int(np.prod(x_shape[:-1]))
        params = FullyConnectedParams(
            input_shape=(rows, x_shape[-1]),
            weight_shape=tuple(weight.shape),
            input_zero_point=in_zp,
            output_zero_point=out_zp,
            act_min=act_min,
            act_max=act_max,
        )
        mult, shift = conv_output_multipliers(in_scale, w_scales, out_scale)
        macs = rows * channels_out * weight.shape[1]
        layer = {
            "format": "dense",
            "input_shape": list(x_shape),
            "output_shape": list(out_shape),
            "macs": macs,
            "kept_macs": macs,
            "dense_weight_bytes": int(weight.size),
            "stored_weight_bytes": int(weight.size),
        }
        func = fully_connected_int8(params)
        func = func.with_attr("dtmm.params", json.dumps(_params_json(params)))  # for tuning
        bias = kernel_bias(func, bias, lambda: fc_fold_bias(params, weight, bias))  # offset folded in?
        x_arg = self.visit_expr(x_int8)
        if len(x_shape) != 2:
            x_arg = self.builder_.emit(relax.op.reshape(x_arg, [rows, x_shape[-1]]))
        call = self._call_kernel(func, "fully_connected", [x_arg, weight, bias, mult, shift], (rows, channels_out), layer)
        if tuple(out_shape) != (rows, channels_out):
            return relax.op.reshape(self.builder_.emit(call), list(out_shape))
        return call


    # --- add ------------------------------------------------------------------------------
    def _lower_add(self, add, out_scale, out_zp, act_min, act_max):
        from dtmm_tvm.ops.add import add_int8
        from dtmm_tvm.quant.add import add_params

        lhs = _dequantize_params(add.args[0], self.resolve)
        rhs = _dequantize_params(add.args[1], self.resolve)
        if lhs is None or rhs is None:
            return None
        params = add_params(lhs[1], lhs[2], rhs[1], rhs[2], out_scale, out_zp, act_min, act_max)
        out_shape = static_shape(add)
        func = add_int8(static_shape(lhs[0]), static_shape(rhs[0]), params)
        layer = {"input_shape": list(static_shape(lhs[0])), "output_shape": list(out_shape)}
        return self._call_kernel(func, "add", [lhs[0], rhs[0]], out_shape, layer)

    # --- mean -----------------------------------------------------------------------------
    def _lower_mean(self, mean, out_scale, out_zp, root):
        from dtmm_tvm.ops.mean import mean_int8
        from dtmm_tvm.quant.mean import mean_params

        x = _dequantize_params(mean.args[0], self.resolve)
        if x is None:
            return None
        x_int8, in_scale, in_zp = x
        axes = sorted(int(a) % 4 for a in mean.attrs.axis) if mean.attrs.axis is not None else None
        if len(static_shape(x_int8)) != 4 or axes != [1, 2]:
            raise UnsupportedOpError(f"MEAN over axes {axes} of a {len(static_shape(x_int8))}-D tensor: only the "
                                     "spatial axes (1, 2) of NHWC are supported")
        keepdims = bool(mean.attrs.keepdims)
        out_shape = static_shape(root)
        params = mean_params(static_shape(x_int8), keepdims, in_scale, in_zp, out_scale, out_zp)
        func = mean_int8(params)
        layer = {"input_shape": list(static_shape(x_int8)), "output_shape": list(out_shape)}
        return self._call_kernel(func, "mean", [x_int8], out_shape, layer)

    # --- softmax --------------------------------------------------------------------------
    def _lower_softmax(self, softmax, out_scale, out_zp, root):
        from dtmm_tvm.ops.softmax import softmax_int8
        from dtmm_tvm.quant.softmax import softmax_params

        x = _dequantize_params(softmax.args[0], self.resolve)
        if x is None:
            return None
        x_int8, in_scale, in_zp = x
        shape = static_shape(x_int8)
        if int(softmax.attrs.axis) % len(shape) != len(shape) - 1:
            raise UnsupportedOpError("SOFTMAX over a non-last axis is not supported")
        # TVM's importer drops TFLite's beta; the frontend records it on the module.
        betas = self.softmax_betas
        index = self.counters.get("softmax", 0)
        beta = float(betas[index]) if index < len(betas) else 1.0
        params = softmax_params(beta, in_scale, out_scale, out_zp)
        func = softmax_int8(shape, params)
        layer = {"input_shape": list(shape), "output_shape": list(static_shape(root))}
        return self._call_kernel(func, "softmax", [x_int8], static_shape(root), layer)

    # --- average pool ---------------------------------------------------------------------
    def _lower_avg_pool(self, cast):
        from dtmm_tvm.ops.pooling import avg_pool2d_int8

        pool = self.resolve(cast.args[0])
        if not is_op(pool, "relax.nn.avg_pool2d") or pool.attrs.layout != "NHWC":
            return None
        widened = self.resolve(pool.args[0])
        if not is_op(widened, "relax.astype") or dtype_of(widened.args[0]) != "int8":
            return None
        x_int8 = widened.args[0]
        out_shape = static_shape(cast)
        params = _pool_params(pool, static_shape(x_int8), out_shape)
        func = avg_pool2d_int8(params)
        layer = {"input_shape": list(params.input_shape), "output_shape": list(out_shape),
                 "kernel": [params.filter_height, params.filter_width],
                 "strides": [params.stride_height, params.stride_width]}
        return self._call_kernel(func, "avg_pool2d", [x_int8], out_shape, layer)

    # --- max pool -------------------------------------------------------------------------
    def _lower_max_pool(self, pool):
        from dtmm_tvm.ops.pooling import max_pool2d_int8

        if pool.attrs.layout != "NHWC":
            return None
        x_int8 = pool.args[0]
        out_shape = static_shape(pool)
        params = _pool_params(pool, static_shape(x_int8), out_shape)
        layer = {"input_shape": list(params.input_shape), "output_shape": list(out_shape),
                 "kernel": [params.filter_height, params.filter_width],
                 "strides": [params.stride_height, params.stride_width]}
        return self._call_kernel(max_pool2d_int8(params), "max_pool2d", [x_int8], out_shape, layer)


def _pool_params(pool, input_shape, output_shape):
    """TFLM pooling parameters from a Relax NHWC pool: TFLite pads only by the leading amount
    (top/left) and ignores padded cells, which Relax's explicit padding also expresses."""
    from dtmm_tvm.quant.pooling import Pool2DParams

    attrs = pool.attrs
    if attrs.layout != "NHWC" or any(int(d) != 1 for d in attrs.dilation) or bool(attrs.ceil_mode):
        raise UnsupportedOpError(f"{pool.op.name} with layout {attrs.layout}, dilation {list(attrs.dilation)}")
    top, left = int(attrs.padding[0]), int(attrs.padding[1])
    return Pool2DParams(
        input_shape=tuple(input_shape), output_shape=tuple(output_shape),
        filter_height=int(attrs.pool_size[0]), filter_width=int(attrs.pool_size[1]),
        stride_height=int(attrs.strides[0]), stride_width=int(attrs.strides[1]),
        pad_height=top, pad_width=left, act_min=INT8_MIN, act_max=INT8_MAX,
    )


def _params_json(params) -> dict:
    from dataclasses import asdict

    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(params).items()}


@tvm.transform.module_pass(opt_level=0, name="LowerQDQToInteger")
class LowerQDQToInteger:
    """Replace int8 quantize/dequantize chains with integer-only TFLM-exact kernels.

    Float models pass through unchanged. Chains that do not match (other layouts, per-axis
    activation scales) are left for :class:`CheckIntegerOnly` to report.
    """

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        lowerer = _Lowerer(mod)
        for gvar, func in mod.functions_items():
            if isinstance(func, relax.Function):
                lowerer.builder_.update_func(gvar, lowerer.rewrite(func))
        return drop_unreferenced_prim_funcs(relax.transform.DeadCodeElimination()(lowerer.builder_.get()))
