"""The weight format of one regular conv: dense or a filterlet format, by predicted instructions.

One decision, used by the compiler's rewrite (:class:`relay_passes.FilterletSparseConv`) and by
the cost model's :func:`dtmm_tvm.costmodel.predict_conv` (so the pruner predicts what the
compiler builds):

- at or below the filterlet-sparsity ``threshold`` the layer stays dense;
- ``optimize="speed"`` (default): the candidate with the fewest *predicted* instructions
  (:func:`dtmm_tvm.costmodel.predict_conv_formats`, fitted on QEMU measurements of the kernels);
  candidates within :data:`TIE_FRACTION` of the fastest are tied and the fewest bytes wins. A
  filterlet format replaces dense only when it is predicted faster by more than the fit's
  held-out per-layer error (the conv groups' ``heldout_by_group`` of the target's coefficients, at least
  :data:`DENSE_MARGIN`): the promise is *never slower than dense* (small-Cin first convs, whose
  dense kernel takes the packed-patch path, stay dense this way up to very high sparsity,
  measured instead of the old estimated 85% rule);
- ``optimize="size"``: the fewest bytes (values + index), ties by predicted instructions.
- the unstructured format (``"unstructured_csr"``, CSR over single weights) is a candidate too,
  and also opens the decision when the filterlet sparsity is at or below the threshold but the
  *element* sparsity exceeds :data:`UNSTRUCTURED_MIN_SPARSITY` (a layer pruned weight by weight:
  filterlet sparsity low, element sparsity high), so such layers get the per-weight kernel
  where it is predicted faster (or, with ``size``, smaller) than dense.

Without a target (host builds) or without a cost model for it, ``speed`` cannot predict and
falls back to ``size``; the decision says so in its ``reason``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..sparsity.compact import COMPACT

OPTIMIZE = ("speed", "size")
#: A filterlet format must be predicted this much faster than dense to replace it.
DENSE_MARGIN = 0.05
#: Filterlet formats predicted within this fraction of the fastest one are tied (bytes decide).
TIE_FRACTION = 0.02
#: Element sparsity above which the unstructured format is considered although the filterlet
#: sparsity is at or below the threshold. At 50% or less it stores 3 bytes per non-zero (value +
#: int16 column), 1.5x the dense bytes or more, and walks every weight of a dense-ish row with
#: a gather: never smaller nor faster than dense.
UNSTRUCTURED_MIN_SPARSITY = 0.5
UNSTRUCTURED = "unstructured_csr"
#: Formats that apply by their own detection from the weights, not by the filterlet-sparsity
#: threshold (the pattern baseline: :mod:`dtmm_tvm.sparsity.pattern`).
UNGATED_FORMATS = ("pattern",)
#: How much faster than dense and every filterlet format the unstructured format must be
#: predicted (``speed``; else it is left out of the decision). Its rows
#: are unlike the filterlet formats' (gathers, one MAC per non-zero), and the dense fit's error
#: on small-Cin packed-patch layers is large: the DS-CNN 10x4 Cin=1 first conv at 60% is
#: predicted 931 k dense (measured 730 k) vs 850 k unstructured (measured 867 k) on M4; a
#: filterlet-pruned 12x12 16->16 3x3 layer at 90%: 266 k filterlet_csr (measured 234 k) vs
#: 243 k unstructured (measured 249 k).
UNSTRUCTURED_MARGIN = 0.25


@dataclass
class FormatDecision:
    """What was chosen for one conv, and why (recorded in metadata.json)."""

    format: str
    optimize: str
    reason: str
    bytes: dict = field(default_factory=dict)          # format -> stored weight bytes (values + index)
    predicted: dict = field(default_factory=dict)      # format -> predicted instructions (empty: none)
    cost_model: str | None = None                      # target whose coefficients predicted

    def to_json(self) -> dict:
        out = {"chosen": self.format, "optimize": self.optimize, "reason": self.reason,
               "bytes": dict(self.bytes)}
        if self.predicted:
            out["predicted_instructions"] = dict(self.predicted)
            out["cost_model"] = self.cost_model
        return out


def kept_runs(keep_ohw: np.ndarray) -> int:
    """Runs of consecutive kept taps (row-major over KH*KW), summed over filters: the kernel's
    dot-product calls per pixel group when Cin fills whole SIMD chunks."""
    flat = np.asarray(keep_ohw, dtype=bool).reshape(keep_ohw.shape[0], -1)
    starts = flat & ~np.concatenate([np.zeros((flat.shape[0], 1), bool), flat[:, :-1]], axis=1)
    return int(starts.sum())


def considered(sparsity: float, threshold: float, element_sparsity: float | None = None,
               formats=(UNSTRUCTURED,)) -> bool:
    """Whether a conv gets a format decision at all (else it stays dense without one): filterlet
    ``sparsity`` above ``threshold``, or the unstructured format among ``formats`` and
    ``element_sparsity`` above :data:`UNSTRUCTURED_MIN_SPARSITY`."""
    if sparsity > threshold:
        return True
    return (UNSTRUCTURED in formats and element_sparsity is not None
            and element_sparsity > max(threshold, UNSTRUCTURED_MIN_SPARSITY))


def pick(bytes_by_format: dict, predicted: dict, sparsity: float, threshold: float,
         optimize: str = "speed", margin: float = DENSE_MARGIN,
         element_sparsity: float | None = None) -> tuple[str, str]:
    """``(format, reason)`` from per-format bytes and predicted instructions (``predicted``
    empty: no prediction, bytes decide). ``bytes_by_format`` holds ``"dense"`` and every
    filterlet format the layer fits; ``margin``: how much faster than dense a filterlet format
    must be predicted (at least :data:`DENSE_MARGIN`); ``element_sparsity``: the fraction of
    zero weights (None: not known, only the filterlet sparsity opens the decision)."""
    margin = max(margin, DENSE_MARGIN)
    if optimize not in OPTIMIZE:
        raise ValueError(f"optimize must be one of {OPTIMIZE}, got {optimize!r}")
    if not considered(sparsity, threshold, element_sparsity, tuple(bytes_by_format)) and \
            not any(f in bytes_by_format for f in UNGATED_FORMATS):
        if element_sparsity is not None and UNSTRUCTURED in bytes_by_format:
            return "dense", (f"filterlet sparsity {sparsity:.0%} <= threshold {threshold:.0%}, element "
                             f"sparsity {element_sparsity:.0%} <= {max(threshold, UNSTRUCTURED_MIN_SPARSITY):.0%}")
        return "dense", f"filterlet sparsity {sparsity:.0%} <= threshold {threshold:.0%}"
    sparse = [f for f in bytes_by_format if f != "dense" and (
        sparsity > threshold or f in UNGATED_FORMATS
        or (f == UNSTRUCTURED and considered(sparsity, threshold, element_sparsity, tuple(bytes_by_format))))]
    if not sparse:
        return "dense", "no filterlet format fits the layer"
    if optimize == "speed" and predicted:
        best = min(predicted[f] for f in sparse)
        tied = [f for f in sparse if predicted[f] <= best * (1 + TIE_FRACTION)]
        fmt = min(tied, key=lambda f: (bytes_by_format[f], predicted[f]))
        dense = predicted["dense"]
        if fmt == UNSTRUCTURED:
            csr_margin = max(margin, UNSTRUCTURED_MARGIN)
            best_other = min(predicted[f] for f in bytes_by_format if f not in (UNSTRUCTURED, COMPACT))
            # the filter-compacted conv under the ordinary margin: ResNet-8's Cin-3 stem at 90% on
            # M4 (7 of 16 filters dropped) is predicted 1.010 M unstructured vs 1.179 M compact
            # and measures 0.937 M vs 1.138 M
            compact = predicted.get(COMPACT)
            if predicted[fmt] > best_other * (1 - csr_margin) or (
                    compact is not None and predicted[fmt] > compact * (1 - margin)):
                # not clearly faster than dense and every filterlet format: decide without it, the
                # other formats under their own margin
                rest = {f: b for f, b in bytes_by_format.items() if f != UNSTRUCTURED}
                chosen, why = pick(rest, predicted, sparsity, threshold, optimize, margin, None)
                return chosen, (f"{why}; {UNSTRUCTURED} predicted {predicted[fmt]:,} (not {csr_margin:.0%} "
                                f"faster than the best other format)")
            margin = csr_margin
        if predicted[fmt] > dense * (1 - margin):
            return "dense", (f"speed: dense predicted {dense:,} instructions, best filterlet format "
                             f"{fmt} {predicted[fmt]:,} (not {margin:.0%} faster)")
        return fmt, (f"speed: {fmt} predicted {predicted[fmt]:,} instructions vs dense {dense:,}"
                     + (f"; tied within {TIE_FRACTION:.0%} with {', '.join(t for t in tied if t != fmt)}, "
                        "fewest bytes" if len(tied) > 1 else ""))
    fmt = min(sparse, key=lambda f: (bytes_by_format[f], predicted.get(f, 0)))
    why = "size" if optimize == "size" else "speed requested but no prediction, so size"
    if bytes_by_format[fmt] >= bytes_by_format["dense"]:
        return "dense", f"{why}: dense {bytes_by_format['dense']:,} B <= {fmt} {bytes_by_format[fmt]:,} B"
    return fmt, f"{why}: {fmt} {bytes_by_format[fmt]:,} B, fewest bytes"


def decide_conv_format(weight_ohwi: np.ndarray, params, target=None, optimize: str = "speed",
                       threshold: float = 0.1, formats=None) -> FormatDecision:
    """The format of a regular conv with OHWI int8 ``weight_ohwi`` (see the module docstring).

    Parameters
    ----------
    params
        The layer's :class:`dtmm_tvm.quant.conv.Conv2DParams`.
    target
        A ``tvm.target.Target``, a target tag, or None (no prediction: bytes decide).
    formats
        Formats allowed besides dense (default all of :data:`dtmm_tvm.sparsity.FORMATS` and
        ``"pattern"``, which is a candidate only when :func:`dtmm_tvm.sparsity.pattern.detect_patterns`
        finds the weights within its limits).
    """
    from ..sparsity.compact import compact_bytes, kept_filters_of
    from ..sparsity.pattern import PATTERN, detect_patterns, pattern_bytes
    from ..sparsity.storage import FORMATS
    from . import (CostModelError, conv_heldout_error, conv_shape_of, format_bytes, load_coefficients,
                   predict_conv_formats)

    formats = FORMATS + (PATTERN, COMPACT) if formats is None else tuple(formats)
    keep = np.any(np.asarray(weight_ohwi) != 0, axis=3)
    kept = int(keep.sum())
    sparsity = 1.0 - kept / keep.size if keep.size else 0.0
    nonzero = int(np.count_nonzero(weight_ohwi))
    element_sparsity = 1.0 - nonzero / np.size(weight_ohwi) if np.size(weight_ohwi) else 0.0
    shape = tuple(int(d) for d in np.shape(weight_ohwi))
    nbytes = {"dense": format_bytes(shape, kept, "dense")}
    for fmt in formats:
        if fmt in (PATTERN, COMPACT):
            continue
        b = format_bytes(shape, kept, fmt, nonzero)
        if b is not None:
            nbytes[fmt] = b
    if COMPACT in formats and len(shape) == 4:
        b = compact_bytes(shape, kept_filters_of(weight_ohwi).size)
        if b is not None:
            nbytes[COMPACT] = b
    patterns = detect_patterns(weight_ohwi) if PATTERN in formats and len(shape) == 4 else None
    if patterns is not None:
        nbytes[PATTERN] = pattern_bytes(shape, patterns.kept_kernels, len(patterns.supports))
    predicted, source, note, margin = {}, None, "", DENSE_MARGIN
    if considered(sparsity, threshold, element_sparsity, tuple(nbytes)) or PATTERN in nbytes:  # predicted in both modes: metadata shows every candidate
        tag = _target_tag(target)
        if tag is None:
            note = "no target"
        else:
            try:
                conv = conv_shape_of(params)
                conv = type(conv)(**{**conv.__dict__, "kept_filterlets": kept, "kept_runs": kept_runs(keep),
                                     "nonzero_weights": nonzero})
                by_format = predict_conv_formats(conv, keep, tag)
                predicted = {f: int(v[0]) for f, v in by_format.items() if f in nbytes}
                if COMPACT in nbytes and COMPACT not in predicted and optimize == "speed":
                    del nbytes[COMPACT]   # coefficients without the expansion's fit: not a speed candidate
                if PATTERN in nbytes:
                    from . import predict_conv_pattern

                    try:
                        predicted[PATTERN] = int(predict_conv_pattern(conv, patterns.kept_kernels,
                                                                      len(patterns.supports), tag)[0])
                    except CostModelError as err:  # no fit for the pattern kernel: not a speed candidate
                        note = str(err)
                        if optimize == "speed":
                            del nbytes[PATTERN]
                source = tag
                # the fit's own held-out error: a prediction closer to dense than that is a tie
                margin = conv_heldout_error(load_coefficients(tag)) or DENSE_MARGIN
            except CostModelError as err:
                note = str(err)
    fmt, reason = pick(nbytes, predicted, sparsity, threshold, optimize, margin, element_sparsity)
    if note:
        reason += f" ({note})"
    return FormatDecision(fmt, optimize, reason, nbytes, predicted, source)


def _target_tag(target) -> str | None:
    if target is None:
        import tvm

        target = tvm.target.Target.current(allow_none=True)
    if target is None:
        return None
    if isinstance(target, str):
        return target if target.startswith("dtmm/") else f"dtmm/{target}"
    if str(target.kind.name) != "c":
        return None
    from ..target import target_tag

    try:
        return target_tag(target)
    except Exception:  # a C target that is not one of ours: no cost model
        return None
