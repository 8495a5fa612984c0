"""PatDNN-style pattern storage of a conv's weights (the pattern-pruning baseline's format).

A conv fits when every (out, in) 2-D kernel ``W[o, :, :, c]`` is either all zero
(connectivity-pruned) or has its non-zeros inside one pattern of a small per-layer set: at
most :data:`MAX_PATTERNS` patterns of at most :data:`PATTERN_TAPS` kernel taps each. The set is
read from the weights, never assumed: it is the distinct non-zero supports present, minus those
contained in another present support (a kernel whose pruned pattern lost a weight to int8
rounding keeps its pattern's id and stores the zero). A layer with more patterns or a wider
support does not fit (:func:`detect_patterns` returns None; :func:`pack_patterns` raises).

Stored, per kept kernel ``j`` (filters in order; within a filter sorted by pattern, then input
channel: PatDNN's kernel reorder, so a filter's kernels of one pattern are consecutive):

``values`` int8 ``[4 * kept]``: the 4 weights at the pattern's taps (pattern-table order; a
    pattern with fewer than 4 taps is padded with its first tap and a zero weight);
``kidx``   int16 ``[kept]``: ``pattern * Cin + c`` (pattern id and input channel in one index);
``counts`` int16 ``[Cout]``: kept kernels per filter;
``taps``   uint8 ``[4 * npat]``: the pattern table, tap = ``kh * KW + kw``.

Bytes: ``4 * kept + 2 * kept + 2 * Cout + 4 * npat`` (values + index + pattern table). The
kernel is ``dtmm_tvm/kernels/dtmm_conv_pattern_s8.c``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import FormatError

#: The weight-format name of a pattern-stored conv (next to "dense" and the filterlet formats).
PATTERN = "pattern"
#: Largest pattern set of one layer the kernel takes (PatDNN uses 6-12; 16 keeps ids in 4 bits).
MAX_PATTERNS = 16
#: Taps per pattern (the kernel's chunk holds exactly 4).
PATTERN_TAPS = 4
INT16_MAX = 2**15 - 1


@dataclass(frozen=True)
class PackedPatterns:
    """One conv layer in the pattern format (see the module docstring)."""

    values: np.ndarray  # int8 [4 * kept]
    kidx: np.ndarray  # int16 [kept]
    counts: np.ndarray  # int16 [Cout]
    taps: np.ndarray  # uint8 [4 * npat]
    weight_shape: tuple[int, int, int, int]  # OHWI
    format = PATTERN

    @property
    def kept_kernels(self) -> int:
        return int(self.kidx.size)

    @property
    def patterns(self) -> int:
        return int(self.taps.size // PATTERN_TAPS)

    @property
    def index_arrays(self) -> list[np.ndarray]:
        """The index buffers in kernel argument order (after ``values``)."""
        return [self.kidx, self.counts, self.taps]

    @property
    def values_bytes(self) -> int:
        return int(self.values.nbytes)

    @property
    def index_bytes(self) -> int:
        """Pattern ids + channel indices, per-filter counts and the pattern table."""
        return int(self.kidx.nbytes + self.counts.nbytes + self.taps.nbytes)

    @property
    def nbytes(self) -> int:
        return self.values_bytes + self.index_bytes

    def unpack(self) -> np.ndarray:
        """The dense OHWI int8 weights."""
        o, kh, kw, cin = self.weight_shape
        dense = np.zeros((o, kh * kw, cin), dtype=np.int8)
        taps = self.taps.reshape(-1, PATTERN_TAPS).astype(np.int64)
        j = 0
        for out_channel in range(o):
            for _ in range(int(self.counts[out_channel])):
                p, c = divmod(int(self.kidx[j]), cin)
                for t in range(PATTERN_TAPS):
                    if self.values[4 * j + t] != 0:
                        dense[out_channel, taps[p, t], c] = self.values[4 * j + t]
                j += 1
        return dense.reshape(o, kh, kw, cin)


def pattern_bytes(weight_shape, kept_kernels: int, patterns: int) -> int:
    """Stored bytes of a conv in the pattern format (equal to ``PackedPatterns.nbytes``)."""
    cout = int(weight_shape[0])
    return 4 * int(kept_kernels) + 2 * int(kept_kernels) + 2 * cout + PATTERN_TAPS * int(patterns)


@dataclass(frozen=True)
class PatternSet:
    """The patterns of one layer and the pattern of each kept kernel."""

    supports: tuple  # per pattern: sorted tuple of taps (len <= 4)
    kernel_pattern: np.ndarray  # int [Cout, Cin], -1 = connectivity-pruned kernel

    @property
    def kept_kernels(self) -> int:
        return int((self.kernel_pattern >= 0).sum())


def why_not_pattern(weight_ohwi: np.ndarray) -> str | None:
    """None when the layer fits the pattern format, else the one-line reason."""
    result = _detect(weight_ohwi)
    return result if isinstance(result, str) else None


def detect_patterns(weight_ohwi: np.ndarray) -> PatternSet | None:
    """The layer's pattern set, or None when it does not fit the format's limits."""
    result = _detect(weight_ohwi)
    return None if isinstance(result, str) else result


def _detect(weight_ohwi: np.ndarray):
    w = np.asarray(weight_ohwi)
    if w.ndim != 4:
        return f"weights of rank {w.ndim}, not OHWI"
    o, kh, kw, cin = w.shape
    if kh * kw > 255:
        return f"kernel {kh}x{kw} has more than 255 taps"
    # (o, c, tap) non-zero support, one bitmask per kernel
    nz = (w != 0).transpose(0, 3, 1, 2).reshape(o, cin, kh * kw)
    widths = nz.sum(axis=2)
    if widths.max(initial=0) > PATTERN_TAPS:
        return f"a kernel has {int(widths.max())} non-zero taps (pattern limit {PATTERN_TAPS})"
    kept = widths > 0
    if not kept.any():
        return "every kernel is zero"
    if kept.sum() > INT16_MAX:
        return f"{int(kept.sum())} kept kernels exceed the int16 index"
    bits = (nz.astype(np.int64) << np.arange(kh * kw, dtype=np.int64)).sum(axis=2)
    distinct = sorted({int(b) for b in np.unique(bits[kept])}, key=lambda b: (-bin(b).count("1"), b))
    patterns: list[int] = []
    for b in distinct:  # widest first: a support inside a chosen pattern joins it
        if not any(b & p == b for p in patterns):
            patterns.append(b)
    if len(patterns) > MAX_PATTERNS:
        return f"{len(patterns)} distinct kernel patterns (limit {MAX_PATTERNS})"
    if len(patterns) * cin > INT16_MAX:
        return f"{len(patterns)} patterns x Cin={cin} overflow the int16 kernel index"
    patterns.sort()
    kernel_pattern = np.full((o, cin), -1, dtype=np.int64)
    for b in np.unique(bits[kept]):
        pid = next(i for i, p in enumerate(patterns) if int(b) & p == int(b))
        kernel_pattern[kept & (bits == b)] = pid
    supports = tuple(tuple(t for t in range(kh * kw) if p >> t & 1) for p in patterns)
    return PatternSet(supports, kernel_pattern)


def pack_patterns(weight_ohwi: np.ndarray, layer: str = "conv", pattern_set: PatternSet | None = None) -> PackedPatterns:
    """Pack OHWI int8 weights in the pattern format.

    Raises
    ------
    FormatError
        When the layer does not fit (the message names the layer and the limit).
    """
    w = np.asarray(weight_ohwi)
    if pattern_set is None:
        result = _detect(w)
        if isinstance(result, str):
            raise FormatError(f"layer '{layer}': not pattern-sparse: {result}")
        pattern_set = result
    o, kh, kw, cin = w.shape
    taps = np.array([list(s) + [s[0]] * (PATTERN_TAPS - len(s)) for s in pattern_set.supports], dtype=np.uint8)
    flat = w.reshape(o, kh * kw, cin)
    kp = pattern_set.kernel_pattern
    values, kidx, counts = [], [], np.zeros(o, dtype=np.int16)
    for out_channel in range(o):
        # kernel reorder: by pattern, then input channel
        order = sorted((int(kp[out_channel, c]), c) for c in range(cin) if kp[out_channel, c] >= 0)
        counts[out_channel] = len(order)
        for pid, c in order:
            support = pattern_set.supports[pid]
            vals = [int(flat[out_channel, t, c]) for t in support] + [0] * (PATTERN_TAPS - len(support))
            values.extend(vals)
            kidx.append(pid * cin + c)
    return PackedPatterns(values=np.array(values, dtype=np.int8), kidx=np.array(kidx, dtype=np.int16),
                          counts=counts, taps=taps.reshape(-1), weight_shape=(o, kh, kw, cin))
