"""The paper's compact storage for filterlet-pruned weights (CSR over filterlets).

``values``  int8, the kept filterlets concatenated in (o, kh, kw) order, ``Cin`` bytes each;
``col_idx`` int16 per kept filterlet: its offset ``(kh * KW + kw) * Cin`` into an im2col row;
``row_ptr`` int16, ``Cout + 1`` entries: filterlets of filter ``o`` are ``row_ptr[o]:row_ptr[o+1]``.
The index costs 2 bytes per kept filterlet plus ``2 * (Cout + 1)`` bytes per layer, and int16
limits both the largest offset and the number of kept filterlets to 32767.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import FormatError
from .filterlet import analyze_filterlets, kept_filterlet_mask

INT16_MAX = 2**15 - 1


@dataclass(frozen=True)
class PackedFilterlets:
    """Kept filterlets of one conv layer in the paper's CSR format."""

    values: np.ndarray  # int8 [kept * Cin]
    col_idx: np.ndarray  # int16 [kept]
    row_ptr: np.ndarray  # int16 [Cout + 1]
    weight_shape: tuple[int, int, int, int]  # OHWI

    @property
    def kept_filterlets(self) -> int:
        return int(self.col_idx.size)

    @property
    def values_bytes(self) -> int:
        return int(self.values.nbytes)

    @property
    def index_bytes(self) -> int:
        return int(self.col_idx.nbytes + self.row_ptr.nbytes)

    @property
    def nbytes(self) -> int:
        """Flash bytes of values plus index."""
        return self.values_bytes + self.index_bytes

    def unpack(self) -> np.ndarray:
        """Rebuild the dense OHWI int8 weights (pruned filterlets as zeros)."""
        o, kh, kw, cin = self.weight_shape
        dense = np.zeros((o, kh * kw * cin), dtype=self.values.dtype)
        for out_channel in range(o):
            for j in range(int(self.row_ptr[out_channel]), int(self.row_ptr[out_channel + 1])):
                offset = int(self.col_idx[j])
                dense[out_channel, offset : offset + cin] = self.values[j * cin : (j + 1) * cin]
        return dense.reshape(o, kh, kw, cin)


def pack_filterlets(weight_ohwi: np.ndarray, layer: str = "conv") -> PackedFilterlets:
    """Pack OHWI weights, keeping every filterlet with a non-zero weight.

    Raises
    ------
    FormatError
        When an offset or the kept-filterlet count does not fit the int16 index; the message
        names the layer and the limit.
    """
    weight_ohwi = np.asarray(weight_ohwi)
    o, kh, kw, cin = weight_ohwi.shape
    largest_offset = (kh * kw - 1) * cin
    if largest_offset > INT16_MAX:
        raise FormatError(
            f"layer '{layer}': filterlet offsets up to (KH*KW-1)*Cin = {largest_offset} do not fit "
            f"the int16 index (limit {INT16_MAX}); kernel {kh}x{kw} with Cin={cin}"
        )
    mask = kept_filterlet_mask(weight_ohwi)
    kept = int(mask.sum())
    if kept > INT16_MAX:
        raise FormatError(
            f"layer '{layer}': {kept} kept filterlets exceed the int16 row pointer (limit {INT16_MAX})"
        )
    flat_mask = mask.reshape(o, kh * kw)
    positions = np.nonzero(flat_mask)  # row-major: (o, position) sorted by o then position
    col_idx = (positions[1] * cin).astype(np.int16)
    values = weight_ohwi.reshape(o, kh * kw, cin)[positions].reshape(-1).astype(weight_ohwi.dtype)
    row_ptr = np.concatenate([[0], np.cumsum(flat_mask.sum(axis=1))]).astype(np.int16)
    return PackedFilterlets(values=values, col_idx=col_idx, row_ptr=row_ptr, weight_shape=(o, kh, kw, cin))


def storage_report(weights: dict[str, np.ndarray]) -> list[dict]:
    """Per layer: filterlet and filter sparsity, dense bytes and packed (values + index) bytes.

    ``weights`` maps layer names to OHWI int8 conv weights.
    """
    rows = []
    for name, weight in weights.items():
        stats = analyze_filterlets(weight)
        row = {
            "layer": name,
            "weight_shape": list(np.asarray(weight).shape),
            "filterlet_sparsity": stats.filterlet_sparsity,
            "filter_sparsity": stats.filter_sparsity,
            "kept_filterlets": stats.kept_filterlets,
            "total_filterlets": stats.total_filterlets,
            "dense_bytes": int(np.asarray(weight).size * np.asarray(weight).itemsize),
        }
        try:
            packed = pack_filterlets(weight, layer=name)
            row.update(packed_bytes=packed.nbytes, index_bytes=packed.index_bytes, packable=True)
        except FormatError as err:
            row.update(packed_bytes=None, index_bytes=None, packable=False, reason=str(err))
        rows.append(row)
    return rows
