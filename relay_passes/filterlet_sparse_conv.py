"""FilterletSparseConv: rewrite filterlet-pruned convolutions to DTMM's filterlet-sparse operator.

A filterlet is the ``Cin`` weights at one kernel position of one output filter, contiguous in
OHWI memory; a pruned filterlet is skipped whole. For every conv2d with constant weights whose
filterlet sparsity exceeds ``threshold``, the weights are packed in the paper's CSR format
(:func:`dtmm_tvm.sparsity.pack_filterlets`) and the conv becomes a ``call_tir`` to the
filterlet-sparse PrimFunc carrying values, offsets and row pointers as constants.

Convs recognised:
- integer convs produced by :class:`LowerQDQToInteger` (int8 models; outputs stay TFLM-exact);
- float ``relax.nn.conv2d`` in NHWC with a constant (or ``dequantize``-of-constant) HWIO or OHWI
  kernel, also through ``permute_dims`` of the constant (ONNX models after ConvertLayout to
  NHWC/OHWI; the transpose's axes are applied to the values), for float models or a user
  pipeline that keeps QDQ as float. Sums run in the dense
  kernel's (kh, kw, ci) order, so skipping zeros does not change float results.
"""

from __future__ import annotations

import json

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from dtmm_tvm.costmodel.format_choice import OPTIMIZE, considered, decide_conv_format
from dtmm_tvm.sparsity import FORMATS, UNSTRUCTURED, analyze_filterlets, pack_filterlets, pack_filterlets_as
from dtmm_tvm.sparsity.compact import COMPACT, pack_compact
from dtmm_tvm.sparsity.pattern import PATTERN, detect_patterns, pack_patterns, pattern_bytes

from ._match import ValueResolver, drop_unreferenced_prim_funcs, const_value, dtype_of, func_attr_json, is_const, is_op, prim_func_of, static_shape

DEFAULT_THRESHOLD = 0.1  # the paper applies its format above 10% filterlet sparsity
#: When not None, the formats every FilterletSparseConv() without ``formats=`` may choose from
#: (tests and benchmarks force one format through the compile flow with this).
FORMATS_OVERRIDE = None
#: Every weight format an integer conv may get besides dense: the filterlet formats, the
#: pattern-pruning baseline's (a candidate only for weights within its limits) and the
#: filter-compacted conv (a candidate when some filters are all zero); the last two on C targets only.
ALL_FORMATS = FORMATS + (PATTERN, COMPACT)


@mutator
class _Rewriter(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, threshold: float, formats=FORMATS, optimize: str = "speed",
                 decision_target=None):
        super().__init__(mod)
        self.decision_target = decision_target
        self.mod_ = mod
        self.threshold = threshold
        self.formats = tuple(formats)
        self.optimize = optimize
        self.resolve = None
        self.float_count = 0

    def rewrite(self, func):
        self.resolve = ValueResolver(func)
        return self.visit_expr(func)

    def visit_call_(self, call):
        rewritten = None
        if is_op(call, "relax.call_tir"):
            rewritten = self._rewrite_integer(call)
        elif is_op(call, "relax.nn.conv2d") and "float" in dtype_of(call):
            rewritten = self._rewrite_float(call)
        return rewritten if rewritten is not None else super().visit_call_(call)

    def _rewrite_integer(self, call):
        from dtmm_tvm.ops.conv2d_filterlet import conv2d_filterlet_int8
        from dtmm_tvm.quant.conv import Conv2DParams

        _, func = prim_func_of(self.mod_, call)
        layer = func_attr_json(func, "dtmm.layer")
        params_json = func_attr_json(func, "dtmm.params")
        if layer is None or params_json is None or layer.get("op") != "conv2d":
            return None
        x, weight, bias, mult, shift = call.args[1].fields
        if not is_const(weight):
            return None
        weight_ohwi = const_value(weight)
        stats = analyze_filterlets(weight_ohwi)
        element_sparsity = 1.0 - np.count_nonzero(weight_ohwi) / max(weight_ohwi.size, 1)
        formats = self.formats if _has_c_target() else tuple(f for f in self.formats if f not in (PATTERN, COMPACT))
        if not all(is_const(a) for a in (bias, mult, shift)):  # the compact format slices them
            formats = tuple(f for f in formats if f != COMPACT)
        patterns = detect_patterns(weight_ohwi) if PATTERN in formats else None
        if not considered(stats.filterlet_sparsity, self.threshold, element_sparsity, formats) and patterns is None:
            return None
        params = Conv2DParams(**{k: tuple(v) if isinstance(v, list) else v for k, v in params_json.items()})
        decision = decide_conv_format(weight_ohwi, params, self.decision_target, self.optimize, self.threshold, formats)
        if decision.format == "dense":
            # Stays dense; the layer's metadata says why (predicted instructions per format).
            dense = func.with_attr("dtmm.layer", json.dumps(dict(layer, format_choice=decision.to_json()),
                                                            sort_keys=True))
            gvar = self.builder_.add_func(dense, layer["name"])
            return relax.call_tir(gvar, [self.visit_expr(a) for a in call.args[1].fields], call.ty)
        if decision.format == PATTERN:
            return self._rewrite_pattern(call, layer, params, params_json, stats, weight_ohwi, patterns, decision)
        if decision.format == COMPACT:
            return self._rewrite_compact(call, layer, params, params_json, stats, weight_ohwi, decision)
        packed = pack_filterlets_as(weight_ohwi, decision.format, layer["name"])
        if packed.format == UNSTRUCTURED:
            from dtmm_tvm.ops.conv2d_unstructured import conv2d_unstructured_int8

            sparse = conv2d_unstructured_int8(params, packed.nonzero_weights)
            func_name = layer["name"].replace("conv2d", "conv2d_unstructured")
        else:
            sparse = conv2d_filterlet_int8(params, packed.kept_filterlets, fmt=packed.format)
            func_name = layer["name"].replace("conv2d", "conv2d_filterlet")
        layer = dict(_sparse_layer(layer, stats, packed), format_choice=decision.to_json())
        sparse = sparse.with_attr("dtmm.layer", json.dumps(layer, sort_keys=True))
        sparse = sparse.with_attr("dtmm.params", json.dumps(params_json))
        gvar = self.builder_.add_func(sparse, func_name)
        args = [self.visit_expr(x), relax.const(packed.values),
                *[relax.const(a) for a in packed.index_arrays], bias, mult, shift]
        return relax.call_tir(gvar, args, call.ty)

    def _rewrite_pattern(self, call, layer, params, params_json, stats, weight_ohwi, patterns, decision):
        from dtmm_tvm.ops.conv2d_pattern import conv2d_pattern_int8

        x, _, bias, mult, shift = call.args[1].fields
        packed = pack_patterns(weight_ohwi, layer["name"], patterns)
        func = conv2d_pattern_int8(params, packed.kept_kernels, packed.patterns)
        n, oh, ow, _ = layer["output_shape"]
        layer = dict(
            layer,
            format=PATTERN,
            **_stats_fields(stats),
            patterns=packed.patterns,
            kept_kernels=packed.kept_kernels,
            total_kernels=int(weight_ohwi.shape[0] * weight_ohwi.shape[3]),
            kept_macs=int(n * oh * ow * int(np.count_nonzero(weight_ohwi))),
            stored_weight_bytes=packed.nbytes,
            index_bytes=packed.index_bytes,
            format_bytes=_format_bytes_of(weight_ohwi),
            format_choice=decision.to_json(),
        )
        func = func.with_attr("dtmm.layer", json.dumps(layer, sort_keys=True))
        func = func.with_attr("dtmm.params", json.dumps(params_json))
        gvar = self.builder_.add_func(func, layer["name"].replace("conv2d", "conv2d_pattern"))
        args = [self.visit_expr(x), relax.const(packed.values), *[relax.const(a) for a in packed.index_arrays],
                bias, mult, shift]
        return relax.call_tir(gvar, args, call.ty)

    def _rewrite_compact(self, call, layer, params, params_json, stats, weight_ohwi, decision):
        from dtmm_tvm.ops.conv2d_compact import conv2d_compact_int8

        x, _, bias, mult, shift = call.args[1].fields
        packed = pack_compact(weight_ohwi, const_value(bias), const_value(mult), const_value(shift),
                              params.output_zero_point, params.act_min, params.act_max)
        func = conv2d_compact_int8(params, packed.kept_filters)
        n, oh, ow, _ = layer["output_shape"]
        index_bytes = int(packed.channels.nbytes + packed.fill.size)
        layer = dict(
            layer,
            format=COMPACT,
            **_stats_fields(stats),
            kept_filters=packed.kept_filters,
            # the kept filters run dense: their zero filterlets are multiplied too
            kept_macs=int(n * oh * ow * packed.weight.size),
            stored_weight_bytes=packed.nbytes,
            index_bytes=index_bytes,
            format_bytes=dict(_format_bytes_of(weight_ohwi), **{COMPACT: packed.nbytes}),
            format_choice=decision.to_json(),
        )
        func = func.with_attr("dtmm.layer", json.dumps(layer, sort_keys=True))
        func = func.with_attr("dtmm.params", json.dumps(params_json))
        gvar = self.builder_.add_func(func, layer["name"].replace("conv2d", "conv2d_compact"))
        args = [self.visit_expr(x), relax.const(packed.weight), relax.const(packed.channels), relax.const(packed.fill),
                relax.const(packed.bias), relax.const(packed.mult), relax.const(packed.shift)]
        return relax.call_tir(gvar, args, call.ty)

    def _rewrite_float(self, conv):
        from dtmm_tvm.ops.conv2d_filterlet import conv2d_filterlet_float32
        from dtmm_tvm.quant.conv import Conv2DParams

        attrs = conv.attrs
        if attrs.data_layout != "NHWC" or attrs.out_layout != "NHWC" or int(attrs.groups) != 1:
            return None
        if any(int(d) != 1 for d in attrs.dilation) or attrs.kernel_layout not in ("HWIO", "OHWI"):
            return None
        weight = self._float_constant(conv.args[1])
        if weight is None:
            return None
        weight_ohwi = np.ascontiguousarray(weight.transpose(3, 0, 1, 2) if attrs.kernel_layout == "HWIO" else weight)
        stats = analyze_filterlets(weight_ohwi)
        if stats.filterlet_sparsity <= self.threshold:
            return None
        name = f"conv2d_filterlet_f32_{self.float_count}"
        self.float_count += 1
        packed = pack_filterlets(weight_ohwi, layer=name)
        params = Conv2DParams(
            input_shape=static_shape(conv.args[0]),
            weight_shape=tuple(weight_ohwi.shape),
            strides=tuple(int(s) for s in attrs.strides),
            padding=tuple(int(p) for p in attrs.padding),
            dilation=(1, 1),
            input_zero_point=0,
            output_zero_point=0,
            act_min=-128,
            act_max=127,
        )
        out_shape = static_shape(conv)
        n, oh, ow, oc = out_shape
        macs = n * oh * ow * oc * weight_ohwi.shape[1] * weight_ohwi.shape[2] * weight_ohwi.shape[3]
        layer = {
            "name": name, "op": "conv2d", "input_shape": list(params.input_shape),
            "output_shape": list(out_shape), "kernel": list(weight_ohwi.shape[1:3]),
            "strides": list(params.strides), "padding": list(params.padding), "macs": int(macs),
            "dense_weight_bytes": int(weight_ohwi.nbytes),
        }
        layer = _sparse_layer(layer, stats, packed)
        func = conv2d_filterlet_float32(params, packed.kept_filterlets)
        func = func.with_attr("dtmm.layer", json.dumps(layer, sort_keys=True))
        # One symbol per layer: the builder's generic "conv2d_filterlet_float32" would repeat.
        func = func.with_attr("global_symbol", name)
        gvar = self.builder_.add_func(func, name)
        args = [self.visit_expr(conv.args[0]), relax.const(packed.values.astype(np.float32)),
                relax.const(packed.col_idx), relax.const(packed.row_ptr)]
        return relax.call_tir(gvar, args, relax.TensorType(list(out_shape), dtype_of(conv)))

    def _float_constant(self, expr):
        expr = self.resolve(expr)
        if is_op(expr, "relax.permute_dims"):
            # ConvertLayout (ONNX OIHW -> OHWI) transposes the constant in the graph: apply the
            # op's own axes to the values, so the layout comes from the IR, never from shapes.
            inner = self._float_constant(expr.args[0])
            if inner is None:
                return None
            axes = [int(a) for a in expr.attrs.axes] if expr.attrs.axes is not None else None
            return np.ascontiguousarray(np.transpose(inner, axes))
        if is_const(expr) and "float" in dtype_of(expr):
            return const_value(expr)
        if is_op(expr, "relax.dequantize"):
            data = self.resolve(expr.args[0])
            if is_const(data) and is_const(expr.args[1]) and is_const(expr.args[2]):
                values = const_value(data).astype(np.float32)
                scale = const_value(expr.args[1]).astype(np.float32)
                zero_point = const_value(expr.args[2]).astype(np.float32)
                axis = int(expr.attrs.axis)
                shape = [1] * values.ndim
                if scale.size > 1:
                    shape[axis] = scale.size
                return ((values - zero_point.reshape(shape if zero_point.size > 1 else [1] * values.ndim))
                        * scale.reshape(shape)).astype(np.float32)
        return None


def _stats_fields(stats) -> dict:
    """The filterlet statistics every rewritten layer's metadata carries."""
    return dict(filterlet_sparsity=round(stats.filterlet_sparsity, 6), filter_sparsity=round(stats.filter_sparsity, 6),
                kept_filterlets=stats.kept_filterlets, total_filterlets=stats.total_filterlets)


def _sparse_layer(layer: dict, stats, packed) -> dict:
    cin = packed.weight_shape[3]
    n, oh, ow, _ = layer["output_shape"]
    out = dict(
        layer,
        format=packed.format,
        **_stats_fields(stats),
        kept_macs=int(n * oh * ow * stats.kept_filterlets * cin),
        stored_weight_bytes=int(packed.values.size * packed.values.itemsize + packed.index_bytes),
        index_bytes=packed.index_bytes,
        format_bytes=_format_bytes(packed),
    )
    if packed.format == UNSTRUCTURED:
        # the per-weight kernel multiplies only the non-zero weights
        nnz = packed.nonzero_weights
        out.update(nonzero_weights=nnz, kept_macs=int(n * oh * ow * nnz),
                   element_sparsity=round(1.0 - nnz / max(int(np.prod(packed.weight_shape)), 1), 6))
    return out


def _format_bytes(packed) -> dict:
    """Stored bytes (values + index) of the layer in every index format that fits it."""
    return _format_bytes_of(packed.unpack())


def _format_bytes_of(weight) -> dict:
    """Stored bytes (values + index) of OHWI int8 ``weight`` in every format that fits it."""
    from dtmm_tvm.sparsity import pack_filterlets_as
    from dtmm_tvm.errors import FormatError

    out = {"dense": int(weight.size * weight.itemsize)}
    for fmt in FORMATS:
        try:
            out[fmt] = int(pack_filterlets_as(weight, fmt).nbytes)
        except FormatError:
            pass
    patterns = detect_patterns(weight)
    if patterns is not None:
        out[PATTERN] = pattern_bytes(weight.shape, patterns.kept_kernels, len(patterns.supports))
    return out


def _has_c_target() -> bool:
    """The pattern kernel is C only: offered when the current target is a C target."""
    target = tvm.target.Target.current(allow_none=True)
    return target is not None and str(target.kind.name) == "c"


@tvm.transform.module_pass(opt_level=0, name="FilterletSparseConv")
class FilterletSparseConv:
    """Rewrite convs whose filterlet sparsity exceeds ``threshold`` to the filterlet-sparse kernel.

    Parameters
    ----------
    threshold : float
        Minimum filterlet sparsity (0..1, exclusive) for the rewrite; below it the dense kernel
        is smaller and faster because the index costs 2 bytes per kept filterlet.
    formats : sequence of str, optional
        Index formats the integer rewrite may choose from (default: all of
        :data:`dtmm_tvm.sparsity.FORMATS`, which includes the per-weight ``"unstructured_csr"``,
        and ``"pattern"``, :data:`ALL_FORMATS`; module default :data:`FORMATS_OVERRIDE` when set).
        Float convs always use ``"filterlet_csr"``. With ``"unstructured_csr"`` allowed, a conv
        whose filterlet sparsity is at or below ``threshold`` is still considered when its element
        sparsity exceeds :data:`dtmm_tvm.costmodel.format_choice.UNSTRUCTURED_MIN_SPARSITY`.
        ``"pattern"`` (the PatDNN-style baseline, :mod:`dtmm_tvm.sparsity.pattern`) is a candidate
        for a conv whose weights fit its limits, whatever its filterlet sparsity, and only under a
        C target.
    optimize : {"speed", "size"}
        How an integer conv's format is chosen among dense and the fitting filterlet formats
        (:func:`dtmm_tvm.costmodel.format_choice.decide_conv_format`): ``"speed"`` by the cost
        model's predicted instructions for ``Target.current()`` (bytes break ties; a filterlet
        format must be predicted faster than dense, so no layer gets slower), ``"size"`` by
        fewest bytes. The choice and its reason (predicted instructions and bytes of every
        candidate) go to the layer's ``"dtmm.layer"`` metadata as ``"format_choice"``, with
        ``"format"``, ``"stored_weight_bytes"``, ``"index_bytes"`` and ``"format_bytes"`` on a
        rewritten layer.
    decision_target : str, optional
        The target tag whose cost model decides each format (default ``Target.current()``):
        ``--verify`` builds for the host with the formats the shipped target build chose.
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, formats=None, optimize: str = "speed",
                 decision_target: str | None = None):
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {threshold}")
        if optimize not in OPTIMIZE:
            raise ValueError(f"optimize must be one of {OPTIMIZE}, got {optimize!r}")
        self.optimize = optimize
        self.decision_target = decision_target
        self.threshold = threshold
        formats = FORMATS_OVERRIDE if formats is None else formats
        formats = ALL_FORMATS if formats is None else tuple(formats)
        bad = [f for f in formats if f not in ALL_FORMATS]
        if bad or not formats:
            raise ValueError(f"unknown filterlet formats {bad}; known: {ALL_FORMATS}")
        self.formats = formats

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        rewriter = _Rewriter(mod, self.threshold, self.formats, self.optimize, self.decision_target)
        for gvar, func in mod.functions_items():
            if isinstance(func, relax.Function):
                rewriter.builder_.update_func(gvar, rewriter.rewrite(func))
        return drop_unreferenced_prim_funcs(relax.transform.DeadCodeElimination()(rewriter.builder_.get()))
