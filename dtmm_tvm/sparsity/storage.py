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
    format = "filterlet_csr"

    @property
    def kept_filterlets(self) -> int:
        return int(self.col_idx.size)

    @property
    def index_arrays(self) -> list[np.ndarray]:
        """The index buffers in kernel argument order."""
        return [self.col_idx, self.row_ptr]

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


# ---- more index formats, chosen per layer ---------------------------------------------------
#: Weight formats of a regular conv. "filterlet_csr" is the paper's format above.
FORMATS = ("filterlet_csr", "filterlet_u8", "filterlet_bitmask", "unstructured_csr")
#: The per-weight (unstructured) format: CSR over single weights, not filterlets.
UNSTRUCTURED = "unstructured_csr"
U8_MAX = 255
#: Largest KH*KW of the bitmask format (the kernel reads a filter's bits with one 32-bit load).
BITMASK_MAX_TAPS = 25


@dataclass(frozen=True)
class PackedFilterletsU8:
    """Kept filterlets with a byte index: ``taps`` uint8 ``[kept]`` = ``kh * KW + kw`` (the
    kernel computes the offset ``tap * Cin``), ``counts`` uint8 ``[Cout]`` kept filterlets per
    filter (the kernel keeps the running sum). Needs ``KH * KW <= 255``. Index bytes:
    ``kept + Cout`` (CSR: ``2 * kept + 2 * (Cout + 1)``)."""

    values: np.ndarray  # int8 [kept * Cin]
    taps: np.ndarray  # uint8 [kept]
    counts: np.ndarray  # uint8 [Cout]
    weight_shape: tuple[int, int, int, int]
    format = "filterlet_u8"

    @property
    def kept_filterlets(self) -> int:
        return int(self.taps.size)

    @property
    def index_arrays(self) -> list[np.ndarray]:
        return [self.taps, self.counts]

    @property
    def values_bytes(self) -> int:
        return int(self.values.nbytes)

    @property
    def index_bytes(self) -> int:
        return int(self.taps.nbytes + self.counts.nbytes)

    @property
    def nbytes(self) -> int:
        return self.values_bytes + self.index_bytes

    def unpack(self) -> np.ndarray:
        o, kh, kw, cin = self.weight_shape
        dense = np.zeros((o, kh * kw, cin), dtype=self.values.dtype)
        j = 0
        for out_channel in range(o):
            for _ in range(int(self.counts[out_channel])):
                dense[out_channel, int(self.taps[j])] = self.values[j * cin : (j + 1) * cin]
                j += 1
        return dense.reshape(o, kh, kw, cin)


@dataclass(frozen=True)
class PackedFilterletsBitmask:
    """Kept filterlets with a bitmask index: ``mask`` uint8, ``KH * KW`` bits per filter
    (filter ``o``, tap ``t`` at bit ``o * KH * KW + t``, LSB first within a byte), plus 3 zero
    bytes so the kernel may read any filter's bits with one unaligned 32-bit load. Needs
    ``KH * KW <= 25``. Index bytes: ``ceil(Cout * KH * KW / 8) + 3``, independent of sparsity."""

    values: np.ndarray  # int8 [kept * Cin]
    mask: np.ndarray  # uint8 [ceil(Cout*KH*KW/8) + 3]
    weight_shape: tuple[int, int, int, int]
    format = "filterlet_bitmask"

    @property
    def kept_filterlets(self) -> int:
        return int(np.unpackbits(self.mask, bitorder="little").sum())

    @property
    def index_arrays(self) -> list[np.ndarray]:
        return [self.mask]

    @property
    def values_bytes(self) -> int:
        return int(self.values.nbytes)

    @property
    def index_bytes(self) -> int:
        return int(self.mask.nbytes)

    @property
    def nbytes(self) -> int:
        return self.values_bytes + self.index_bytes

    def kept_mask(self) -> np.ndarray:
        o, kh, kw, _ = self.weight_shape
        bits = np.unpackbits(self.mask, bitorder="little")[: o * kh * kw]
        return bits.reshape(o, kh * kw).astype(bool)

    def unpack(self) -> np.ndarray:
        o, kh, kw, cin = self.weight_shape
        dense = np.zeros((o, kh * kw, cin), dtype=self.values.dtype)
        dense[self.kept_mask()] = self.values.reshape(-1, cin)
        return dense.reshape(o, kh, kw, cin)


@dataclass(frozen=True)
class PackedUnstructured:
    """Element-sparse weights, CSR over single weights per output filter (the unstructured-pruning
    baseline, kernel ``dtmm_conv_csr_s8``): ``values`` int8 ``[nnz]`` the non-zero weights in
    (o, kh, kw, ci) order, ``col_idx`` int16 ``[nnz]`` = ``(kh * KW + kw) * Cin + ci`` (needs
    ``KH * KW * Cin <= 32768``), ``row_ptr`` int32 ``[Cout + 1]`` (int32 so a layer may keep more
    than 32767 weights). Index bytes: ``2 * nnz + 4 * (Cout + 1)``."""

    values: np.ndarray  # int8 [nnz]
    col_idx: np.ndarray  # int16 [nnz]
    row_ptr: np.ndarray  # int32 [Cout + 1]
    weight_shape: tuple[int, int, int, int]
    format = UNSTRUCTURED

    @property
    def nonzero_weights(self) -> int:
        return int(self.values.size)

    @property
    def kept_filterlets(self) -> int:
        """Filterlets holding a non-zero weight (for the layer's filterlet statistics)."""
        o, kh, kw, cin = self.weight_shape
        taps = np.unique(np.repeat(np.arange(o), np.diff(self.row_ptr)) * (kh * kw)
                         + self.col_idx.astype(np.int64) // cin)
        return int(taps.size)

    @property
    def index_arrays(self) -> list[np.ndarray]:
        return [self.col_idx, self.row_ptr]

    @property
    def values_bytes(self) -> int:
        return int(self.values.nbytes)

    @property
    def index_bytes(self) -> int:
        return int(self.col_idx.nbytes + self.row_ptr.nbytes)

    @property
    def nbytes(self) -> int:
        return self.values_bytes + self.index_bytes

    def unpack(self) -> np.ndarray:
        o, kh, kw, cin = self.weight_shape
        dense = np.zeros((o, kh * kw * cin), dtype=self.values.dtype)
        rows = np.repeat(np.arange(o), np.diff(self.row_ptr))
        dense[rows, self.col_idx.astype(np.int64)] = self.values
        return dense.reshape(o, kh, kw, cin)


def _pack_unstructured(weight_ohwi: np.ndarray) -> PackedUnstructured:
    o, kh, kw, cin = (int(d) for d in weight_ohwi.shape)
    flat = weight_ohwi.reshape(o, kh * kw * cin)
    rows, cols = np.nonzero(flat)  # row-major: sorted by filter, then column
    return PackedUnstructured(values=flat[rows, cols].astype(weight_ohwi.dtype), col_idx=cols.astype(np.int16),
                              row_ptr=np.concatenate([[0], np.cumsum(np.count_nonzero(flat, axis=1))]).astype(np.int32),
                              weight_shape=(o, kh, kw, cin))


def _kept(weight_ohwi: np.ndarray):
    o, kh, kw, cin = weight_ohwi.shape
    flat_mask = kept_filterlet_mask(weight_ohwi).reshape(o, kh * kw)
    positions = np.nonzero(flat_mask)
    values = weight_ohwi.reshape(o, kh * kw, cin)[positions].reshape(-1).astype(weight_ohwi.dtype)
    return flat_mask, positions, values


def fits(fmt: str, weight_shape) -> bool:
    """Whether a layer with OHWI ``weight_shape`` can use index format ``fmt``."""
    o, kh, kw, cin = weight_shape
    if fmt == "filterlet_csr":
        return (kh * kw - 1) * cin <= INT16_MAX and o * kh * kw <= INT16_MAX
    if fmt == "filterlet_u8":
        return kh * kw <= U8_MAX
    if fmt == "filterlet_bitmask":
        return kh * kw <= BITMASK_MAX_TAPS
    if fmt == UNSTRUCTURED:
        return kh * kw * cin - 1 <= INT16_MAX
    raise ValueError(f"unknown filterlet format {fmt!r}; known: {FORMATS}")


def pack_filterlets_as(weight_ohwi: np.ndarray, fmt: str, layer: str = "conv"):
    """Pack OHWI weights in index format ``fmt`` (one of :data:`FORMATS`).

    Raises FormatError when the layer does not fit the format's index width."""
    weight_ohwi = np.asarray(weight_ohwi)
    if fmt == "filterlet_csr":
        return pack_filterlets(weight_ohwi, layer)
    shape = tuple(int(d) for d in weight_ohwi.shape)
    if fmt == UNSTRUCTURED:
        if not fits(fmt, shape):
            raise FormatError(f"layer '{layer}': column indices up to KH*KW*Cin-1 = "
                              f"{shape[1] * shape[2] * shape[3] - 1} do not fit the int16 index of "
                              f"{UNSTRUCTURED} (limit {INT16_MAX})")
        return _pack_unstructured(weight_ohwi)
    if not fits(fmt, shape):
        raise FormatError(f"layer '{layer}': kernel {shape[1]}x{shape[2]} does not fit the {fmt} index "
                          f"(KH*KW <= {U8_MAX if fmt == 'filterlet_u8' else BITMASK_MAX_TAPS})")
    flat_mask, positions, values = _kept(weight_ohwi)
    if fmt == "filterlet_u8":
        return PackedFilterletsU8(values=values, taps=positions[1].astype(np.uint8),
                                  counts=flat_mask.sum(axis=1).astype(np.uint8), weight_shape=shape)
    bits = np.packbits(flat_mask.reshape(-1).astype(np.uint8), bitorder="little")
    mask = np.concatenate([bits, np.zeros(3, np.uint8)]).astype(np.uint8)
    return PackedFilterletsBitmask(values=values, mask=mask, weight_shape=shape)


#: Tie-break between formats of equal bytes: measured QEMU instructions (M4 / M55, millions) of
#: the paper layer (3x3 16x16x64->64) with each format, 50% / 90% filterlet sparsity:
#:   csr      6.210 / 2.243   1.398 / 0.539
#:   u8       6.218 / 2.255   1.410 / 0.543
#:   bitmask  6.197 / 2.335   1.347 / 0.560
#: (bitmask decodes runs with CTZ: fastest when runs are long, a few % slower at 90%). Lower
#: rank wins a tie; bytes decide first (the differences are within 4%).
FORMAT_SPEED_RANK = {"filterlet_csr": 0, "filterlet_u8": 1, "filterlet_bitmask": 2, UNSTRUCTURED: 3}


def choose_format(weight_ohwi: np.ndarray, layer: str = "conv", formats=FORMATS):
    """The cheapest packing of a layer: fewest bytes (values + index), ties broken by the measured
    decode speed (:data:`FORMAT_SPEED_RANK`). Returns the packed object (``.format`` names it)."""
    candidates = []
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"unknown filterlet format {fmt!r}; known: {FORMATS}")
        try:
            packed = pack_filterlets_as(weight_ohwi, fmt, layer)
        except FormatError:
            continue
        candidates.append((packed.nbytes, FORMAT_SPEED_RANK[fmt], fmt, packed))
    if not candidates:
        raise FormatError(f"layer '{layer}': weights {tuple(np.shape(weight_ohwi))} fit none of {tuple(formats)}")
    return min(candidates, key=lambda c: c[:3])[3]
