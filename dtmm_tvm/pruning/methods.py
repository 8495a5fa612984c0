"""Pruning methods as policies of the same pruner (numpy only).

``dtmm`` (filters + filterlets, the default, :mod:`dtmm_tvm.pruning.api`) and the baselines
(issue 9), each a small policy object in the style of TF Model Optimization's pruning policies:

``filter``
    Whole filters removed physically (the structure rules of :mod:`.graph`), ranked by L1
    magnitude or by a CHIP-style channel-independence score (:func:`chip_scores`: how much the
    nuclear norm of a layer's feature maps drops when one channel is removed, on validation
    images). The compiled model is smaller and dense.
``unstructured``
    Per-layer magnitude pruning of single weights (:func:`unstructured_mask`).
``pattern``
    PatDNN: a pattern set of ``n_patterns`` four-tap supports of 3x3 kernels with the centre
    kept, chosen by how often each is the top-4 magnitude support (:func:`select_patterns`); every
    (out, in) kernel projected onto its best pattern (:func:`project_to_patterns`), plus
    connectivity pruning of whole (out, in) kernels by norm (:func:`connectivity_mask`).

Kernels are Keras HWIO ``(KH, KW, Cin, Cout)``; element masks have the kernel's shape (1 keep,
0 pruned).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .masks import n_removed

METHODS = ("dtmm", "filter", "unstructured", "pattern")
FILTER_CRITERIA = ("l1", "chip")


# ---- filter pruning ------------------------------------------------------------------------
def _nuclear_from_gram(gram: np.ndarray) -> float:
    ev = np.linalg.eigvalsh(gram)
    return float(np.sqrt(np.clip(ev, 0.0, None)).sum())


def chip_scores(feature_maps: np.ndarray) -> np.ndarray:
    """CHIP channel independence ``(C,)`` of feature maps ``(N, H, W, C)`` (NHWC).

    For each example the map is a ``C x HW`` matrix ``A``; channel ``c``'s independence is
    ``||A||_* - ||A with row c zeroed||_*`` (nuclear norms), averaged over the examples. A
    channel that is a copy or a mix of others loses little when removed (low score); a channel no
    other can stand in for scores high. The nuclear norm is the sum of the square roots of the
    eigenvalues of ``A A^T`` (``C x C``), so removing a row is removing a row and column.
    """
    fm = np.asarray(feature_maps, dtype=np.float64)
    if fm.ndim == 2:
        fm = fm[:, None, :]
    n, c = fm.shape[0], fm.shape[-1]
    scores = np.zeros(c)
    for i in range(n):
        a = fm[i].reshape(-1, c).T        # (C, HW)
        gram = a @ a.T
        full = _nuclear_from_gram(gram)
        for ch in range(c):
            keep = np.arange(c) != ch
            scores[ch] += full - _nuclear_from_gram(gram[np.ix_(keep, keep)])
    return scores / max(n, 1)


def l1_filter_scores(kernel_hwio: np.ndarray) -> np.ndarray:
    """``(Cout,)``: each filter's L1 norm."""
    return np.abs(np.asarray(kernel_hwio, dtype=np.float64)).sum(axis=(0, 1, 2))


# ---- unstructured --------------------------------------------------------------------------
def unstructured_mask(kernel: np.ndarray, ratio: float) -> np.ndarray:
    """Float mask of ``kernel``'s shape zeroing the ``ratio`` smallest-magnitude weights (of this
    layer; ties by index). At least one weight stays."""
    k = np.abs(np.asarray(kernel, dtype=np.float64)).reshape(-1)
    remove = n_removed(k.size, ratio)
    mask = np.ones(k.size, dtype=np.float32)
    mask[np.argsort(k, kind="stable")[:remove]] = 0.0
    return mask.reshape(np.shape(kernel))


# ---- pattern (PatDNN) ----------------------------------------------------------------------
def _supports_top(kernel_hwio: np.ndarray, taps: int, keep_centre: bool) -> np.ndarray:
    """``(Cin*Cout, KH*KW)`` bool: each (in, out) kernel's top-``taps`` magnitude taps (centre
    forced when ``keep_centre``)."""
    kh, kw, cin, cout = kernel_hwio.shape
    mag = np.abs(np.asarray(kernel_hwio, dtype=np.float64)).reshape(kh * kw, cin * cout).T
    centre = (kh // 2) * kw + kw // 2
    if keep_centre:
        mag = mag.copy()
        mag[:, centre] = np.inf
    order = np.argsort(-mag, axis=1, kind="stable")[:, :taps]
    sup = np.zeros_like(mag, dtype=bool)
    np.put_along_axis(sup, order, True, axis=1)
    return sup


def select_patterns(kernels: list, n_patterns: int = 8, taps: int = 4, keep_centre: bool = True) -> np.ndarray:
    """The pattern set: ``(n_patterns, KH*KW)`` bool, the ``n_patterns`` most frequent top-``taps``
    magnitude supports over every (out, in) kernel of ``kernels`` (HWIO, all the same KHxKW),
    the centre kept. Ties by first appearance order of the support's bit code."""
    codes = []
    size = None
    for k in kernels:
        k = np.asarray(k)
        if size is None:
            size = k.shape[0] * k.shape[1]
        elif k.shape[0] * k.shape[1] != size:
            raise ValueError("select_patterns: kernels of different sizes")
        sup = _supports_top(k, taps, keep_centre)
        codes.append(sup @ (1 << np.arange(size, dtype=np.int64)))
    if not codes:
        raise ValueError("select_patterns: no kernels")
    codes = np.concatenate(codes)
    uniq, counts = np.unique(codes, return_counts=True)
    order = np.lexsort((uniq, -counts))[:n_patterns]
    chosen = uniq[order]
    return ((chosen[:, None] >> np.arange(size)) & 1).astype(bool)


def project_to_patterns(kernel_hwio: np.ndarray, patterns: np.ndarray) -> tuple:
    """Each (in, out) kernel onto the pattern keeping the most of its squared norm.

    Returns ``(mask HWIO float, pattern index (Cin, Cout))``."""
    kh, kw, cin, cout = kernel_hwio.shape
    sq = (np.asarray(kernel_hwio, dtype=np.float64) ** 2).reshape(kh * kw, cin * cout).T   # (K, taps)
    kept = sq @ np.asarray(patterns, dtype=np.float64).T                                # (K, P)
    best = np.argmax(kept, axis=1)
    mask = np.asarray(patterns)[best].T.reshape(kh, kw, cin, cout).astype(np.float32)
    return mask, best.reshape(cin, cout)


def connectivity_mask(kernel_hwio: np.ndarray, ratio: float) -> np.ndarray:
    """Float mask zeroing the ``ratio`` of (in, out) kernels with the smallest L2 norm (every
    output filter keeps at least its strongest kernel)."""
    kh, kw, cin, cout = kernel_hwio.shape
    norms = np.sqrt((np.asarray(kernel_hwio, dtype=np.float64) ** 2).sum(axis=(0, 1)))   # (Cin, Cout)
    keep = np.ones_like(norms, dtype=bool)
    protected = np.zeros_like(keep)
    protected[norms.argmax(axis=0), np.arange(cout)] = True
    cand = np.argwhere(~protected)
    remove = min(n_removed(norms.size, ratio, keep_at_least=0), len(cand))
    if remove:
        order = np.argsort(norms[cand[:, 0], cand[:, 1]], kind="stable")[:remove]
        sel = cand[order]
        keep[sel[:, 0], sel[:, 1]] = False
    return np.broadcast_to(keep[None, None], kernel_hwio.shape).astype(np.float32)


def pattern_supports(weight_ohwi: np.ndarray) -> dict:
    """``{support (tuple of tap indices): kernels}`` over the non-zero (out, in) kernels of OHWI
    weights; the all-zero kernels are counted under ``()``."""
    w = np.asarray(weight_ohwi)
    o, kh, kw, cin = w.shape
    nz = (w != 0).transpose(0, 3, 1, 2).reshape(o * cin, kh * kw)
    codes, counts = np.unique(nz @ (1 << np.arange(kh * kw, dtype=np.int64)), return_counts=True)
    return {tuple(int(t) for t in range(kh * kw) if (int(c) >> t) & 1): int(n) for c, n in zip(codes, counts)}


# ---- policies ------------------------------------------------------------------------------
@dataclass
class LayerMasks:
    """What a baseline policy decided: filters kept per channel group (``filter``) and element
    masks per conv (``unstructured`` / ``pattern``, over the kept channels), with notes."""

    channel_keep: dict = field(default_factory=dict)
    element_masks: dict = field(default_factory=dict)
    patterns: dict = field(default_factory=dict)      # kernel size -> (P, KH*KW) bool
    notes: list = field(default_factory=list)


@dataclass
class FilterPolicy:
    """Filter pruning at a uniform ratio per prunable channel group, filters ranked by
    ``criterion`` (``"l1"``: summed over the group's producers, each layer's share; ``"chip"``:
    the channel independence of the group's feature maps)."""

    criterion: str = "chip"
    name: str = "filter"

    def keep(self, scores: dict, ratio: float) -> dict:
        from .masks import filter_keep

        return {gid: filter_keep(s, ratio) for gid, s in scores.items()}


@dataclass
class UnstructuredPolicy:
    """Per-layer magnitude pruning of single weights at ``ratio`` (every conv)."""

    name: str = "unstructured"

    def masks(self, kernels: dict, ratio: float) -> LayerMasks:
        return LayerMasks(element_masks={n: unstructured_mask(k, ratio) for n, k in kernels.items()})


@dataclass
class PatternPolicy:
    """PatDNN: patterns on 3x3 kernels (``n_patterns`` supports of ``taps`` taps, centre kept),
    then connectivity pruning of whole (in, out) kernels at ``ratio`` (every conv, 1x1
    included: there a kernel is one weight)."""

    n_patterns: int = 8
    taps: int = 4
    name: str = "pattern"

    def masks(self, kernels: dict, ratio: float) -> LayerMasks:
        out = LayerMasks()
        three = [k for k in kernels.values() if k.shape[:2] == (3, 3)]
        if three:
            out.patterns[(3, 3)] = select_patterns(three, self.n_patterns, self.taps)
        for name, k in kernels.items():
            conn = connectivity_mask(k, ratio)
            if k.shape[:2] == (3, 3):
                pat, _ = project_to_patterns(k, out.patterns[(3, 3)])
                conn = conn * pat
            elif k.shape[0] * k.shape[1] > 1:
                out.notes.append(f"{name}: {k.shape[0]}x{k.shape[1]} kernel has no pattern set (connectivity only)")
            out.element_masks[name] = conn
        return out


def policy(method: str, **kwargs):
    """The policy object of a baseline ``method``."""
    if method == "filter":
        return FilterPolicy(**kwargs)
    if method == "unstructured":
        return UnstructuredPolicy(**kwargs)
    if method == "pattern":
        return PatternPolicy(**kwargs)
    raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")


# ---- export checks -------------------------------------------------------------------------
def check_method_export(method: str, weight_ohwi: np.ndarray, name: str, mask_hwio=None, filters_kept=None,
                        max_patterns: int = 8, taps: int = 4) -> dict:
    """Check one int8 conv's OHWI weights against what ``method`` promised: the kept filter
    count (``filter``), every pruned weight exactly zero (``unstructured`` / ``pattern``), and for
    ``pattern`` at most ``max_patterns`` distinct non-zero supports of at most ``taps`` taps.
    Returns per-layer figures; raises ``ValueError`` naming the layer."""
    w = np.asarray(weight_ohwi)
    row = {"layer": name, "filters": int(w.shape[0]), "weight_sparsity": float(np.mean(w == 0))}
    if filters_kept is not None and w.shape[0] != filters_kept:
        raise ValueError(f"{name}: {w.shape[0]} filters in the int8 model, {filters_kept} kept by the pruner")
    if mask_hwio is not None:
        keep = np.asarray(mask_hwio).transpose(3, 0, 1, 2) != 0
        if keep.shape != w.shape:
            raise ValueError(f"{name}: mask {keep.shape} vs int8 weights {w.shape}")
        leaked = int(np.sum(~keep & (w != 0)))
        if leaked:
            raise ValueError(f"{name}: {leaked} pruned weights are non-zero in the int8 model")
    if method == "pattern" and w.shape[1] * w.shape[2] > 1:
        sup = pattern_supports(w)
        nonzero = [s for s in sup if s]
        big = [s for s in nonzero if len(s) > taps]
        if big:
            raise ValueError(f"{name}: a kernel has {len(big[0])} non-zero taps (pattern allows {taps})")
        # A kernel whose int8 rounding zeroed a tap lies inside its pattern: count the maximal
        # supports (those no other support contains).
        maximal = [s for s in nonzero if not any(set(s) < set(t) for t in nonzero)]
        if len(maximal) > max_patterns:
            raise ValueError(f"{name}: kernels need {len(maximal)} distinct supports (pattern set has "
                             f"{max_patterns})")
        row["patterns_used"] = len(maximal)
        row["zero_kernels"] = int(sup.get((), 0))
    return row
