"""Storage of the ``"filter_compact"`` weight format (:mod:`dtmm_tvm.ops.conv2d_compact`): the
kept filters of a filter-pruned conv, dense, and what stands in for the dropped ones.

A filter whose weights are all zero contributes nothing but its bias, so its output channel is
one constant per layer, ``clamp(requantize(bias[o]) + output_zero_point)``, computed here with the
layer's own requantization records (TFLite fixed point or ONNX float32) exactly as the kernels
requantize. Stored: the kept filters' weights (``K * KH * KW * Cin`` bytes), their filter numbers
(uint16, ``2K``), the constants (``Cout`` bytes) and the kept filters' bias / multiplier / shift
only (12 bytes each, against 12 per filter for every other format).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The format's name (metadata ``"format"``, ``--formats``).
COMPACT = "filter_compact"
#: Filter numbers are stored as uint16.
COMPACT_MAX_FILTERS = 2**16 - 1


@dataclass(frozen=True)
class CompactFilters:
    """A conv's kept filters and the constants of its dropped ones (see the module docstring)."""

    weight: np.ndarray     # int8 [K, KH, KW, Cin]
    channels: np.ndarray   # uint16 [K], ascending
    fill: np.ndarray       # int8 [Cout]: the dropped filters' outputs (kept ones: 0, never read)
    bias: np.ndarray       # int32 [K]
    mult: np.ndarray       # int32 [K]
    shift: np.ndarray      # int32 [K]

    @property
    def kept_filters(self) -> int:
        return int(self.channels.size)

    @property
    def nbytes(self) -> int:
        """Stored weight bytes: values + index (filter numbers and constants)."""
        return int(self.weight.size + self.channels.nbytes + self.fill.size)


def kept_filters_of(weight_ohwi: np.ndarray) -> np.ndarray:
    """Indices of the filters that have a non-zero weight."""
    w = np.asarray(weight_ohwi)
    return np.flatnonzero(w.reshape(w.shape[0], -1).any(axis=1))


def compact_fits(weight_shape, kept_filters: int) -> bool:
    """Whether a conv with ``kept_filters`` non-zero filters can take the format: some filter
    dropped, some kept, filter numbers within uint16."""
    cout = int(weight_shape[0])
    return 0 < int(kept_filters) < cout and cout <= COMPACT_MAX_FILTERS


def compact_bytes(weight_shape, kept_filters: int) -> int | None:
    """Stored weight bytes (values + index) of the format, without the requantization records;
    None if the conv does not fit it. Equal to ``pack_compact(...).nbytes`` (tested)."""
    cout, kh, kw, cin = (int(d) for d in weight_shape)
    if not compact_fits(weight_shape, kept_filters):
        return None
    return int(kept_filters) * (kh * kw * cin + 2) + cout


def pack_compact(weight_ohwi: np.ndarray, bias, mult, shift, output_zero_point: int, act_min: int,
                 act_max: int) -> CompactFilters:
    """Split an OHWI int8 conv into its kept filters and its dropped filters' constants."""
    from ..errors import FormatError
    from ..quant.onnx import requantize_records

    w = np.asarray(weight_ohwi)
    keep = kept_filters_of(w)
    if not compact_fits(w.shape, keep.size):
        raise FormatError(f"filter_compact needs some but not all of the {w.shape[0]} filters all-zero "
                          f"(and at most {COMPACT_MAX_FILTERS}); {keep.size} have non-zero weights")
    bias = np.asarray(bias, dtype=np.int32)
    mult = np.asarray(mult, dtype=np.int32)
    shift = np.asarray(shift, dtype=np.int32)
    dropped = np.setdiff1d(np.arange(w.shape[0]), keep)
    fill = np.zeros(w.shape[0], dtype=np.int8)
    # a dropped filter's accumulator is 0: its output is the requantized bias
    fill[dropped] = requantize_records(bias[dropped].astype(np.int64), mult[dropped], shift[dropped],
                                       int(output_zero_point), int(act_min), int(act_max)).astype(np.int8)
    return CompactFilters(weight=np.ascontiguousarray(w[keep]).astype(np.int8), channels=keep.astype(np.uint16),
                          fill=fill, bias=np.ascontiguousarray(bias[keep]), mult=np.ascontiguousarray(mult[keep]),
                          shift=np.ascontiguousarray(shift[keep]))


def unpack_compact(packed: CompactFilters, cout: int) -> np.ndarray:
    """The dense OHWI weights (dropped filters all zero)."""
    out = np.zeros((cout,) + packed.weight.shape[1:], dtype=np.int8)
    out[packed.channels.astype(np.int64)] = packed.weight
    return out
