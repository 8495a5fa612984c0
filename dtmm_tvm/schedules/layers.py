"""The tunable layers of a lowered model: which kernels the tuning records can key.

Each conv / filterlet conv / depthwise / fully connected ``call_tir`` whose PrimFunc carries
``"dtmm.op"`` and ``"dtmm.params"`` (set by the lowering passes) and whose parameters are
constants, identified by :func:`dtmm_tvm.schedules.records.layer_key` (identical layers share
one entry). Used by the tuner (to measure them) and by the compiler (to report the tuned ones).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .records import TUNABLE_OPS, layer_key

__all__ = ["TunableLayer", "attr", "tunable_layers"]


@dataclass
class TunableLayer:
    """One distinct tunable layer of a lowered model."""

    key: str
    op: str
    names: list            # PrimFunc names sharing this key (identical layers are tuned once)
    params: object         # Conv2DParams / FullyConnectedParams
    extra: dict            # extra key fields (kept_filterlets / kept_filters of the sparse convs)
    func: object           # the lowered PrimFunc (attributes to carry over)
    input_ty: object       # relax TensorType of the layer's input
    constants: list        # the call's constant arguments, in order
    out_ty: object
    layer: dict = field(default_factory=dict)
    build_kwargs: dict = field(default_factory=dict)  # extra builder arguments (e.g. fmt), not in the key


def _params_cls(op: str):
    from ..quant.conv import Conv2DParams, FullyConnectedParams

    return FullyConnectedParams if op == "fully_connected" else Conv2DParams


def attr(func, name):
    attrs = func.attrs
    return str(attrs[name]) if attrs is not None and name in attrs else None


def tunable_layers(mod) -> list[TunableLayer]:
    """The distinct tunable layers of a lowered module, in call order."""
    from tvm import relax

    main = mod["main"]
    found: dict[str, TunableLayer] = {}
    for block in main.body.blocks:
        for binding in block.bindings:
            call = binding.value
            if not (isinstance(call, relax.Call) and getattr(call.op, "name", None) == "relax.call_tir"):
                continue
            gvar = call.args[0]
            func = mod[gvar]
            op, params_attr, layer_attr = attr(func, "dtmm.op"), attr(func, "dtmm.params"), attr(func, "dtmm.layer")
            if op not in TUNABLE_OPS or params_attr is None:
                continue
            args = list(call.args[1].fields)
            if _is_const(args[0]) or not all(_is_const(a) for a in args[1:]):
                continue  # a layer whose parameters are not constants (not produced by our passes)
            raw = json.loads(params_attr)
            params = _params_cls(op)(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
            layer = json.loads(layer_attr) if layer_attr else {}
            extra, build_kwargs = {}, {}
            if op == "conv2d_filterlet":
                # Index formats other than the CSR one (filterlet_u8, filterlet_bitmask, ...).
                fmt = layer.get("format")
                if fmt and fmt != "filterlet_csr":
                    build_kwargs["fmt"] = fmt
                kept = layer.get("kept_filterlets")
                if kept is None:
                    kept = int(args[1].ty.shape[0]) // params.weight_shape[3]  # values: [kept * Cin]
                extra["kept_filterlets"] = int(kept)
            if op == "conv2d_compact":
                kept = layer.get("kept_filters")
                extra["kept_filters"] = int(kept if kept is not None else args[1].ty.shape[0])  # w: [K, KH, KW, Cin]
            key = layer_key(op, params, **extra)
            if key in found:
                found[key].names.append(gvar.name_hint)
                continue
            found[key] = TunableLayer(key, op, [gvar.name_hint], params, extra, func, args[0].ty, args[1:],
                                      call.ty, layer, build_kwargs)
    return list(found.values())


def _is_const(expr) -> bool:
    import tvm

    return isinstance(expr, tvm.ir.GenericConst)
