"""LowerONNXQDQToInteger: ONNX QDQ int8 models -> the integer kernels, bit-exact with onnxruntime.

``quantize_static(..., QuantFormat.QDQ)`` writes every op as ``DequantizeLinear -> op ->
QuantizeLinear`` in NCHW; TVM imports that as float ``dequantize`` / ``quantize`` around float ops.
onnxruntime's CPU provider fuses those chains into integer kernels whose requantization is float32
(:mod:`dtmm_tvm.quant.onnx`). This pass replaces each chain with the same ``call_tir`` kernels the
TFLite path uses (conv, depthwise, fully connected, max pool: NHWC, OHWI) built with
``requantization="onnx"`` records, plus the ONNX-only kernels of :mod:`dtmm_tvm.ops.qlinear`
(QuantizeLinear of the float input, DequantizeLinear of the output, GlobalAveragePool, Softmax).
:class:`FilterletSparseConv` then rewrites pruned convs as for TFLite.

Layouts are explicit: every int8 activation is known by the layout its producer wrote (the
imported graph is NCHW; our kernels write NHWC). ``self.nhwc`` maps an NCHW value to the NHWC
value it was made from, so a chain of kernels passes NHWC tensors straight through; a
``permute_dims`` is emitted only where an NCHW consumer (or the output) needs one, and unused ones
are removed. Weights are transposed OIHW -> OHWI by the axes of the conv's own ``kernel_layout``,
Gemm's ``[K, O]`` operand by the ``permute_dims`` the importer wrote; nothing is inferred from
shapes.

Chains recognised (NCHW, as TVM 0.27 imports ONNX; root first):
- ``quantize(x_float)`` of a model input -> QuantizeLinear kernel;
- ``quantize([add] conv2d(dequantize(x), dequantize(W)) [, reshape(dequantize(b_int32))])``,
  groups 1 or depthwise -> conv / depthwise kernel;
- ``quantize([add] matmul(dequantize(x), [permute_dims] dequantize(W)) [, dequantize(b)])``
  -> fully connected kernel;
- ``quantize(max_pool2d(dequantize(x)))`` with equal input and output quantization -> max pool;
- ``quantize(mean(dequantize(x), axis=[2, 3], keepdims))`` -> QLinearGlobalAveragePool;
- ``quantize(reshape(dequantize(x)))`` with equal quantization (Flatten, Reshape) -> int8 reshape;
- ``quantize(softmax(dequantize(x)))`` over the last axis -> QLinearSoftmax;
- ``quantize(avg_pool2d(dequantize(x)))`` -> QLinearAveragePool (a whole-image window:
  QLinearGlobalAveragePool, as onnxruntime falls back);
- ``quantize(add|multiply(dequantize(a), dequantize(b)))`` of one shape -> QLinearAdd / QLinearMul
  (in the model's own activation type: uint8 models compute on x + 128, as ORT does);
- ``quantize(relu|clip(dequantize(x)))`` whose output zero point is not the type's minimum -> a
  256-entry table of ORT's float steps (one whose zero point is the minimum is folded by ORT into
  its producer and refused here);
- ``dequantize(x)`` returned by the function -> DequantizeLinear kernel.
Anything else that is left computing in float is refused by name (:class:`UnsupportedOpError`).
"""

from __future__ import annotations

import json

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from dtmm_tvm.errors import UnsupportedOpError

from ._match import ValueResolver, const_value, drop_unreferenced_prim_funcs, dtype_of, is_const, is_op, scalar, static_shape

NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)
#: Activation types: uint8 (quantize_static's default QUInt8) runs as int8 with zero point - 128,
#: which changes no result of any op here (onnxruntime itself converts int8 to uint8 on x86).
ACTIVATION_OFFSET = {"int8": 0, "uint8": -128}


def _qparams(expr):
    """(scale float32, int8 zero point) of a per-tensor int8/uint8 quantize/dequantize, else None."""
    scale, zero_point = scalar(expr.args[1]), scalar(expr.args[2])
    offset = ACTIVATION_OFFSET.get(dtype_of(expr.args[2]))
    if scale is None or zero_point is None or offset is None:
        return None
    return np.float32(scale), int(zero_point) + offset


def _params_json(params) -> dict:
    from dataclasses import asdict

    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(params).items()}


@mutator
class _Lowerer(PyExprMutator):
    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.resolve = None
        self.counters: dict[str, int] = {}
        self.nhwc: dict = {}  # original NCHW int8 Var -> emitted NHWC Var

    def rewrite(self, func: relax.Function) -> relax.Function:
        self.resolve = ValueResolver(func)
        self.params = set(func.params)
        self.outputs = _output_vars(func)
        self.current_var = None
        self.pending_nhwc = None
        return self.visit_expr(func)

    # --- plumbing -------------------------------------------------------------------------
    def _name(self, op: str) -> str:
        index = self.counters.get(op, 0)
        self.counters[op] = index + 1
        return f"{op}_{index}"

    def _call(self, prim_func, op: str, args, out_shape, out_dtype="int8", layer=None):
        name = self._name(op)
        info = dict(layer or {}, name=name, op=op)
        prim_func = prim_func.with_attr("dtmm.layer", json.dumps(info, sort_keys=True))
        gvar = self.builder_.add_func(prim_func, name)
        args = [relax.const(a) if isinstance(a, np.ndarray) else a for a in args]
        return relax.call_tir(gvar, args, relax.TensorType([int(d) for d in out_shape], out_dtype))

    def _as_nhwc(self, var):
        """The NHWC int8 value of the NCHW int8 ``var`` (reusing the producer's when known)."""
        if var in self.nhwc:
            return self.nhwc[var]
        return self.builder_.emit(relax.op.permute_dims(self.visit_expr(var), list(NCHW_TO_NHWC)))

    def _emit_nhwc_result(self, call):
        """Emit an NHWC kernel result; return its NCHW view (what the original binding holds)
        and remember the NHWC value for the binding (see :meth:`visit_var_binding_`)."""
        nhwc = self.builder_.emit(call)
        self.pending_nhwc = nhwc
        return relax.op.permute_dims(nhwc, list(NHWC_TO_NCHW))

    def visit_var_binding_(self, binding):
        self.current_var = binding.var
        self.pending_nhwc = None
        super().visit_var_binding_(binding)
        if self.pending_nhwc is not None:  # the original NCHW Var -> the NHWC value it was made from
            self.nhwc[binding.var] = self.pending_nhwc
            self.pending_nhwc = None

    def _dequantized(self, expr):
        """(int8 Var, scale, zero point) of ``dequantize(int8 activation)``, else None."""
        expr_r = self.resolve(expr)
        if not is_op(expr_r, "relax.dequantize") or dtype_of(expr_r.args[0]) not in ACTIVATION_OFFSET:
            return None
        q = _qparams(expr_r)
        return None if q is None else (expr_r.args[0], *q)

    def _const_dequantized(self, expr):
        """(int8 values, float32 scales [C], axis) of ``dequantize(int8 constant)``, else None."""
        expr = self.resolve(expr)
        if not is_op(expr, "relax.dequantize"):
            return None
        data = self.resolve(expr.args[0])
        if not is_const(data) or not is_const(expr.args[1]) or not is_const(expr.args[2]):
            return None
        zero_points = const_value(expr.args[2]).reshape(-1)
        if dtype_of(data) != "int8" or np.any(zero_points != 0):
            raise UnsupportedOpError(f"ONNX QDQ weights must be int8 with zero point 0 (symmetric), got "
                                     f"{dtype_of(data)} with zero points {sorted(set(zero_points.tolist()))[:4]}; "
                                     "quantize with weight_type=QuantType.QInt8")
        return const_value(data), const_value(expr.args[1]).astype(np.float32).reshape(-1), int(expr.attrs.axis)

    # --- dispatch -------------------------------------------------------------------------
    def visit_call_(self, call):
        lowered = None
        if is_op(call, "relax.quantize") and dtype_of(call) in ACTIVATION_OFFSET:
            lowered = self._lower_quantize(call)
        elif is_op(call, "relax.dequantize") and self.current_var in self.outputs:
            lowered = self._lower_output_dequantize(call)
        return lowered if lowered is not None else super().visit_call_(call)

    def _lower_output_dequantize(self, dequantize):
        from dtmm_tvm.ops.qlinear import dequantize_linear

        q = _qparams(dequantize)
        if q is None or dtype_of(dequantize.args[0]) not in ACTIVATION_OFFSET:
            return None
        shape = static_shape(dequantize)
        layer = {"input_shape": list(shape), "output_shape": list(shape)}
        return self._call(dequantize_linear(shape, q[1]), "dequantize_linear",
                          [self.visit_expr(dequantize.args[0]), np.array([q[0]], np.float32)], shape, "float32", layer)

    def _lower_quantize(self, root):
        q = _qparams(root)
        if q is None:
            return None
        out_scale, out_zp = q
        data = root.args[0]
        body = self.resolve(data)
        if isinstance(data, relax.Var) and data in self.params and "float" in dtype_of(data):
            from dtmm_tvm.ops.qlinear import quantize_linear

            shape = static_shape(root)
            func = quantize_linear(shape, out_zp)
            layer = {"input_shape": list(shape), "output_shape": list(shape)}
            return self._call(func, "quantize_linear", [data, np.array([out_scale], np.float32)], shape, layer=layer)
        bias_expr = None
        if is_op(body, "relax.add"):
            lhs, rhs = self.resolve(body.args[0]), self.resolve(body.args[1])
            if is_op(lhs, "relax.nn.conv2d") or is_op(lhs, "relax.matmul"):
                body, bias_expr = lhs, body.args[1]
            elif is_op(rhs, "relax.nn.conv2d") or is_op(rhs, "relax.matmul"):
                body, bias_expr = rhs, body.args[0]
            else:
                return self._lower_binary(body, root, "add")
        if is_op(body, "relax.multiply"):
            return self._lower_binary(body, root, "mul")
        if is_op(body, "relax.nn.relu") or is_op(body, "relax.clip"):
            return self._lower_relu_clip(body, root)
        if is_op(body, "relax.nn.conv2d"):
            return self._lower_conv2d(body, bias_expr, out_scale, out_zp, root)
        if is_op(body, "relax.matmul"):
            return self._lower_matmul(body, bias_expr, out_scale, out_zp, root)
        if is_op(body, "relax.nn.max_pool2d"):
            return self._lower_max_pool(body, out_scale, out_zp, root)
        if is_op(body, "relax.mean"):
            return self._lower_global_avg_pool(body, out_scale, out_zp, root)
        if is_op(body, "relax.nn.avg_pool2d"):
            return self._lower_avg_pool(body, out_scale, out_zp, root)
        if is_op(body, "relax.reshape"):
            return self._lower_reshape(body, out_scale, out_zp, root)
        if is_op(body, "relax.nn.softmax"):
            return self._lower_softmax(body, out_scale, out_zp, root)
        return None

    def _bias(self, bias_expr, channels: int):
        """int32 bias of ``[reshape/permute] dequantize(const int32)`` (ORT adds the int32 values)."""
        if bias_expr is None:
            return np.zeros(channels, np.int32)
        expr = self.resolve(bias_expr)
        while is_op(expr, "relax.reshape") or is_op(expr, "relax.permute_dims"):
            expr = self.resolve(expr.args[0])
        if not is_op(expr, "relax.dequantize"):
            return None
        data = self.resolve(expr.args[0])
        if not is_const(data) or dtype_of(data) != "int32":
            return None
        values = const_value(data).astype(np.int32).reshape(-1)
        return values if values.size == channels else None

    # --- conv2d / depthwise ---------------------------------------------------------------
    def _lower_conv2d(self, conv, bias_expr, out_scale, out_zp, root):
        from dtmm_tvm.ops.conv2d import conv2d_int8
        from dtmm_tvm.ops.common import kernel_bias
        from dtmm_tvm.ops.depthwise_conv2d import depthwise_conv2d_int8
        from dtmm_tvm.ops.depthwise_conv2d import fold_bias as depthwise_fold_bias
        from dtmm_tvm.quant.conv import Conv2DParams
        from dtmm_tvm.quant.onnx import output_scales, requant_records

        attrs = conv.attrs
        if attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW" or attrs.out_layout != "NCHW":
            return None
        x = self._dequantized(conv.args[0])
        weights = self._const_dequantized(conv.args[1])
        if x is None or weights is None:
            return None
        x_var, in_scale, in_zp = x
        values, w_scales, _ = weights
        if any(int(d) != 1 for d in attrs.dilation):
            raise UnsupportedOpError(f"ONNX Conv with dilations {list(attrs.dilation)}: only dilation 1 is supported")
        n, cin, _, _ = static_shape(x_var)
        input_shape = (n, static_shape(x_var)[2], static_shape(x_var)[3], cin)
        groups = int(attrs.groups)
        cout = values.shape[0]
        if groups == 1:
            weight = np.ascontiguousarray(values.transpose(0, 2, 3, 1))  # OIHW -> OHWI
            depthwise, multiplier = False, 1
        elif groups == cin and values.shape[1] == 1:
            # Depthwise: OIHW [C*M, 1, KH, KW] -> TFLite's [1, KH, KW, C*M].
            weight = np.ascontiguousarray(values.transpose(1, 2, 3, 0))
            depthwise, multiplier = True, cout // cin
        else:
            raise UnsupportedOpError(f"ONNX Conv with group={groups} is not supported (only 1 or depthwise)")
        bias = self._bias(bias_expr, cout)
        if bias is None:
            return None
        pad_top, pad_left, pad_bottom, pad_right = (int(p) for p in attrs.padding)
        params = Conv2DParams(
            input_shape=input_shape, weight_shape=weight.shape, strides=tuple(int(s) for s in attrs.strides),
            padding=(pad_top, pad_left, pad_bottom, pad_right), input_zero_point=in_zp,
            output_zero_point=out_zp, depth_multiplier=multiplier, depthwise=depthwise,
            requantization="onnx")
        scales = output_scales(in_scale, w_scales, out_scale)
        mult, shift = requant_records(np.broadcast_to(scales, (cout,)) if scales.size == 1 else scales)
        nb, oh, ow, oc = params.output_shape
        kh, kw = params.kernel_size
        if depthwise:
            func = depthwise_conv2d_int8(params)
            bias = kernel_bias(func, bias, lambda: depthwise_fold_bias(params, weight, bias))
            op, macs = "depthwise_conv2d", nb * oh * ow * oc * kh * kw
        else:
            func = conv2d_int8(params)
            op, macs = "conv2d", nb * oh * ow * oc * kh * kw * cin
        func = func.with_attr("dtmm.params", json.dumps(_params_json(params)))
        layer = {"format": "dense", "input_shape": list(input_shape), "output_shape": list(params.output_shape),
                 "kernel": [int(kh), int(kw)], "strides": list(params.strides), "padding": list(params.padding),
                 "macs": int(macs), "kept_macs": int(macs), "dense_weight_bytes": int(weight.size),
                 "stored_weight_bytes": int(weight.size), "requantization": "onnx"}
        call = self._call(func, op, [self._as_nhwc(x_var), weight, bias, mult, shift], params.output_shape, layer=layer)
        return self._emit_nhwc_result(call)

    # --- Gemm / MatMul ------------------------------------------------------------------------
    def _lower_matmul(self, matmul, bias_expr, out_scale, out_zp, root):
        from dtmm_tvm.ops.common import kernel_bias
        from dtmm_tvm.ops.fully_connected import fold_bias as fc_fold_bias
        from dtmm_tvm.ops.fully_connected import fully_connected_int8
        from dtmm_tvm.quant.conv import FullyConnectedParams
        from dtmm_tvm.quant.onnx import output_scales, requant_records

        x = self._dequantized(matmul.args[0])
        if x is None:
            return None
        x_var, in_scale, in_zp = x
        # The right operand as the [K, O] matrix matmul multiplies by: apply the importer's own
        # permute_dims (Gemm transB) to the constant, then store [O, K] for the kernel.
        rhs = self.resolve(matmul.args[1])
        axes = None
        if is_op(rhs, "relax.permute_dims"):
            axes = [int(a) for a in rhs.attrs.axes] if rhs.attrs.axes is not None else [1, 0]
            rhs = self.resolve(rhs.args[0])
        weights = self._const_dequantized(rhs)
        if weights is None:
            return None
        values, w_scales, w_axis = weights
        if values.ndim != 2:
            return None
        k_by_o = values if axes is None else np.transpose(values, axes)
        # Per-channel scales must run along the output axis of the [K, O] operand.
        out_axis_of_values = 1 if axes is None else axes[1]
        if w_scales.size > 1 and w_axis % 2 != out_axis_of_values:
            raise UnsupportedOpError("ONNX Gemm/MatMul with per-channel weight scales along K is not supported")
        weight = np.ascontiguousarray(k_by_o.T)  # [O, K]
        cout, k = weight.shape
        x_shape = static_shape(x_var)
        if x_shape[-1] != k:
            return None
        bias = self._bias(bias_expr, cout)
        if bias is None:
            return None
        rows = int(np.prod(x_shape[:-1]))
        params = FullyConnectedParams(input_shape=(rows, k), weight_shape=(cout, k), input_zero_point=in_zp,
                                      output_zero_point=out_zp, requantization="onnx")
        scales = output_scales(in_scale, w_scales, out_scale)
        mult, shift = requant_records(np.broadcast_to(scales, (cout,)) if scales.size == 1 else scales)
        func = fully_connected_int8(params)
        func = func.with_attr("dtmm.params", json.dumps(_params_json(params)))
        bias = kernel_bias(func, bias, lambda: fc_fold_bias(params, weight, bias))
        macs = rows * cout * k
        layer = {"format": "dense", "input_shape": list(x_shape), "output_shape": list(static_shape(root)),
                 "macs": macs, "kept_macs": macs, "dense_weight_bytes": int(weight.size),
                 "stored_weight_bytes": int(weight.size), "requantization": "onnx"}
        x_arg = self.visit_expr(x_var)
        if len(x_shape) != 2:
            x_arg = self.builder_.emit(relax.op.reshape(x_arg, [rows, k]))
        call = self._call(func, "fully_connected", [x_arg, weight, bias, mult, shift], (rows, cout), layer=layer)
        if tuple(static_shape(root)) != (rows, cout):
            return relax.op.reshape(self.builder_.emit(call), list(static_shape(root)))
        return call

    # --- pools, reshape, softmax ----------------------------------------------------------
    def _same_quantization(self, expr, out_scale, out_zp):
        x = self._dequantized(expr)
        if x is None or x[1] != out_scale or x[2] != out_zp:
            return None
        return x[0]

    def _lower_max_pool(self, pool, out_scale, out_zp, root):
        from dtmm_tvm.ops.pooling import max_pool2d_int8
        from dtmm_tvm.quant.pooling import Pool2DParams

        attrs = pool.attrs
        x_var = self._same_quantization(pool.args[0], out_scale, out_zp)
        if x_var is None or attrs.layout != "NCHW":
            return None  # a max pool that changes the quantization is left for the check to name
        if any(int(d) != 1 for d in attrs.dilation) or bool(attrs.ceil_mode):
            raise UnsupportedOpError(f"ONNX MaxPool with dilations {list(attrs.dilation)} / ceil_mode: not supported")
        n, c, h, w = static_shape(x_var)
        _, _, oh, ow = static_shape(root)
        top, left = int(attrs.padding[0]), int(attrs.padding[1])
        params = Pool2DParams(input_shape=(n, h, w, c), output_shape=(n, oh, ow, c),
                              filter_height=int(attrs.pool_size[0]), filter_width=int(attrs.pool_size[1]),
                              stride_height=int(attrs.strides[0]), stride_width=int(attrs.strides[1]),
                              pad_height=top, pad_width=left, act_min=-128, act_max=127)
        layer = {"input_shape": [n, h, w, c], "output_shape": [n, oh, ow, c],
                 "kernel": [params.filter_height, params.filter_width],
                 "strides": [params.stride_height, params.stride_width]}
        call = self._call(max_pool2d_int8(params), "max_pool2d", [self._as_nhwc(x_var)], (n, oh, ow, c), layer=layer)
        return self._emit_nhwc_result(call)

    def _lower_global_avg_pool(self, mean, out_scale, out_zp, root):
        from dtmm_tvm.ops.qlinear import global_avg_pool
        from dtmm_tvm.quant.onnx import global_avg_pool_scale

        x = self._dequantized(mean.args[0])
        if x is None:
            return None
        x_var, in_scale, in_zp = x
        x_shape = static_shape(x_var)
        axes = sorted(int(a) % len(x_shape) for a in mean.attrs.axis) if mean.attrs.axis is not None else None
        if len(x_shape) != 4 or axes != [2, 3] or not bool(mean.attrs.keepdims):
            return None
        n, c, h, w = x_shape
        scale = global_avg_pool_scale(in_scale, out_scale, h * w)
        layer = {"input_shape": [n, h, w, c], "output_shape": [n, 1, 1, c]}
        call = self._call(global_avg_pool((n, h, w, c), in_zp, out_zp), "global_avg_pool",
                          [self._as_nhwc(x_var), np.array([scale], np.float32)], (n, 1, 1, c), layer=layer)
        return self._emit_nhwc_result(call)

    def _lower_avg_pool(self, pool, out_scale, out_zp, root):
        """AveragePool -> QLinearAveragePool: a window covering the whole unpadded image is
        onnxruntime's QLinearGlobalAveragePool (its own fallback), any other the float32 kernel."""
        from dtmm_tvm.ops.qlinear import avg_pool, global_avg_pool
        from dtmm_tvm.quant.activations import INT8_VALUES
        from dtmm_tvm.quant.onnx import dequantize_linear, global_avg_pool_scale

        attrs = pool.attrs
        x = self._dequantized(pool.args[0])
        if x is None or attrs.layout != "NCHW":
            return None
        x_var, in_scale, in_zp = x
        if any(int(d) != 1 for d in attrs.dilation) or bool(attrs.ceil_mode):
            raise UnsupportedOpError(f"ONNX AveragePool with dilations {list(attrs.dilation)} / ceil_mode: not supported")
        n, c, h, w = static_shape(x_var)
        _, _, oh, ow = static_shape(root)
        kernel = tuple(int(k) for k in attrs.pool_size)
        pads = [int(p) for p in attrs.padding]
        layer = {"input_shape": [n, h, w, c], "output_shape": [n, oh, ow, c], "kernel": list(kernel),
                 "strides": [int(s) for s in attrs.strides]}
        if kernel == (h, w) and not any(pads):
            scale = global_avg_pool_scale(in_scale, out_scale, h * w)
            call = self._call(global_avg_pool((n, h, w, c), in_zp, out_zp), "global_avg_pool",
                              [self._as_nhwc(x_var), np.array([scale], np.float32)], (n, 1, 1, c), layer=layer)
            return self._emit_nhwc_result(call)
        offset = -ACTIVATION_OFFSET[dtype_of(root)]
        table = dequantize_linear(INT8_VALUES, in_scale, in_zp)
        func = avg_pool((n, h, w, c), (n, oh, ow, c), kernel, tuple(int(s) for s in attrs.strides), pads[:2],
                        bool(attrs.count_include_pad), offset, out_zp + offset, -128 + offset, 127 + offset)
        call = self._call(func, "avg_pool2d", [self._as_nhwc(x_var), table, np.array([out_scale], np.float32)],
                          (n, oh, ow, c), layer=layer)
        return self._emit_nhwc_result(call)

    def _lower_reshape(self, reshape, out_scale, out_zp, root):
        x_var = self._same_quantization(reshape.args[0], out_scale, out_zp)
        if x_var is None:
            return None
        return relax.op.reshape(self.visit_expr(x_var), list(static_shape(root)))

    def _lower_softmax(self, softmax, out_scale, out_zp, root):
        from dtmm_tvm.ops.qlinear import softmax as softmax_kernel
        from dtmm_tvm.quant.onnx import softmax_table, softmax_y_scale

        x = self._dequantized(softmax.args[0])
        if x is None:
            return None
        x_var, in_scale, _ = x
        shape = static_shape(x_var)
        if int(softmax.attrs.axis) % len(shape) != len(shape) - 1:
            raise UnsupportedOpError("ONNX Softmax over a non-last axis is not supported")
        table = softmax_table(in_scale, shape[-1])
        y_scale_inv = np.array([softmax_y_scale(out_scale)], np.float32)
        layer = {"input_shape": list(shape), "output_shape": list(shape)}
        return self._call(softmax_kernel(shape, out_zp), "softmax", [self.visit_expr(x_var), table, y_scale_inv],
                          shape, layer=layer)


    # --- elementwise: Add, Mul (QLinearAdd / QLinearMul), Relu / Clip -------------------------
    def _elementwise_args(self, xs):
        """The int8 operands, NHWC when any 4-D operand was made NHWC by a kernel (so both are in
        one layout), and whether the result is NHWC."""
        if any(x in self.nhwc for x in xs):
            if any(len(static_shape(x)) != 4 for x in xs):
                return None, False
            return [self._as_nhwc(x) for x in xs], True
        return [self.visit_expr(x) for x in xs], False

    @staticmethod
    def _kernel_shape(shape, nhwc):
        return (shape[0], shape[2], shape[3], shape[1]) if nhwc else tuple(shape)

    def _emit_elementwise(self, func, op, args, shape, nhwc, layer):
        call = self._call(func, op, args, self._kernel_shape(shape, nhwc), layer=layer)
        return self._emit_nhwc_result(call) if nhwc else call

    def _lower_binary(self, body, root, op):
        from dtmm_tvm.ops.qlinear import qlinear_add, qlinear_mul
        from dtmm_tvm.quant.onnx import qlinear_add_params, qlinear_mul_scale

        a, b = self._dequantized(body.args[0]), self._dequantized(body.args[1])
        if a is None or b is None:
            return None
        dtypes = {dtype_of(self.resolve(body.args[i]).args[0]) for i in (0, 1)} | {dtype_of(root)}
        a_shape, b_shape, out_shape = static_shape(a[0]), static_shape(b[0]), static_shape(root)
        if tuple(a_shape) != tuple(b_shape) or len(dtypes) != 1:
            raise UnsupportedOpError(
                f"ONNX QDQ {op.capitalize()} of {list(a_shape)} {sorted(dtypes)[0]} and {list(b_shape)}: only "
                "two activations of one shape and one type are supported (no broadcasting)")
        offset = -ACTIVATION_OFFSET[dtypes.pop()]  # values in the model's own type: int8 + offset
        qmin, qmax = -128 + offset, 127 + offset
        out_scale, out_zp = _qparams(root)
        zps = [a[2] + offset, b[2] + offset, out_zp + offset]
        args, nhwc = self._elementwise_args([a[0], b[0]])
        if args is None:
            return None
        shape = tuple(out_shape)
        layer = {"input_shape": list(a_shape), "output_shape": list(shape)}
        if op == "add":
            params = qlinear_add_params(a[1], zps[0], b[1], zps[1], out_scale, zps[2])
            func = qlinear_add(self._kernel_shape(shape, nhwc), offset, qmin, qmax)
        else:
            params = np.array([qlinear_mul_scale(a[1], b[1], out_scale)], np.float32)
            func = qlinear_mul(self._kernel_shape(shape, nhwc), offset, zps[0], zps[1], zps[2], qmin, qmax)
        return self._emit_elementwise(func, op, [*args, params], shape, nhwc, layer)

    def _lower_relu_clip(self, body, root):
        """Relu / Clip between DequantizeLinear and QuantizeLinear: ORT runs them in float32 (or drops
        them where that changes nothing), so a 256-entry table of exactly those float steps."""
        from dtmm_tvm.ops.lookup_table import lookup_table_int8
        from dtmm_tvm.quant.activations import INT8_VALUES
        from dtmm_tvm.quant.onnx import dequantize_linear, quantize_linear

        x = self._dequantized(body.args[0])
        if x is None:
            return None
        x_var, in_scale, in_zp = x
        out_scale, out_zp = _qparams(root)
        if out_zp == -128:
            # onnxruntime (ReluQuantFusion, then the double-QDQ removal) drops such a Relu/Clip and
            # requantizes its producer straight into this output's scale: not the two steps here.
            raise UnsupportedOpError(
                f"ONNX QDQ {'Relu' if is_op(body, 'relax.nn.relu') else 'Clip'} whose output zero point is the "
                "type's minimum: onnxruntime folds it into the producer's requantization, which is not "
                "lowered yet; quantize with the Relu fused into its Conv/Gemm (quantize_static's default)")
        values = dequantize_linear(INT8_VALUES, in_scale, in_zp)
        if is_op(body, "relax.nn.relu"):
            op, values = "relu", np.maximum(values, np.float32(0))
        else:
            lo, hi = (np.float32(float(v.value)) for v in body.args[1:3])
            op, values = "clip", np.minimum(np.maximum(values, lo), hi)
        table = quantize_linear(values, out_scale, out_zp)
        (arg,), nhwc = self._elementwise_args([x_var])
        shape = tuple(static_shape(root))
        layer = {"input_shape": list(shape), "output_shape": list(shape)}
        func = lookup_table_int8(self._kernel_shape(shape, nhwc), "int8", op)
        return self._emit_elementwise(func, op, [arg, table], shape, nhwc, layer)


def _output_vars(func: relax.Function) -> set:
    """The Vars a function returns (directly or in a tuple), followed through its output bindings."""
    body = func.body
    result = body.body if isinstance(body, relax.SeqExpr) else body
    fields = list(result.fields) if isinstance(result, relax.Tuple) else [result]
    var2val = relax.analysis.get_var2val(func)
    outs = set()
    for f in fields:
        outs.add(f)
        # R.output(gv) inside a dataflow block: gv is bound to the dataflow var that holds the value
        value = var2val.get(f)
        if isinstance(value, relax.Var):
            outs.add(value)
    return outs


def check_lowered(func: relax.Function) -> None:
    """Refuse a model whose graph still computes in float after the lowering (naming the op)."""
    left = []
    for var, value in relax.analysis.get_var2val(func).items():
        if "float" not in str(getattr(value.ty, "dtype", "")) or isinstance(value, relax.Var):
            continue
        if is_op(value, "relax.call_tir") and str(value.args[0].name_hint).startswith("dequantize_linear"):
            continue
        left.append((var, value))
    # Name the op that computes in float, not the dequantize that feeds it.
    compute = [(v, e) for v, e in left if not is_op(e, "relax.dequantize") and not is_op(e, "relax.quantize")]
    for var, value in (compute or left)[:1]:
        what = value.op.name if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) else type(value).__name__
        if is_op(value, "relax.call_tir"):
            what = f"call_tir {value.args[0].name_hint}"
        shape = [int(d) for d in value.ty.shape]
        raise UnsupportedOpError(
            f"ONNX QDQ model: op '{what}' (binding '{var.name}', {value.ty.dtype} {shape}) has no integer "
            "lowering; supported QDQ ops: Conv (group 1 or depthwise), Gemm/MatMul, MaxPool, AveragePool, "
            "GlobalAveragePool, Flatten/Reshape, Softmax, Add and Mul of two activations of one shape, Relu, "
            "Clip, QuantizeLinear of the input, DequantizeLinear of the output")


@tvm.transform.module_pass(opt_level=0, name="LowerONNXQDQToInteger")
class LowerONNXQDQToInteger:
    """Lower an imported ONNX QDQ int8 model (NCHW) to the integer kernels with ORT's numerics.

    Run it on the module as TVM's ONNX importer produced it (before any ConvertLayout). Float
    models pass through unchanged (no int8 ``quantize`` to match).

    Parameters
    ----------
    check : bool
        Raise :class:`~dtmm_tvm.errors.UnsupportedOpError` naming the first op still computing in
        float (default True): a QDQ model must never silently keep float arithmetic.
    """

    def __init__(self, check: bool = True):
        self.check = check

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        main = mod["main"]
        quantized = any(is_op(v, "relax.quantize") for v in relax.analysis.get_var2val(main).values())
        if not quantized:
            return mod
        lowerer = _Lowerer(mod)
        for gvar, func in mod.functions_items():
            if isinstance(func, relax.Function):
                lowerer.builder_.update_func(gvar, lowerer.rewrite(func))
        mod = drop_unreferenced_prim_funcs(relax.transform.DeadCodeElimination()(lowerer.builder_.get()))
        if self.check:
            check_lowered(mod["main"])
        return mod
