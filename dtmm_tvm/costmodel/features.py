"""Features of one layer for the linear latency model, and the layer description they read.

A layer's predicted instructions are ``coefficients[op/format] . features(layer)``: a sum of
work counts that our micro-kernels repeat, read off their loop structure (dot-product chunk
steps, calls and partial-chunk tails per group of pixels, kept filterlets and runs decoded,
im2col copies of in-image rows / taps and fills of padded ones, requantized outputs, per-call
overhead). The counts are exact functions of the shape, the mask and the target's default
schedule (chunk width, pixels per group); only the per-count costs are fitted (see
:mod:`dtmm_tvm.costmodel.fit`). A kernel whose loops change needs its counts here changed too,
then a refit (``dtmm fit-cost-model --remeasure GROUP``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: Weight formats a regular conv can be compiled to ("dense" = the dense micro-kernel).
CONV_FORMATS = ("dense", "filterlet_csr", "filterlet_u8", "filterlet_bitmask", "unstructured_csr")
#: The per-weight CSR format (kernel dtmm_conv_csr_s8.c): its own loop structure and features.
UNSTRUCTURED = "unstructured_csr"

#: SIMD chunk (int8 elements per inner step) per core: DSP q15 pairs of 4, MVE 16 lanes.
_CHUNK = {"cortex-m4": 4, "cortex-m7": 4, "cortex-m55": 16}
#: Output pixels per im2col block of the default schedule (dtmm_tvm.schedules.conv.default_schedule).
_PIXELS_PER_BLOCK = {"cortex-m4": 4, "cortex-m7": 4, "cortex-m55": 8}


@dataclass(frozen=True)
class ConvShape:
    """A regular or depthwise conv, NHWC / OHWI, batch 1.

    ``padding`` is explicit ``(top, left, bottom, right)``; ``kept_filterlets`` is the number of
    filterlets ``W[o, kh, kw, :]`` with a non-zero weight (``cout * kh * kw`` when dense).
    """

    height: int
    width: int
    cin: int
    cout: int
    kh: int
    kw: int
    strides: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)
    depthwise: bool = False
    kept_filterlets: int | None = None
    #: Runs of consecutive kept taps summed over filters (the kernel makes one dot-product call
    #: per run when Cin fills whole SIMD chunks); None: estimated for a random placement.
    kept_runs: int | None = None
    #: Non-zero weights (the unstructured format's work and bytes); None: ``kept * cin`` (every
    #: weight of a kept filterlet non-zero).
    nonzero_weights: int | None = None

    @property
    def nnz(self) -> int:
        return self.kept * self.cin if self.nonzero_weights is None else int(self.nonzero_weights)

    @property
    def out_hw(self) -> tuple:
        oh = (self.height + self.padding[0] + self.padding[2] - self.kh) // self.strides[0] + 1
        ow = (self.width + self.padding[1] + self.padding[3] - self.kw) // self.strides[1] + 1
        return oh, ow

    @property
    def pixels(self) -> int:
        oh, ow = self.out_hw
        return oh * ow

    @property
    def kept(self) -> int:
        return self.cout * self.kh * self.kw if self.kept_filterlets is None else int(self.kept_filterlets)

    @property
    def runs(self) -> float:
        if self.kept_runs is not None:
            return float(self.kept_runs)
        taps = self.kh * self.kw
        if taps <= 1 or self.cout == 0:
            return float(self.kept)
        k = self.kept / self.cout   # expected runs of k random positions out of taps: k (taps - k + 1) / taps
        return self.cout * k * (taps - k + 1) / taps

    @property
    def total_filterlets(self) -> int:
        return self.cout * self.kh * self.kw

    @property
    def macs(self) -> int:
        return self.pixels * self.cout * self.kh * self.kw * (1 if self.depthwise else self.cin)


def _core(target: str) -> str:
    return target.split("/")[-1]


#: Dense convs with Cin not a multiple of the chunk and KH*KW*Cin up to this many bytes use the
#: packed-patch im2col (mirrors dtmm_tvm.schedules.conv.PACKED_MAX).
PACKED_MAX = 256
#: Output channels per requantization tile of the MVE block kernel (TILE_CH of dtmm_conv_block_s8.c).
_TILE_CH = 16 * 2


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _extents(n_out: int, stride: int, pad: int, k: int, size: int) -> tuple:
    """In-image kernel range ``[lo, hi)`` of every output index along one axis (dilation 1)."""
    out = []
    for o in range(n_out):
        start = o * stride - pad
        lo = min(max(0, -start), k)
        out.append((lo, max(min(k, size - start), lo)))
    return tuple(out)


def _window_geometry(shape: ConvShape) -> tuple:
    """Exact in-image window extents of every output row and column (the im2col kernels' ``ih``
    test per kernel row and ``[lo, hi)`` range per pixel): ``(rows[oh], cols[ow])`` of
    ``(lo, hi)`` pairs. Row and column extents are independent, so every per-pixel count of an
    im2col is a product of a row sum and a column sum."""
    oh, ow = shape.out_hw
    return (_extents(oh, shape.strides[0], shape.padding[0], shape.kh, shape.height),
            _extents(ow, shape.strides[1], shape.padding[1], shape.kw, shape.width))


def _copy_steps(nbytes: int, core: str) -> tuple:
    """(wide steps, narrow steps, tail) of one ``copy_chunks`` call of ``nbytes`` input bytes
    (dtmm_conv_im2col_s8.c): MVE 64 bytes per wide step (group of 8), 16 per narrow step, a
    predicated tail; DSP 8 bytes per wide step (group of 4), 4 per narrow, a scalar tail."""
    wide, narrow = (64, 16) if core == "cortex-m55" else (8, 4)
    return nbytes // wide, (nbytes % wide) // narrow, int(nbytes % narrow > 0)


def _im2col_parts(shape: ConvShape, core: str, packed: bool) -> tuple:
    """Exact event counts of one layer's im2col (all blocks): the first im2col features'
    (:data:`_IM2COL_OLD`) and the MVE paths' (:data:`_ALIGNED_FEATURES` + :data:`_GATHER_FEATURES`),
    which come last in the feature vector."""
    args = (shape.height, shape.width, shape.cin, shape.kh, shape.kw, tuple(shape.strides), tuple(shape.padding))
    mve = core == "cortex-m55"
    zeros_old = [0.0] * len(_IM2COL_OLD)
    if mve and not packed and shape.cin % 16 == 0:
        return zeros_old, list(_mve_aligned_counts(*args)) + [0.0] * len(_GATHER_FEATURES)
    if mve and packed and _gather_fits(shape):
        return zeros_old, [0.0] * len(_ALIGNED_FEATURES) + list(_mve_gather_counts(*args))
    return list(_im2col_counts_cached(*args, core, packed)), [0.0] * (len(_ALIGNED_FEATURES) + len(_GATHER_FEATURES))


def _gather_fits(shape: ConvShape) -> bool:
    """The MVE packed patch is gathered (uint8 offsets) when every patch byte lies within 255
    bytes of the window origin (dtmm_conv_im2col_packed_s8, dilation 1)."""
    return (shape.kh - 1) * shape.width * shape.cin + shape.kw * shape.cin <= 255


def _blocks(p: int, ppb: int):
    """(first pixel, pixels) of every im2col block."""
    return [(p0, min(ppb, p - p0)) for p0 in range(0, p, ppb)]


@lru_cache(maxsize=4096)
def _mve_aligned_counts(height, width, cin, kh, kw, strides, padding) -> tuple:
    """dtmm_conv_im2col_s8 with MVE and Cin a multiple of 16 (im2col_aligned_mve): groups of 8
    in one output row on the row path when Cin is 16 and stride_w 1 (per group, per padded
    kernel row, per in-image tap with all 8 slots inside / with some outside), the other pixels
    one by one (interior: kernel rows and chunk copies; border: kernel rows, taps in / out of
    the image, their chunks). In :data:`_ALIGNED_FEATURES` order."""
    shape = ConvShape(height, width, cin, cin, kh, kw, strides, padding)
    oh_n, ow_n = shape.out_hw
    sh, sw = strides
    pt, pl = padding[0], padding[1]
    cpt = cin // 16
    ih_last, iw_last = height - kh, width - kw
    groups = pad_rows = full_taps = part_taps = 0
    pix = int_pix = int_rows = int_chunks = b_rows = b_in = b_out = 0
    g = min(8, oh_n * ow_n)
    for p0, n in _blocks(oh_n * ow_n, 8):
        oh, ow = divmod(p0, ow_n)
        if g == 8 and cin == 16 and sw == 1 and n == 8 and ow + 8 <= ow_n:
            groups += 1
            ih0, iw0 = oh * sh - pt, ow - pl
            for i in range(kh):
                if not 0 <= ih0 + i < height:
                    pad_rows += 1
                    continue
                for j in range(kw):
                    if iw0 + j >= 0 and iw0 + j + 8 <= width:
                        full_taps += 1
                    else:
                        part_taps += 1
            continue
        for q in range(p0, p0 + n):
            oh, ow = divmod(q, ow_n)
            ih0, iw0 = oh * sh - pt, ow * sw - pl
            pix += 1
            if 0 <= ih0 <= ih_last and 0 <= iw0 <= iw_last:
                int_pix += 1
                int_rows += kh
                int_chunks += kh * kw * cpt
                continue
            b_rows += kh
            for i in range(kh):
                for j in range(kw):
                    if 0 <= ih0 + i < height and 0 <= iw0 + j < width:
                        b_in += 1
                    else:
                        b_out += 1
    return (groups, pad_rows, full_taps, part_taps, pix, int_pix, int_rows, int_chunks, b_rows, b_in, b_out,
            (b_in + b_out) * cpt)


@lru_cache(maxsize=4096)
def _mve_gather_counts(height, width, cin, kh, kw, strides, padding) -> tuple:
    """dtmm_conv_im2col_packed_s8 by byte gathers (packed_gather_mve): per call the offset
    table (one step per kernel-row boundary and chunk), runs of interior pixels within a group
    and output row (tables in registers) and their pixels' chunk gathers, border pixels (bounds,
    predicated gathers per chunk) and the calls that build the border tables. In
    :data:`_GATHER_FEATURES` order."""
    shape = ConvShape(height, width, cin, cin, kh, kw, strides, padding)
    oh_n, ow_n = shape.out_hw
    sh, sw = strides
    pt, pl = padding[0], padding[1]
    cpt = _ceil(kh * kw * cin, 16)
    ih_last, iw_last = height - kh, width - kw
    g = min(8, oh_n * ow_n)
    blocks = _blocks(oh_n * ow_n, 8)
    runs = int_chunks = border = border_calls = 0
    for p0, n in blocks:
        prev_interior = False
        any_border = False
        for q in range(p0, p0 + n):
            oh, ow = divmod(q, ow_n)
            ih0, iw0 = oh * sh - pt, ow * sw - pl
            interior = 0 <= ih0 <= ih_last and 0 <= iw0 <= iw_last
            if interior:
                # a run continues while the pixels stay interior in the same output row and group
                if not (prev_interior and ow > 0 and (q - p0) % g != 0):
                    runs += 1
                int_chunks += cpt
            else:
                border += 1
                any_border = True
            prev_interior = interior
        border_calls += any_border
    return (len(blocks) * cpt * (kh - 1), runs, int_chunks, border, border * cpt, border_calls)


@lru_cache(maxsize=4096)
def _im2col_counts_cached(height, width, cin, kh, kw, strides, padding, core, packed) -> tuple:
    shape = ConvShape(height, width, cin, cin, kh, kw, strides, padding)
    mve = core == "cortex-m55"
    ch = _CHUNK[core]
    p = shape.pixels
    if not mve and kh == kw == 1 and padding[0] == padding[1] == 0 and cin % 4 == 0:
        # DSP pointwise: one straight run of Cin per pixel, Cin / 4 chunks (no bounds, no taps)
        return (0,) * 13 + (p, p * (cin // 4)) + (0,) * 5
    rows, cols = _window_geometry(shape)
    # MVE: pixels whose every tap is in the image take the interior path (kh row copies, no
    # bounds or padding); the counts below are then the other (border) pixels' own.
    interior = 0
    if mve and (packed or cin % ch == 0):
        interior = (sum(1 for lo, hi in rows if lo == 0 and hi == kh)
                    * sum(1 for lo, hi in cols if lo == 0 and hi == kw))
    sum_rows = sum(hi - lo for lo, hi in rows)        # in-image kernel rows over output rows
    rows_in = sum_rows * len(cols)                     # ... over pixels
    rows_out = p * kh - rows_in
    taps_in = sum_rows * sum(hi - lo for lo, hi in cols)
    pad_runs = rows_out + sum_rows * sum(int(lo > 0) + int(hi < kw) for lo, hi in cols)
    if packed:
        # per in-image kernel row one patch copy of (hi - lo) * Cin bytes and fills of the padded
        # taps, per padded row one fill; then per pixel one copy of the patch into the chunk layout
        def steps(nbytes):   # patch_copy / patch_fill: MVE predicated 16-byte steps, DSP words + bytes
            return (_ceil(nbytes, 16), 0) if mve else (nbytes // 4, nbytes % 4)

        copy_w = copy_b = fill = 0
        for lo, hi in cols:
            w_, b_ = steps((hi - lo) * cin)
            copy_w += sum_rows * w_
            copy_b += sum_rows * b_
            for nb in (lo * cin, (kw - hi) * cin):
                fw, fb = steps(nb)
                fill += sum_rows * (fw + fb)
        fw, fb = steps(kw * cin)
        fill += rows_out * (fw + fb)
        patch = _copy_steps(kh * kw * cin, core)
        return (0, 0, 0, p, p * patch[0], p * patch[1], p * patch[2], 0, pad_runs, rows_in - interior * kh, copy_w,
                copy_b, fill, 0, 0, 0, 0, 0, interior, interior * kh)
    wide = narrow = tail = 0
    if cin % ch == 0:  # a kernel row's in-image taps are one contiguous copy
        calls = rows_in
        for lo, hi in cols:
            w_, n_, t_ = _copy_steps((hi - lo) * cin, core)
            wide, narrow, tail = wide + sum_rows * w_, narrow + sum_rows * n_, tail + sum_rows * t_
    else:
        calls = taps_in
        w_, n_, t_ = _copy_steps(cin, core)
        wide, narrow, tail = taps_in * w_, taps_in * n_, taps_in * t_
    pad_chunks = (p * kh * kw - taps_in) * _ceil(cin, ch)
    rows = interior * kh
    w_, n_, t_ = _copy_steps(kw * cin, core)
    return (rows_in - rows, rows_out, calls - rows, p, wide - rows * w_, narrow - rows * n_, tail - rows * t_,
            pad_chunks, pad_runs, 0, 0, 0, 0, 0, 0, interior, rows, rows * kw * _ceil(cin, ch), 0, 0)


#: im2col features (dtmm_conv_im2col_s8.c; the packed patch's own counts, then the DSP pointwise
#: path's: 1x1, no padding, Cin % 4 == 0; then the MVE interior paths': pixels, kernel rows and
#: chunk copies of the regular im2col, pixels and kernel rows of the packed patch).
_IM2COL_OLD = ["im2col_rows_in", "im2col_rows_out", "im2col_copy_calls", "im2col_pixels", "im2col_copy_wide",
               "im2col_copy_narrow", "im2col_copy_tails", "im2col_pad_chunks", "im2col_pad_runs",
               "patch_rows_in", "patch_copy_steps", "patch_copy_bytes", "patch_fill_steps", "pointwise_pixels",
               "pointwise_chunks", "interior_pixels", "interior_rows", "interior_chunks", "patch_interior_pixels",
               "patch_interior_rows"]
#: MVE, Cin a multiple of 16 (im2col_aligned_mve): the row path of groups of 8, then the
#: pixel-by-pixel path (:func:`_mve_aligned_counts`).
_ALIGNED_FEATURES = ["row_groups", "row_group_pad_rows", "row_group_full_taps", "row_group_partial_taps",
                     "aligned_pixels", "aligned_interior_pixels", "aligned_interior_rows", "aligned_interior_chunks",
                     "aligned_border_rows", "aligned_border_taps_in", "aligned_border_taps_out",
                     "aligned_border_chunks"]
#: MVE packed patch by byte gathers (:func:`_mve_gather_counts`).
_GATHER_FEATURES = ["gather_table_steps", "gather_interior_runs", "gather_interior_chunks", "gather_border_pixels",
                    "gather_border_chunks", "gather_border_calls"]
IM2COL_FEATURES = _IM2COL_OLD + _ALIGNED_FEATURES + _GATHER_FEATURES
#: dtmm_conv_block_mve_s8's fast paths (dtmm_tvm.schedules.conv.mve_fast_block): the packed
#: small patch (filter pairs per group, their chunk steps, an odd last filter) and the sparse
#: Cin-16/32/64 channel loop (per channel and group, per kept filterlet, per filterlet chunk).
_FAST_BLOCK_FEATURES = ["small_k_pairs", "small_k_pair_chunks", "small_k_singles", "sparse_channel_loops",
                        "sparse_filterlets", "sparse_chunks"]
#: Block-kernel features (dtmm_conv_block_s8.c), then the im2col's, then the call, then the MVE
#: im2col paths' and the MVE fast block paths' (appended last: a coefficients file fitted before
#: them predicts them as 0 on a core where they count 0, see :func:`dtmm_tvm.costmodel._predict`).
CONV_FEATURES = ["dot_steps", "dot_calls", "dot_tails", "filterlet_visits", "runs", "pair_steps", "pair_calls",
                 "pair_tails", "channel_blocks", "tiles", "outputs", "requant_groups", "requant_tail_pixels",
                 "blocks", *_IM2COL_OLD, "call", *_ALIGNED_FEATURES, *_GATHER_FEATURES, *_FAST_BLOCK_FEATURES]
#: Features whose per-event cost is the same code for every regular format (the im2col, the
#: requantization, the dot-product loop body): fitted jointly over the formats
#: (:func:`dtmm_tvm.costmodel.fit.fit_points`); the rest are fitted per format.
SHARED_CONV_FEATURES = ("dot_steps", "dot_tails", "outputs", "requant_groups", "requant_tail_pixels", "tiles",
                        *IM2COL_FEATURES, "sparse_chunks")


#: Features of the unstructured format (dtmm_conv_csr_s8.c: per block of P pixels either read
#: in place (every window inside the image) or gather the P patches, walk every CSR row once,
#: requantize).
UNSTRUCTURED_FEATURES = ["direct_steps", "gather_steps", "row_walks", "gather_runs", "gather_bytes_small",
                         "gather_bytes_large", "gathered_pixels", "outputs", "requant_steps", "table", "nonzero",
                         "call"]
#: Output pixels per CSR row walk (mirrors dtmm_tvm.ops.conv2d_unstructured.csr_pixels).
_CSR_PIXELS = {"cortex-m4": 4, "cortex-m7": 4, "cortex-m55": 8}


def _csr_counts(shape: ConvShape, pixels_per_block: int) -> tuple:
    return _csr_counts_cached(shape.height, shape.width, shape.cin, shape.kh, shape.kw, tuple(shape.strides),
                              tuple(shape.padding), pixels_per_block)


@lru_cache(maxsize=4096)
def _csr_counts_cached(height, width, cin, kh, kw, strides, padding, ppb) -> tuple:
    """Exact counts of the unstructured kernel's blocks: (blocks read in place, blocks gathered,
    gathered pixels, gather copy / fill calls, bytes moved by byte loops, bytes moved by
    memcpy / memset). A block is read in place when every pixel's window lies inside the image;
    a gathered pixel copies each kernel row in one run when it lies inside the image (a padded
    row is one fill), else tap by tap; runs under 16 bytes are byte loops."""
    shape = ConvShape(height, width, cin, cin, kh, kw, strides, padding)
    rows, cols = _window_geometry(shape)
    ow = len(cols)
    p = shape.pixels
    direct = gathered = gpix = calls = small = large = 0
    for p0 in range(0, p, ppb):
        block = range(p0, min(p, p0 + ppb))
        if all(rows[q // ow] == (0, kh) and cols[q % ow] == (0, kw) for q in block):
            direct += 1
            continue
        gathered += 1
        for q in block:
            gpix += 1
            (rlo, rhi), (clo, chi) = rows[q // ow], cols[q % ow]
            nin = rhi - rlo
            whole = (clo, chi) == (0, kw)
            long_runs = kh - nin + (nin if whole else 0)      # runs of KW*Cin bytes
            short_runs = 0 if whole else nin * kw             # runs of Cin bytes
            calls += long_runs + short_runs
            for n_runs, length in ((long_runs, kw * cin), (short_runs, cin)):
                if length < 16:
                    small += n_runs * length
                else:
                    large += n_runs * length
    return direct, gathered, gpix, calls, small, large


@lru_cache(maxsize=4096)
def _expected_steps_cached(k: int, mean: float, step: int) -> float:
    q = min(max(mean / k, 0.0), 1.0)
    if q in (0.0, 1.0):
        return float(_ceil(int(round(q * k)), step))
    x = np.arange(k + 1)
    logpmf = (np.array([math.lgamma(k + 1) - math.lgamma(i + 1) - math.lgamma(k - i + 1) for i in range(k + 1)])
              + x * math.log(q) + (k - x) * math.log1p(-q))
    return float(np.dot(np.exp(logpmf), -(-x // step)))


def _expected_steps(k: int, mean: float, step: int) -> float:
    """Expected ``ceil(X / step)`` of a CSR row's non-zero count ``X`` ~ Binomial(``k``, mean / k):
    the row walk's vector steps when the non-zeros are spread at random over the rows."""
    return _expected_steps_cached(int(k), round(float(mean), 6), int(step))


def unstructured_features(shape: ConvShape, target: str) -> list:
    """Feature vector of a conv in the unstructured CSR format (:data:`UNSTRUCTURED_FEATURES`)."""
    core = _core(target)
    mve = core == "cortex-m55"
    ppb = _CSR_PIXELS[core]
    p = shape.pixels
    nnz = shape.nnz
    direct, gathered, gpix, calls, small, large = _csr_counts(shape, ppb)
    # MVE walks a row 8 non-zeros per step (a predicated last step, none for an empty row); the
    # scalar path one non-zero per step.
    per_row = shape.cout * _expected_steps(shape.kh * shape.kw * shape.cin, nnz / max(shape.cout, 1), 8) if mve \
        else float(nnz)
    blocks = direct + gathered
    return [
        float(direct * per_row),                      # row-walk steps read in place (+ table gather)
        float(gathered * per_row),                    # row-walk steps over gathered patches
        float(blocks * shape.cout),                   # per row and block: bias, accumulators, loop
        float(calls),                                 # gather copy / fill calls
        float(small),                                 # bytes moved by byte loops
        float(large),                                 # bytes moved by memcpy / memset
        float(gpix),                                  # per gathered pixel: window, row pointers
        float(p * shape.cout),                        # requantize + store each output
        float(blocks * shape.cout * (ppb // 4)) if mve else 0.0,   # MVE 4-pixel requant vectors
        float(shape.kh * shape.kw * shape.cin),       # column table, once per call
        float(nnz),                                   # bias fold, once per call
        1.0,                                          # call overhead
    ]


def _dot_counts(shape: ConvShape, fmt: str, core: str, packed: bool) -> tuple:
    """Per pixel group: (steps, calls, tails) of the one-filter dot product ``dot_g``,
    (steps, calls, tails) of the MVE two-filter dense path ``dot_pair4``, filterlet visits and
    runs of the sparse decode."""
    ch = _CHUNK[core]
    taps = shape.kh * shape.kw
    cout = shape.cout
    kk, cin = (1, taps * shape.cin) if packed else (taps, shape.cin)
    aligned = cin % ch == 0
    full, rest = cin // ch, cin % ch
    pair_channels = 0
    if core == "cortex-m55" and fmt == "dense" and (aligned or kk == 1) and cin > 0:
        # two filters at a time inside each 32-channel tile; an odd last channel alone
        pair_channels = sum(2 * (min(_TILE_CH, cout - t) // 2) for t in range(0, cout, _TILE_CH))
    pairs = pair_channels // 2
    n_pair = kk * _ceil(cin, ch) if aligned else full
    pair = (2 * pairs * n_pair, 2 * pairs, 2 * pairs * int(rest > 0 and not aligned))
    singles = cout - pair_channels
    if fmt == "dense":
        kept = singles * kk
        runs = singles
        visits = runs_decoded = 0.0
    else:
        kept = shape.kept
        runs = shape.runs
        visits, runs_decoded = float(kept), float(runs)
    if aligned:
        dot = (kept * (cin // ch), runs, 0.0)
    else:
        dot = (kept * full, kept, kept * int(rest > 0))
    return dot, pair, visits, runs_decoded


def conv_features(shape: ConvShape, fmt: str, target: str) -> list:
    """Feature vector of a regular conv compiled in ``fmt`` for ``target``
    (:data:`CONV_FEATURES`): exact counts of the loops of dtmm_conv_block_s8.c and
    dtmm_conv_im2col_s8.c under the default schedule. The block kernel always computes a whole
    group of G pixels (a partial last block too), visits the kept taps in runs (one dot-product
    call per run when Cin fills whole chunks, else one call plus a partial-chunk tail per
    filterlet), and with MVE takes dense filters two at a time; requantization is per channel
    and group (DSP) or 4 channels x 1 pixel per vector (MVE, a predicated path for the last
    Cout % 4 channels)."""
    if fmt == UNSTRUCTURED:
        return unstructured_features(shape, target)
    core = _core(target)
    ppb = _PIXELS_PER_BLOCK[core]
    p = shape.pixels
    cin = shape.cin
    blocks = _ceil(p, ppb)
    packed = fmt == "dense" and cin % _CHUNK[core] != 0 and shape.kh * shape.kw * cin <= PACKED_MAX
    dot, pair, visits, runs = _dot_counts(shape, fmt, core, packed)
    mve = core == "cortex-m55"
    cout = shape.cout
    channel_blocks = float(blocks * cout)
    im2col_old, im2col_mve = _im2col_parts(shape, core, packed)
    fast = [0.0] * len(_FAST_BLOCK_FEATURES)
    taps = shape.kh * shape.kw
    if mve and min(ppb, p) == 8:  # the C entry's checks (schedules.conv.mve_fast_block)
        if packed and taps * cin <= 32:
            tiles = [min(_TILE_CH, cout - t) for t in range(0, cout, _TILE_CH)]
            pairs = sum(n // 2 for n in tiles)
            fast[:3] = [float(blocks * pairs), float(blocks * pairs * _ceil(taps * cin, 16)),
                        float(blocks * sum(n % 2 for n in tiles))]
        elif fmt != "dense" and cin in (16, 32, 64) and 1 < taps <= 32:
            fast[3:] = [float(blocks * cout), float(blocks * shape.kept), float(blocks * shape.kept * (cin // 16))]
        if any(fast):
            dot, pair, visits, runs = (0, 0, 0), (0, 0, 0), 0.0, 0.0
            channel_blocks = 0.0
    return [
        float(blocks * dot[0]),                       # dot_g chunk steps (G pixels each)
        float(blocks * dot[1]),                       # dot_g calls
        float(blocks * dot[2]),                       # partial-chunk tails
        float(blocks * visits),                       # sparse index decode per kept filterlet
        float(blocks * runs),                         # ... per run of consecutive taps
        float(blocks * pair[0]),                      # MVE dense 2-filter x 4-pixel chunk steps
        float(blocks * pair[1]),                      # ... calls
        float(blocks * pair[2]),                      # ... partial-chunk tails
        channel_blocks,                               # per channel and group: bias, loop
        float(blocks * _ceil(cout, _TILE_CH)) if mve else 0.0,   # MVE requantization tiles
        float(p * cout),                              # requantize + store each output
        float(blocks * _ceil(cout, 4)) if mve else 0.0,          # MVE 4-channel requant set-up
        float(p * (cout % 4 > 0)) if mve else 0.0,    # MVE predicated requant of the last channels
        float(blocks),                                # per block: im2col and block calls
        *im2col_old,
        1.0,                                          # call overhead
        *im2col_mve,                                  # MVE im2col paths
        *fast,                                        # MVE fast block paths
    ]


#: Pixels per block of the pattern kernel (PG of dtmm_conv_pattern_s8.c) and the channels its
#: gather moves per vector step (DSP: 4 via SXTB16/PKH, MVE: 16 via VST4; else one at a time).
_PATTERN_PG = {"cortex-m4": 4, "cortex-m7": 4, "cortex-m55": 8}
_PATTERN_GATHER_STEP = {"cortex-m4": 4, "cortex-m7": 4, "cortex-m55": 16}

PATTERN_FEATURES = ["kernel_visits", "filter_blocks", "outputs", "gather_steps", "gather_tails",
                    "pattern_pixels", "pixels", "kept_kernels", "patterns", "call"]


def pattern_features(shape: ConvShape, kept_kernels: int, patterns: int, target: str) -> list:
    """Feature vector of a regular conv compiled in the pattern format (dtmm_conv_pattern_s8.c:
    per block of PG pixels a gather of every pattern's 4 taps over Cin, then per filter one
    dot-product step per kept kernel (MVE: per 4 kept kernels of a filter), then requantization)."""
    core = _core(target)
    pg = _PATTERN_PG[core]
    step = _PATTERN_GATHER_STEP[core]
    p = shape.pixels
    blocks = -(-p // pg)
    kept = int(kept_kernels)
    # MVE: per filter ceil(kept kernels / 4) steps (the filter's kept kernels spread at random
    # over its Cin input channels)
    visits = (shape.cout * _expected_steps(shape.cin, kept / max(shape.cout, 1), 4) if core == "cortex-m55"
              else float(kept))
    return [
        float(blocks * visits),                         # inner dot-product steps
        float(blocks * shape.cout),                     # per filter per block: bias, loop, tail
        float(p * shape.cout),                          # requantize + store each output
        float(p * patterns * (shape.cin // step)),      # vector gather steps
        float(p * patterns * (shape.cin % step)),       # scalar gather of the channel tail
        float(p * patterns),                            # tap pointers per pattern per pixel
        float(p),                                       # per pixel: window origin, the layer's tap pointers
        float(kept),                                    # effective bias (4 weights per kept kernel)
        float(patterns),                                # tap offsets of the pattern table
        1.0,                                            # call overhead
    ]


#: Depthwise features: the generic pixel loop's (zero when a fast path applies), the DSP
#: channel-blocked 3x3 path's, the MVE transposed path's, then the per-channel set-up and the call.
DEPTHWISE_FEATURES = ["vector_steps", "tail_steps", "vector_blocks", "tail_blocks", "pixel_passes",
                      "table_row_taps", "table_pad_row_taps", "border_pixels",
                      "dsp3_block_pixels", "dsp3_block_border", "dsp3_block_rows", "dsp3_blocks",
                      "mve_t_quads", "mve_t_transposes", "mve_t_units", "mve_t_table_taps", "mve_t_border_taps",
                      "mve_t_weights", "channels", "call"]
#: int8 lanes per depthwise vector step (MVE: 16; DSP: 4 per word).
_DW_LANES = {"cortex-m4": 4, "cortex-m7": 4, "cortex-m55": 16}
#: Channels per super-block of the MVE depthwise paths (DW_SUPER), taps of its transposed path (DW_T_TAPS).
_DW_SUPER = 64
_DW_T_TAPS = 16


def depthwise_path(shape: ConvShape, target: str) -> str:
    """The loop dtmm_depthwise_conv_s8.c runs for a depth-multiplier-1 layer with the usual TFLite
    requantization records (every channel a right shift: output scale below input x weight
    scale, what int8 layers have): ``"dsp3"`` (DSP, 3x3, channels % 4 == 0: the channel-blocked
    layer loop), ``"mve_t"`` (MVE, up to 16 taps, channels % 4 == 0: the transposed path), else
    ``"generic"`` (the tap-table pixel loop; MVE: the lane path)."""
    core = _core(target)
    c4 = shape.cout % 4 == 0
    if core in ("cortex-m4", "cortex-m7") and shape.kh == 3 and shape.kw == 3 and c4:
        return "dsp3"
    if core == "cortex-m55" and shape.kh * shape.kw <= _DW_T_TAPS and c4:
        return "mve_t"
    return "generic"


def _mve_t_counts(shape: ConvShape) -> tuple:
    """dw_layer_mve_t's events per layer: (channel quads dotted, 4-tap transposes, pixel units,
    dw_run_t calls, border pixel-passes). Per output row that reads no padded row, the columns
    free of padding run as one call (4- / 8-channel stride-1 layers: 16 / C pixels per unit, the
    leftover pixels one at a time); every other pixel is its own call."""
    c = shape.cout
    taps = shape.kh * shape.kw
    rows, cols = _window_geometry(shape)
    ow = len(cols)
    pack = 16 // c if c in (4, 8) and shape.strides[1] == 1 else 1
    interior = [i for i, col in enumerate(cols) if col == (0, shape.kw)]
    n_int = len(interior)
    in_rows = sum(r == (0, shape.kh) for r in rows)
    groups = n_int // pack if n_int >= pack else 0
    rest = n_int - groups * pack
    # per inside row: one run of `groups` packed units (if any) + `rest` single calls; border: singles
    border = len(rows) * ow - in_rows * n_int
    supers = [min(_DW_SUPER, c - c0) for c0 in range(0, c, _DW_SUPER)]
    quads = transposes = units = calls = 0
    tgroups = _ceil(taps, 4)
    for n in supers:
        singles = in_rows * rest + border
        if pack > 1:
            quads += in_rows * groups * 4 + singles * (n // 4)
            transposes += (in_rows * groups + singles * _ceil(n, 16)) * tgroups
        else:
            quads += (in_rows * groups + singles) * (n // 4)
            transposes += (in_rows * groups + singles) * _ceil(n, 16) * tgroups
        units += in_rows * groups + singles
        calls += in_rows * int(groups > 0) + singles
    return quads, transposes, units, calls, border * len(supers)


def depthwise_features(shape: ConvShape, target: str) -> list:
    """Depthwise conv (:data:`DEPTHWISE_FEATURES`), per path (:func:`depthwise_path`).

    Generic: per pixel and tap the channels in full vector steps, then the channels that do not
    fill the lanes (DSP: one at a time; MVE: predicated steps of 8), per pixel and vector block
    (or tail step) its bias load and requantized store, per pixel and pass over a block of
    channels (MVE: blocks of 64 channels) the pass and its table of tap pointers (per in-image
    kernel row its taps checked, per padded row pad pointers), and the pixels whose window
    leaves the image. DSP 3x3: per block of 4 channels and pixel the 9 taps and 4 requantizations, per
    border pixel a patch of 9 words, per block and output row the row's set-up, per block the
    weights sign-extended. MVE transposed: :func:`_mve_t_counts` (per pixel unit the tap pointers
    advanced, per unit and tap pointer table set when a call starts, border tables with checks,
    per channel and tap the weight table). Every path: per channel the layer's set-up (bias,
    pad pixel), the call."""
    core = _core(target)
    lanes = _DW_LANES[core]
    p = shape.pixels
    taps = shape.kh * shape.kw
    c = shape.cout
    rows, cols = _window_geometry(shape)
    inside = sum(r == (0, shape.kh) for r in rows) * sum(col == (0, shape.kw) for col in cols)
    path = depthwise_path(shape, target)
    generic = [0.0] * 8
    dsp3 = [0.0] * 4
    mve_t = [0.0] * 6
    if path == "dsp3":
        blocks = c // 4
        dsp3 = [float(p * blocks), float((p - inside) * blocks), float(len(rows) * blocks), float(blocks)]
    elif path == "mve_t":
        quads, transposes, units, calls, border = _mve_t_counts(shape)
        mve_t = [float(quads), float(transposes), float(units * taps), float(calls * taps), float(border * taps),
                 float(c * taps)]
    else:
        # the channels past the full vectors: MVE in predicated half vectors (8 lanes), DSP one at a time
        tail = _ceil(c % lanes, 8) if core == "cortex-m55" else c % lanes
        passes = _ceil(c, _DW_SUPER) if core == "cortex-m55" else 1
        # the tap table: per in-image kernel row KW checked taps, per padded row KW pad pointers
        row_taps = sum(hi - lo for lo, hi in rows) * len(cols) * shape.kw
        generic = [float(p * taps * (c // lanes)), float(p * taps * tail), float(p * (c // lanes)), float(p * tail),
                   float(p * passes), float(row_taps * passes), float((p * taps - row_taps) * passes),
                   float(p - inside)]
    return [*generic, *dsp3, *mve_t, float(c), 1.0]


FC_FEATURES = ["row_steps", "block_steps", "row_tails", "block_tails", "outputs", "blocks", "call"]
#: Output rows per block of the fully connected kernel (its default schedule: 4, then 2, then 1).
_FC_ROWS = 4


def fc_features(in_features: int, out_features: int, target: str) -> list:
    """Fully connected (:data:`FC_FEATURES`, dtmm_fully_connected_s8.c): rows in blocks of 4, then 2,
    then 1 sharing each input load; per block ``K // CH`` vector steps, then the last ``K % CH``
    inputs (MVE: one predicated step per block; DSP: a scalar loop per row and input)."""
    core = _core(target)
    ch = _CHUNK[core]
    k, o = int(in_features), int(out_features)
    blocks = o // _FC_ROWS + (o % _FC_ROWS) // 2 + o % 2
    rest = k % ch
    row_tails = o * int(rest > 0) if core == "cortex-m55" else o * rest
    return [float(o * (k // ch)), float(blocks * (k // ch)), float(row_tails), float(blocks * int(rest > 0)), float(o),
            float(blocks), 1.0]


#: The expansion step of the filter-compacted conv (dtmm_expand_channels_s8.c), priced on its
#: own and added to the dense conv of the kept filters (:func:`expand_features`).
EXPAND_FEATURES = ["copy_steps", "copy_tail_bytes", "scatter_steps", "pixels", "calls"]
#: Non-conv operators the cost model prices (what the pruner's Keras models lower to): group ->
#: feature names. Their cost barely changes with pruning (only through the channels kept), but
#: whole-model predictions must include them to track measured totals.
OTHER_OP_FEATURES = {
    "max_pool2d": ["window_reads", "window_row_loops", "outputs", "output_pixels", "call"],
    "avg_pool2d": ["window_reads", "window_row_loops", "outputs", "output_pixels", "call"],
    "mean": ["inputs", "input_rows", "outputs", "call"],
    "softmax": ["elements", "rows", "call"],
    "add": ["elements", "call"],
    "expand_channels": EXPAND_FEATURES,
}


def expand_features(pixels: int, channels: int, kept: int, target: str, pixels_per_block: int | None = None) -> list:
    """``dtmm_expand_channels_s8`` over ``pixels`` output rows of ``channels`` bytes, ``kept`` of
    them from the compact conv, one call per block of the conv's default pixels per block: per
    row the constant row is copied (MVE: 16-byte predicated vectors; else words, then the tail
    bytes) and the kept channels stored (MVE: 8 per scatter; else one by one)."""
    core = _core(target)
    ppb = pixels_per_block or _PIXELS_PER_BLOCK[core]
    calls = _ceil(pixels, ppb)
    if core == "cortex-m55":
        return [float(pixels * _ceil(channels, 16)), 0.0, float(pixels * _ceil(kept, 8)), float(pixels), float(calls)]
    return [float(pixels * (channels // 4)), float(pixels * (channels % 4)), float(pixels * kept), float(pixels),
            float(calls)]


def pool_features(out_hw: tuple, channels: int, window: tuple) -> list:
    """Max / average pool (NHWC, batch 1; TIR loops, one output at a time, constant trip counts):
    every output reads its window's elements; the C compiler (-O2) unrolls a window of up to 4
    reads completely, a larger one keeps its loop over the window rows."""
    pixels = int(out_hw[0]) * int(out_hw[1])
    outputs = pixels * int(channels)
    reads = int(window[0]) * int(window[1])
    return [float(outputs * reads), float(outputs * int(window[0])) if reads > 4 else 0.0, float(outputs),
            float(pixels), 1.0]


def mean_features(height: int, width: int, channels: int) -> list:
    """MEAN over H and W (Keras' GlobalAveragePooling2D in TFLite; TIR loops per channel over the
    rows, then the columns)."""
    return [float(height * width * channels), float(height * channels), float(channels), 1.0]


def softmax_features(rows: int, depth: int) -> list:
    return [float(rows * depth), float(rows), 1.0]


def add_features(elements: int) -> list:
    """Elementwise ADD of two same-shape int8 tensors."""
    return [float(elements), 1.0]
