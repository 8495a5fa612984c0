"""Masks from importance and per-layer ratios (numpy).

``filter_keep(importance, ratio)`` keeps the most important filters of a channel group;
``filterlet_keep(importance, ratio, kept_filters)`` zeroes the least important filterlets among
the kept filters of one conv. Ties break by index (stable sort), so masks are deterministic.
"""

from __future__ import annotations

import numpy as np


def n_removed(total: int, ratio: float, keep_at_least: int = 1) -> int:
    """How many of ``total`` units a ``ratio`` removes (rounded), leaving at least ``keep_at_least``."""
    return int(min(max(int(round(ratio * total)), 0), max(total - keep_at_least, 0)))


def filter_keep(importance: np.ndarray, ratio: float) -> np.ndarray:
    """Bool ``(Cout,)``: the ``1 - ratio`` most important filters (at least one)."""
    importance = np.asarray(importance, dtype=np.float64)
    remove = n_removed(importance.size, ratio)
    keep = np.ones(importance.size, dtype=bool)
    keep[np.argsort(importance, kind="stable")[:remove]] = False
    return keep


def filterlet_keep(importance: np.ndarray, ratio: float, kept_filters: np.ndarray | None = None) -> np.ndarray:
    """Bool ``(Cout, KH, KW)``: within the kept filters, zero the ``ratio`` least important
    filterlets of the layer (every kept filter keeps at least its most important filterlet;
    removed filters are all False). 1x1 kernels get no filterlet pruning (ratio ignored)."""
    importance = np.asarray(importance, dtype=np.float64)
    cout, kh, kw = importance.shape
    if kept_filters is None:
        kept_filters = np.ones(cout, dtype=bool)
    keep = np.zeros_like(importance, dtype=bool)
    keep[kept_filters] = True
    if kh * kw == 1 or ratio <= 0:
        return keep
    flat = importance.reshape(cout, -1)
    # Each kept filter's best filterlet is protected: a filter must not vanish through filterlets.
    best = flat.argmax(axis=1)
    protected = np.zeros_like(flat, dtype=bool)
    protected[np.arange(cout), best] = True
    candidates = np.argwhere(keep.reshape(cout, -1) & ~protected)
    total = int(kept_filters.sum()) * kh * kw
    remove = min(n_removed(total, ratio, keep_at_least=0), len(candidates))
    if remove:
        scores = flat[candidates[:, 0], candidates[:, 1]]
        order = np.argsort(scores, kind="stable")[:remove]
        sel = candidates[order]
        k2 = keep.reshape(cout, -1)
        k2[sel[:, 0], sel[:, 1]] = False
    return keep


def dense_flat_keep(channel_keep: np.ndarray, spatial: int) -> np.ndarray:
    """Bool ``(spatial * C,)``: the dense input features kept after ``flatten`` of an NHWC map
    (feature index ``p * C + c``) whose channels ``channel_keep`` survive."""
    return np.tile(np.asarray(channel_keep, dtype=bool), int(spatial))


def apply_filterlet_mask(kernel_hwio: np.ndarray, keep_ohw: np.ndarray) -> np.ndarray:
    """The kernel with pruned filterlets zeroed (``keep`` is ``(Cout, KH, KW)``)."""
    mask = np.asarray(keep_ohw).transpose(1, 2, 0)[:, :, None, :]
    return np.asarray(kernel_hwio) * mask
