"""Filterlet sparsity of a convolution's weights.

A filterlet is the ``Cin`` weights at one kernel position ``(kh, kw)`` of one output filter:
``W[o, kh, kw, :]`` in TFLite's OHWI layout, contiguous in memory, and it multiplies one NHWC input
pixel, also ``Cin`` contiguous bytes. A filterlet is *kept* when any of its weights is non-zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def kept_filterlet_mask(weight_ohwi: np.ndarray) -> np.ndarray:
    """Boolean ``[O, KH, KW]`` mask of filterlets that have at least one non-zero weight."""
    weight_ohwi = np.asarray(weight_ohwi)
    if weight_ohwi.ndim != 4:
        raise ValueError(f"expected OHWI weights of rank 4, got shape {weight_ohwi.shape}")
    return np.any(weight_ohwi != 0, axis=3)


@dataclass(frozen=True)
class FilterletStats:
    """Sparsity of one conv layer's weights at filterlet and filter granularity."""

    out_channels: int
    kernel: tuple[int, int]
    in_channels: int
    kept_filterlets: int
    total_filterlets: int
    zero_filters: int

    @property
    def filterlet_sparsity(self) -> float:
        """Share of filterlets that are entirely zero (whole zero filters included)."""
        return 1.0 - self.kept_filterlets / self.total_filterlets if self.total_filterlets else 0.0

    @property
    def filter_sparsity(self) -> float:
        """Share of output filters that are entirely zero."""
        return self.zero_filters / self.out_channels if self.out_channels else 0.0


def analyze_filterlets(weight_ohwi: np.ndarray) -> FilterletStats:
    """Count kept filterlets and all-zero filters of OHWI conv weights."""
    mask = kept_filterlet_mask(weight_ohwi)
    o, kh, kw, cin = np.asarray(weight_ohwi).shape
    return FilterletStats(
        out_channels=o,
        kernel=(kh, kw),
        in_channels=cin,
        kept_filterlets=int(mask.sum()),
        total_filterlets=int(mask.size),
        zero_filters=int((~mask.reshape(o, -1).any(axis=1)).sum()),
    )
