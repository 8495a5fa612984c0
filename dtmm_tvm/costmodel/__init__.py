"""The compiler's cost model: what one layer or one model will cost on a target, before compiling.

This is the one interface the pruner (:mod:`dtmm_tvm.pruning`) uses to ask the compiler about
costs; other compiler code (e.g. choosing a conv's weight format) may use it too. Everything
here needs numpy only at import time; fitting imports TVM and the QEMU runner.

API
---
``predict_conv(params, mask, target) -> ConvCost``
    ``params``: a :class:`dtmm_tvm.quant.conv.Conv2DParams` (regular conv, OHWI weights) or a
    :class:`ConvShape`; ``mask``: bool keep-mask of filterlets ``(Cout, KH, KW)`` (``None`` =
    dense; OHWI int8 weights are accepted too: a filterlet is kept when any weight is non-zero);
    ``target``: ``"dtmm/cortex-m4"`` / ``"dtmm/cortex-m7"`` / ``"dtmm/cortex-m55"``.
    Returns a ``ConvCost`` (a tuple ``(instructions, flash_bytes, chosen_format)`` with the
    per-format alternatives in ``.by_format``): the format is the one ``dtmm compile`` picks
    with ``--optimize speed`` (dense at or below the sparsity threshold, otherwise the fewest
    predicted instructions, never a format not predicted faster than dense: one decision,
    :mod:`dtmm_tvm.costmodel.format_choice`); ``flash_bytes`` are exact: the stored
    weights in that format (values + index, the storage module's own byte counts) plus the int32
    bias, multiplier and shift per output channel; ``instructions`` are predicted by the fitted
    linear model.
``predict_conv_formats(params, mask, target) -> {format: (instructions, flash_bytes)}``
    Every weight format the layer fits (``"dense"``, the filterlet formats and, when some of its
    filters are all zero, ``"filter_compact"``: the dense conv of the kept filters plus the
    expansion, group ``expand_channels``), for a caller that chooses the format by predicted
    instructions.
``predict_conv_pattern(params, kept_kernels, patterns, target) -> (instructions, flash_bytes)``
    A regular conv in the pattern-pruning baseline's format (:mod:`dtmm_tvm.sparsity.pattern`):
    ``kept_kernels`` non-zero (out, in) kernels over ``patterns`` distinct 4-tap patterns.
``predict_depthwise(params, target)``, ``predict_fc(in_features, out_features, target)``
    ``(instructions, flash_bytes)`` of a depthwise conv / fully connected layer.
``predict_pool``, ``predict_mean``, ``predict_softmax``, ``predict_add``
    Instructions of the non-conv operators the pruner's models lower to (no stored constants).
``format_bytes(weight_shape, kept_filterlets, fmt)``
    Stored weight bytes from the kept-filterlet count alone (closed form of the storage
    module's packings, tested equal to them), for search loops that must be fast.
``peak_sram(calls, target) -> int``
    Arena bytes the codegen planner (:func:`dtmm_tvm.codegen.planner.plan_arena`) lays out for
    a straight-line graph: ``calls`` is a list of :class:`ArenaCall` (output bytes, the indices
    of the calls it reads, its kernel scratch bytes). The compiled artifact's
    ``metadata.json["arena"]["bytes"]`` is the final word; this is the same planner on the
    same buffers, without compiling.
``load_coefficients(target)``
    The fitted coefficients shipped in ``dtmm_tvm/costmodel/coefficients/<target>.json``
    (regenerate with ``dtmm fit-cost-model --target ...``; the file also holds every measured
    point and the per-layer error on held-out shapes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .features import (CONV_FEATURES, CONV_FORMATS, ConvShape, add_features, conv_features, depthwise_features,
                       expand_features, fc_features, mean_features, pattern_features, pool_features,
                       softmax_features)

__all__ = ["ArenaCall", "ConvCost", "ConvShape", "CONV_FORMATS", "format_bytes", "load_coefficients",
           "peak_sram", "predict_conv", "predict_conv_formats", "predict_conv_pattern", "predict_depthwise",
           "predict_fc", "conv_shape_of", "CostModelError", "predict_pool", "predict_mean", "predict_softmax",
           "predict_add", "predict_artifact", "conv_params", "padding_of", "scratch_bytes"]

from ..errors import DTMMError
from ..sparsity.compact import COMPACT


class CostModelError(DTMMError):
    """No coefficients for a target, or a layer the model does not cover."""


#: Per output channel: int32 bias, multiplier and shift (stored next to the weights).
REQUANT_BYTES_PER_CHANNEL = 12


class ConvCost(NamedTuple):
    instructions: int
    flash_bytes: int
    chosen_format: str
    by_format: dict = {}


def _tag(target) -> str:
    if not isinstance(target, str):
        from ..target import target_tag

        return target_tag(target)
    from ..target import TARGET_TAGS

    name = target if target.startswith("dtmm/") else f"dtmm/{target}"
    if name not in TARGET_TAGS:
        raise CostModelError(f"unknown target '{target}'; choose one of: {', '.join(TARGET_TAGS)}")
    return name


@lru_cache(maxsize=None)
def _load(path: str) -> dict:
    return json.loads(Path(path).read_text())


def load_coefficients(target) -> dict:
    """The coefficients document of ``target`` (M7 uses M4's fit when it has none: same ISA)."""
    from .fit import coefficients_path

    tag = _tag(target)
    path = coefficients_path(tag)
    if not path.exists() and tag == "dtmm/cortex-m7":
        path = coefficients_path("dtmm/cortex-m4")
    if not path.exists():
        raise CostModelError(f"no cost model for {tag} ({path.name} missing); run "
                             f"'dtmm fit-cost-model --target {tag}'")
    return _load(str(path))


def conv_heldout_error(doc: dict) -> float:
    """The largest held-out error of the conv groups (the margin a filterlet format must beat
    dense by); the whole fit's when the file predates per-group errors."""
    groups = doc.get("heldout_by_group") or {}
    conv = [g["max_abs_error"] for name, g in groups.items() if name.startswith("conv/")]
    return float(max(conv) if conv else (doc.get("heldout_max_abs_error") or 0.0))


def conv_shape_of(params, kept_filterlets: int | None = None) -> ConvShape:
    """A :class:`ConvShape` from ``Conv2DParams`` (or a ConvShape, returned with ``kept``)."""
    if isinstance(params, ConvShape):
        if kept_filterlets is None:
            return params
        return ConvShape(**{**params.__dict__, "kept_filterlets": int(kept_filterlets)})
    n, h, w, cin = params.input_shape
    if n != 1:
        raise CostModelError(f"cost model: batch {n} conv; only batch 1 is modelled")
    if tuple(params.dilation) != (1, 1):
        raise CostModelError(f"cost model: dilated conv {params.dilation} is not modelled")
    cout = params.output_shape[3]
    kh, kw = params.kernel_size
    return ConvShape(h, w, cin, cout, kh, kw, tuple(params.strides), tuple(params.padding),
                     depthwise=bool(params.depthwise), kept_filterlets=kept_filterlets)


def _keep_mask(mask, shape: ConvShape) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.ndim == 4:  # OHWI weights
        mask = np.any(mask != 0, axis=3)
    if mask.shape != (shape.cout, shape.kh, shape.kw):
        raise CostModelError(f"mask shape {mask.shape} does not match the conv's filterlets "
                             f"({shape.cout}, {shape.kh}, {shape.kw})")
    return mask.astype(bool)


def format_bytes(weight_shape, kept_filterlets: int, fmt: str, nonzero_weights: int | None = None) -> int | None:
    """Stored weight bytes (values + index) of a conv in ``fmt``; None if the layer does not fit
    the format. Equal to ``pack_filterlets_as(w, fmt).nbytes`` (tested). ``nonzero_weights``
    (the unstructured format's count) defaults to ``kept_filterlets * Cin``."""
    from ..sparsity.storage import BITMASK_MAX_TAPS, INT16_MAX, U8_MAX, UNSTRUCTURED

    o, kh, kw, cin = (int(d) for d in weight_shape)
    kept = int(kept_filterlets)
    taps = kh * kw
    if fmt == "dense":
        return o * taps * cin
    if fmt == UNSTRUCTURED:
        if taps * cin - 1 > INT16_MAX:
            return None
        nnz = kept * cin if nonzero_weights is None else int(nonzero_weights)
        return nnz + 2 * nnz + 4 * (o + 1)
    if fmt == "filterlet_csr":
        if (taps - 1) * cin > INT16_MAX or kept > INT16_MAX:
            return None
        return kept * cin + 2 * kept + 2 * (o + 1)
    if fmt == "filterlet_u8":
        if taps > U8_MAX:
            return None
        return kept * cin + kept + o
    if fmt == "filterlet_bitmask":
        if taps > BITMASK_MAX_TAPS:
            return None
        return kept * cin + -(-(o * taps) // 8) + 3
    raise CostModelError(f"unknown weight format {fmt!r}; known: {CONV_FORMATS}")


def _coef(doc: dict, group: str) -> list:
    coef = doc["coefficients"].get(group)
    if coef is None:
        raise CostModelError(f"cost model for {doc['target']} has no fit for {group}; run "
                             f"'dtmm fit-cost-model --target {doc['target']}'")
    return coef


def _predict(doc, group, feats) -> int:
    coef = _coef(doc, group)
    known = doc.get("features", {}).get("conv", ())
    if group.startswith("conv/") and len(known) == len(coef) < len(feats):
        # fitted before features were appended (the MVE fast paths): those count 0 for its core,
        # else it must be refitted
        if list(known) == list(CONV_FEATURES[:len(known)]) and not any(feats[len(known):]):
            feats = feats[:len(known)]
    if len(coef) != len(feats):
        raise CostModelError(f"cost model for {doc['target']}: {group} was fitted on {len(coef)} features, this "
                             f"version computes {len(feats)}; run 'dtmm fit-cost-model --target {doc['target']}'")
    return int(round(float(np.dot(coef, feats))))


def predict_conv_formats(params, mask=None, target="dtmm/cortex-m4") -> dict:
    """``{format: (instructions, flash_bytes)}`` for every format the conv fits."""
    tag = _tag(target)
    doc = load_coefficients(tag)
    shape = conv_shape_of(params)
    if mask is not None and np.ndim(mask) == 4:  # OHWI weights: the unstructured format's count
        shape = ConvShape(**{**shape.__dict__, "nonzero_weights": int(np.count_nonzero(mask))})
    keep = _keep_mask(mask, shape)
    kept = shape.total_filterlets if keep is None else int(keep.sum())
    shape = conv_shape_of(shape, kept)
    if keep is not None:
        from .measure import kept_runs

        shape = ConvShape(**{**shape.__dict__, "kept_runs": kept_runs(keep)})
    weight_shape = (shape.cout, shape.kh, shape.kw, shape.cin)
    requant = REQUANT_BYTES_PER_CHANNEL * shape.cout
    out = {}
    for fmt in CONV_FORMATS:
        nbytes = format_bytes(weight_shape, kept, fmt, shape.nonzero_weights)
        if nbytes is None:
            continue
        out[fmt] = (_predict(doc, f"conv/{fmt}", conv_features(shape, fmt, tag)), nbytes + requant)
    if keep is not None:
        compact = predict_conv_compact(shape, int(keep.reshape(shape.cout, -1).any(axis=1).sum()), tag, doc)
        if compact is not None:
            out[COMPACT] = compact
    return out


def predict_conv_compact(shape: ConvShape, kept_filters: int, target, doc: dict | None = None) -> tuple | None:
    """``(instructions, flash_bytes)`` of a conv in the ``"filter_compact"`` format (the dense
    conv of its ``kept_filters`` filters, then the expansion), or None when the layer does not fit
    the format or the target's coefficients have no ``expand_channels`` fit (older files)."""
    from ..sparsity.compact import compact_bytes

    tag = _tag(target)
    doc = doc or load_coefficients(tag)
    nbytes = compact_bytes((shape.cout, shape.kh, shape.kw, shape.cin), kept_filters)
    if nbytes is None or "expand_channels" not in doc["coefficients"]:
        return None
    inner = ConvShape(**{**shape.__dict__, "cout": kept_filters, "kept_filterlets": None, "kept_runs": None,
                         "nonzero_weights": None})
    instr = _predict(doc, "conv/dense", conv_features(inner, "dense", tag)) + _predict(
        doc, "expand_channels", expand_features(shape.pixels, shape.cout, kept_filters, tag))
    return instr, nbytes + REQUANT_BYTES_PER_CHANNEL * kept_filters


def predict_conv_pattern(params, kept_kernels: int, patterns: int, target="dtmm/cortex-m4") -> tuple:
    """``(instructions, flash_bytes)`` of a regular conv in the pattern format (coefficients
    group ``conv/pattern``; bytes exact: :func:`dtmm_tvm.sparsity.pattern.pattern_bytes` plus
    the per-channel bias, multiplier and shift)."""
    from ..sparsity.pattern import pattern_bytes

    tag = _tag(target)
    doc = load_coefficients(tag)
    shape = conv_shape_of(params)
    nbytes = pattern_bytes((shape.cout, shape.kh, shape.kw, shape.cin), kept_kernels, patterns)
    feats = pattern_features(shape, kept_kernels, patterns, tag)
    return _predict(doc, "conv/pattern", feats), nbytes + REQUANT_BYTES_PER_CHANNEL * shape.cout


def compiler_format(by_format: dict, sparsity: float, threshold: float | None = None,
                    optimize: str = "speed", margin: float = 0.0, element_sparsity: float | None = None) -> str:
    """The weight format ``dtmm compile`` gives a conv whose per-format ``(instructions, bytes)``
    are ``by_format`` (the one decision of :mod:`dtmm_tvm.costmodel.format_choice`)."""
    from relay_passes import DEFAULT_THRESHOLD
    from .format_choice import pick

    return pick({f: v[1] for f, v in by_format.items()}, {f: v[0] for f, v in by_format.items()}, sparsity,
                DEFAULT_THRESHOLD if threshold is None else threshold, optimize, margin, element_sparsity)[0]


def predict_conv(params, mask=None, target="dtmm/cortex-m4", threshold: float | None = None) -> ConvCost:
    """``(instructions, flash_bytes, chosen_format)`` of a regular conv as ``dtmm compile``
    builds it (see the module docstring)."""
    shape = conv_shape_of(params)
    if shape.depthwise:
        raise CostModelError("predict_conv is for regular convs; use predict_depthwise")
    keep = _keep_mask(mask, shape)
    kept = shape.total_filterlets if keep is None else int(keep.sum())
    weights = np.asarray(mask) if mask is not None and np.ndim(mask) == 4 else None
    by_format = predict_conv_formats(shape, keep if weights is None else weights, target)
    element_sparsity = None if weights is None else 1.0 - np.count_nonzero(weights) / max(weights.size, 1)
    fmt = compiler_format(by_format, 1.0 - kept / shape.total_filterlets if shape.total_filterlets else 0.0,
                          threshold, margin=conv_heldout_error(load_coefficients(target)),
                          element_sparsity=element_sparsity)
    if keep is not None and fmt not in ("dense", COMPACT):
        # Exact bytes straight from the storage module's packing of this mask.
        from ..sparsity.storage import pack_filterlets_as

        weight = np.repeat(keep[..., None], shape.cin, axis=3).astype(np.int8) if weights is None else weights
        packed = pack_filterlets_as(weight, fmt)
        assert packed.nbytes + REQUANT_BYTES_PER_CHANNEL * shape.cout == by_format[fmt][1]
    instr, nbytes = by_format[fmt]
    return ConvCost(instr, nbytes, fmt, by_format)


def predict_depthwise(params, target="dtmm/cortex-m4") -> tuple:
    shape = conv_shape_of(params)
    doc = load_coefficients(_tag(target))
    nbytes = shape.kh * shape.kw * shape.cout + REQUANT_BYTES_PER_CHANNEL * shape.cout
    return _predict(doc, "depthwise", depthwise_features(shape, _tag(target))), nbytes


def predict_fc(in_features: int, out_features: int, target="dtmm/cortex-m4") -> tuple:
    doc = load_coefficients(_tag(target))
    nbytes = in_features * out_features + REQUANT_BYTES_PER_CHANNEL * out_features
    return _predict(doc, "fc", fc_features(in_features, out_features, _tag(target))), nbytes


def predict_pool(kind: str, out_hw: tuple, channels: int, window: tuple, target="dtmm/cortex-m4") -> int:
    """Instructions of a ``"max_pool2d"`` / ``"avg_pool2d"`` (NHWC, batch 1) with output
    ``out_hw`` x ``channels`` and a ``window`` (KH, KW)."""
    if kind not in ("max_pool2d", "avg_pool2d"):
        raise CostModelError(f"unknown pooling {kind!r}: max_pool2d or avg_pool2d")
    tag = _tag(target)
    return _predict(load_coefficients(tag), kind, pool_features(out_hw, channels, window))


def predict_mean(height: int, width: int, channels: int, target="dtmm/cortex-m4") -> int:
    """Instructions of a MEAN over H and W (global average pooling)."""
    tag = _tag(target)
    return _predict(load_coefficients(tag), "mean", mean_features(height, width, channels))


def predict_softmax(depth: int, rows: int = 1, target="dtmm/cortex-m4") -> int:
    tag = _tag(target)
    return _predict(load_coefficients(tag), "softmax", softmax_features(rows, depth))


def predict_add(elements: int, target="dtmm/cortex-m4") -> int:
    """Instructions of an elementwise ADD of two int8 tensors of ``elements`` each."""
    tag = _tag(target)
    return _predict(load_coefficients(tag), "add", add_features(elements))


def conv_params(shape: ConvShape):
    """The compiler's layer description (``Conv2DParams``, zero points 0) of a :class:`ConvShape`."""
    from ..quant.conv import Conv2DParams

    ws = (1, shape.kh, shape.kw, shape.cin) if shape.depthwise else (shape.cout, shape.kh, shape.kw, shape.cin)
    return Conv2DParams(input_shape=(1, shape.height, shape.width, shape.cin), weight_shape=ws,
                        strides=tuple(shape.strides), padding=tuple(shape.padding), depthwise=shape.depthwise)


def padding_of(in_hw, kernel_hw, strides, same: bool) -> tuple:
    """``(top, left, bottom, right)`` padding of a ``SAME`` (``same=True``) or ``VALID`` conv, as
    the compiler pads it."""
    from ..quant.conv import same_padding

    return same_padding(in_hw, kernel_hw, strides, mode="SAME" if same else "VALID")


def scratch_bytes(shape: ConvShape, fmt: str = "dense", target="dtmm/cortex-m4",
                  kept_filters: int | None = None) -> int:
    """Arena scratch of the kernel the compiler calls for this conv (or depthwise conv) in
    ``fmt`` on ``target``: the planner's request that :func:`peak_sram` lays out
    (``"filter_compact"`` needs ``kept_filters``)."""
    from ..schedules.conv import default_schedule, scratch_bytes as conv_scratch, target_isa
    from ..target import resolve_target

    params = conv_params(shape)
    t = resolve_target(target)
    if shape.depthwise:
        from ..ops.depthwise_conv2d import scratch_bytes as depthwise_scratch

        return int(depthwise_scratch(params, target_isa(t)))
    if fmt == COMPACT:   # scheduled as the dense conv of its kept filters
        from ..ops.conv2d_compact import compact_params

        if kept_filters is None:
            raise ValueError("the scratch of a filter_compact conv depends on its kept filters: pass kept_filters")
        schedule = default_schedule(compact_params(params, kept_filters), t)
        return int(conv_scratch(params, target_isa(t), schedule, fmt, kept_filters))
    return int(conv_scratch(params, target_isa(t), default_schedule(params, t), fmt))


@dataclass(frozen=True)
class ArenaCall:
    """One kernel call of a straight-line graph for :func:`peak_sram`.

    ``output_bytes``: its output tensor (0 for an in-place / aliasing op); ``reads``: indices of
    earlier calls whose outputs it reads (-1 = the model input, which lives outside the arena
    as in the AOT runner); ``scratch_bytes``: its kernel scratch; ``is_output``: the model
    output (also outside the arena)."""

    name: str
    output_bytes: int
    reads: tuple = ()
    scratch_bytes: int = 0
    is_output: bool = False


def peak_sram(calls: list, target="dtmm/cortex-m4") -> int:
    """Arena bytes of a straight-line graph, laid out by the codegen planner itself."""
    from ..codegen.planner import BufferRequest, plan_arena

    last = {}
    for i, call in enumerate(calls):
        for r in call.reads:
            if r >= 0:
                last[r] = max(last.get(r, r), i)
    requests = []
    for i, call in enumerate(calls):
        if call.output_bytes and not call.is_output:
            requests.append(BufferRequest(f"{i}:{call.name}", int(call.output_bytes), i, last.get(i, i)))
        if call.scratch_bytes:
            requests.append(BufferRequest(f"{i}:{call.name}:scratch", int(call.scratch_bytes), i, i))
    return int(plan_arena(requests).bytes)


def predict_artifact(metadata: dict, target=None) -> dict:
    """Whole-model prediction for a compiled artifact (see :mod:`dtmm_tvm.costmodel.artifact`)."""
    from .artifact import predict_artifact as _predict_artifact

    return _predict_artifact(metadata, None if target is None else _tag(target))
