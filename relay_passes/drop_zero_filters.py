"""DropZeroFilters: physically remove all-zero filters and the input channels they feed.

DTMM prunes whole filters as well as filterlets. An all-zero filter ``o`` of an integer conv still
produces an output channel: the constant ``c_o = clamp(requantize(bias[o]) + zero_point)``. That
channel can be removed, together with input channel ``o`` of every consumer, when doing so is
exact for every consumer:

- when ``c_o`` equals a consumer conv's input zero point, channel ``o`` contributes
  ``(c_o - zero_point) * w = 0`` everywhere, padding included (the usual case: a ReLU clamps a
  non-positive bias to the zero point);
- otherwise, for a consumer without padding, the contribution is the same at every output pixel
  and is folded into the consumer's int32 bias.

Producers whose output also feeds anything else (an add, a pool, the model output) are left
alone. The pass runs on the integer convs of :class:`LowerQDQToInteger` and before
:class:`FilterletSparseConv`, so the sparse format never stores removed filters.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from dtmm_tvm.quant.onnx import requantize_records

from ._match import const_value, drop_unreferenced_prim_funcs, func_attr_json, is_const, is_op, prim_func_of


def _conv_call(mod, value):
    """(layer, params, args) of an integer dense conv2d call_tir with constant parameters, else None."""
    _, func = prim_func_of(mod, value)
    layer = func_attr_json(func, "dtmm.layer")
    params = func_attr_json(func, "dtmm.params")
    if layer is None or params is None or layer.get("op") != "conv2d" or layer.get("format") != "dense":
        return None
    args = list(value.args[1].fields)
    if not all(is_const(a) for a in args[1:]):
        return None
    return layer, params, args


def _chunk() -> int:
    """Input channels per SIMD chunk of the conv kernels for ``Target.current()`` (16 with MVE,
    4 with DSP or portable C, as in :func:`dtmm_tvm.schedules.conv.chunk_elems`)."""
    from dtmm_tvm.kernels import target_isa
    from dtmm_tvm.schedules.conv import chunk_elems

    target = tvm.target.Target.current(allow_none=True)
    isa = target_isa(target) if target is not None and str(target.kind.name) == "c" else "c"
    return chunk_elems(isa)


def _params_from_json(params_json: dict):
    from dtmm_tvm.quant.conv import Conv2DParams

    return Conv2DParams(**{k: tuple(v) if isinstance(v, list) else v for k, v in params_json.items()})


def _params_to_json(params) -> dict:
    from dataclasses import asdict

    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(params).items()}


class _Plan:
    """What to rewrite: new constants and params per affected call, keyed by binding var."""

    def __init__(self):
        self.calls: dict = {}  # var -> dict(params, weight, bias, mult, shift, layer)


def _plan(mod: tvm.IRModule, func: relax.Function) -> _Plan:
    var2val = relax.analysis.get_var2val(func)
    users: dict = {}
    for var, value in var2val.items():
        if isinstance(value, (relax.Call, relax.Tuple)):
            args = value.fields if isinstance(value, relax.Tuple) else (
                value.args[1].fields if is_op(value, "relax.call_tir") else value.args)
            for arg in args:
                # Tuple arguments (an int8 concat's inputs) read every field.
                for leaf in (arg.fields if isinstance(arg, relax.Tuple) else [arg]):
                    if isinstance(leaf, relax.Var):
                        users.setdefault(leaf, []).append(var)
    outputs = set(relax.analysis.free_vars(func.body.body)) if hasattr(func.body, "body") else set()
    plan = _Plan()
    state = {}  # var -> current (params, weight, bias, mult, shift, layer)
    for var, value in var2val.items():
        conv = _conv_call(mod, value)
        if conv is not None:
            layer, params_json, args = conv
            state[var] = dict(params=_params_from_json(params_json), weight=const_value(args[1]),
                              bias=const_value(args[2]).astype(np.int64), mult=const_value(args[3]),
                              shift=const_value(args[4]), layer=layer, source=args[0])
    for var, producer in state.items():
        consumers = users.get(var, [])
        if not consumers or var in outputs or not all(c in state and state[c]["source"].same_as(var) for c in consumers):
            continue
        zero_filters = np.flatnonzero(~producer["weight"].reshape(producer["weight"].shape[0], -1).any(axis=1))
        if zero_filters.size == 0 or zero_filters.size == producer["weight"].shape[0]:
            continue
        p = producer["params"]
        # TFLite fixed-point or ONNX float32 records, whichever the layer carries.
        constants = requantize_records(producer["bias"][zero_filters], producer["mult"][zero_filters],
                                       producer["shift"][zero_filters], p.output_zero_point, p.act_min,
                                       p.act_max).astype(np.int64)
        removable = []
        for channel, constant in zip(zero_filters, constants):
            if all(constant == state[c]["params"].input_zero_point or not any(state[c]["params"].padding)
                   for c in consumers):
                removable.append((int(channel), int(constant)))
        # Keep the consumers' Cin a multiple of the kernels' SIMD chunk when it was one: an
        # unaligned Cin costs a partial chunk per tap in every consumer, more than the dropped
        # channels save (measured: ResNet-8 at 75% on M55, Cin 32 -> 30).
        align = _chunk()
        count = producer["weight"].shape[0]
        if count % align == 0:
            removable = removable[:len(removable) // align * align]
        if not removable:
            continue
        drop = [c for c, _ in removable]
        keep = np.setdiff1d(np.arange(producer["weight"].shape[0]), drop)
        for consumer_var in consumers:
            c = state[consumer_var]
            cp = c["params"]
            for channel, constant in removable:
                # Exact fold of a constant input channel into the bias (zero when constant == zp).
                contribution = (constant - cp.input_zero_point) * c["weight"][:, :, :, channel].astype(np.int64)
                c["bias"] = c["bias"] + contribution.reshape(contribution.shape[0], -1).sum(axis=1)
            c["weight"] = np.ascontiguousarray(c["weight"][:, :, :, keep])
            n, h, w, _ = cp.input_shape
            c["params"] = replace(cp, input_shape=(n, h, w, keep.size), weight_shape=tuple(c["weight"].shape))
            c["layer"] = dict(c["layer"], input_shape=[n, h, w, int(keep.size)],
                              dense_weight_bytes=int(c["weight"].size), stored_weight_bytes=int(c["weight"].size),
                              macs=int(c["layer"]["macs"] * keep.size // cp.input_shape[3]),
                              kept_macs=int(c["layer"]["macs"] * keep.size // cp.input_shape[3]))
            plan.calls[consumer_var] = c
        producer["weight"] = np.ascontiguousarray(producer["weight"][keep])
        for key in ("bias", "mult", "shift"):
            producer[key] = producer[key][keep]
        n, oh, ow, _ = p.output_shape
        producer["params"] = replace(p, weight_shape=tuple(producer["weight"].shape))
        producer["layer"] = dict(producer["layer"], output_shape=[n, oh, ow, int(keep.size)],
                                 dropped_filters=len(drop), dense_weight_bytes=int(producer["weight"].size),
                                 stored_weight_bytes=int(producer["weight"].size),
                                 macs=int(producer["layer"]["macs"] * keep.size // p.weight_shape[0]),
                                 kept_macs=int(producer["layer"]["macs"] * keep.size // p.weight_shape[0]))
        plan.calls[var] = producer
    for entry in plan.calls.values():
        if np.any(entry["bias"] > 2**31 - 1) or np.any(entry["bias"] < -(2**31)):
            raise OverflowError("folded bias leaves int32")  # cannot happen for int8 weights of sane size
    return plan


@mutator
class _Rewriter(PyExprMutator):
    def __init__(self, mod, plan: _Plan):
        super().__init__(mod)
        self.plan = plan
        self.current_var = None

    def visit_var_binding_(self, binding):
        self.current_var = binding.var
        super().visit_var_binding_(binding)

    def visit_call_(self, call):
        entry = self.plan.calls.get(self.current_var)
        if entry is None or not is_op(call, "relax.call_tir"):
            return super().visit_call_(call)
        from dtmm_tvm.ops.conv2d import conv2d_int8

        params = entry["params"]
        func = conv2d_int8(params)
        func = func.with_attr("dtmm.layer", json.dumps(entry["layer"], sort_keys=True))
        func = func.with_attr("dtmm.params", json.dumps(_params_to_json(params)))
        gvar = call.args[0]
        self.builder_.update_func(gvar, func)  # same kernel name, new shapes
        args = [self.visit_expr(call.args[1].fields[0]), relax.const(entry["weight"]),
                relax.const(entry["bias"].astype(np.int32)), relax.const(entry["mult"]), relax.const(entry["shift"])]
        return relax.call_tir(gvar, args, relax.TensorType(list(params.output_shape), "int8"))


@tvm.transform.module_pass(opt_level=0, name="DropZeroFilters")
class DropZeroFilters:
    """Remove all-zero filters of integer convs and the matching input channels of their
    consumers, where that is exact (see the module docstring)."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        for gvar, func in list(mod.functions_items()):
            if not isinstance(func, relax.Function):
                continue
            plan = _plan(mod, func)
            if not plan.calls:
                continue
            rewriter = _Rewriter(mod, plan)
            new_func = rewriter.visit_expr(func)
            rewriter.builder_.update_func(gvar, new_func)
            mod = rewriter.builder_.get()
        return drop_unreferenced_prim_funcs(relax.transform.DeadCodeElimination()(mod))
