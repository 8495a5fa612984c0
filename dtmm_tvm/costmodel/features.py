"""Features of one layer for the linear latency model, and the layer description they read.

A layer's predicted instructions are ``coefficients[op/format] . features(layer)``: a sum of
work counts that our micro-kernels repeat (MACs in SIMD chunks, kept filterlets visited per
output pixel, im2col bytes, requantized outputs, per-call overhead). The counts are exact
functions of the shape and the mask; only the per-count costs are fitted (see
:mod:`dtmm_tvm.costmodel.fit`).
"""

from __future__ import annotations

from dataclasses import dataclass

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

CONV_FEATURES = ["simd_mac_steps", "dot_calls", "chunk_tails", "filterlet_visits", "im2col_chunks", "outputs",
                 "channel_blocks", "call", "packed_im2col_taps", "im2col_taps", "im2col_partial_taps", "blocks"]


#: Features of the unstructured format (dtmm_conv_csr_s8.c: gather P pixels' patches, walk
#: every CSR row once per P pixels, requantize).
UNSTRUCTURED_FEATURES = ["nonzero_visits", "gather_bytes", "gather_rows", "outputs", "channel_rows",
                         "nonzero", "call"]
#: Output pixels per CSR row walk (mirrors dtmm_tvm.ops.conv2d_unstructured.csr_pixels).
_CSR_PIXELS = {"cortex-m4": 4, "cortex-m7": 4, "cortex-m55": 8}


def unstructured_features(shape: ConvShape, target: str) -> list:
    """Feature vector of a conv in the unstructured CSR format (:data:`UNSTRUCTURED_FEATURES`)."""
    p = shape.pixels
    blocks = -(-p // _CSR_PIXELS[_core(target)])
    nnz = shape.nnz
    return [
        float(blocks * nnz),                          # each non-zero once per row walk (P pixels)
        float(p * shape.kh * shape.kw * shape.cin),   # gathered patch bytes
        float(p * shape.kh),                          # gathered kernel rows (one copy each)
        float(p * shape.cout),                        # requantize + store each output
        float(blocks * shape.cout),                   # per channel per row walk: row setup, tails
        float(nnz),                                   # bias fold, once per call
        1.0,                                          # call overhead
    ]


def conv_features(shape: ConvShape, fmt: str, target: str) -> list:
    """Feature vector of a regular conv compiled in ``fmt`` for ``target`` (the kernel's loop
    structure: dtmm_conv_block_s8.c visits kept taps in runs, one dot-product call per run when
    Cin fills whole chunks, else one call plus a tail chunk per filterlet)."""
    if fmt == UNSTRUCTURED:
        return unstructured_features(shape, target)
    core = _core(target)
    ch = _CHUNK[core]
    ppb = _PIXELS_PER_BLOCK[core]
    p = shape.pixels
    taps = shape.kh * shape.kw
    cin = shape.cin
    aligned = cin % ch == 0
    chunks = -(-cin // ch)
    blocks = -(-p // ppb)
    packed = fmt == "dense" and not aligned and taps * cin <= PACKED_MAX
    if packed:
        # Packed patch: one contiguous run of ceil(KH*KW*Cin / CH) chunks per filter.
        row = -(-(taps * cin) // ch)
        mac, calls, tails, visits, im2col = shape.cout * row, shape.cout, 0.0, 0.0, row
    else:
        kept = shape.cout * taps if fmt == "dense" else shape.kept
        runs = shape.cout if fmt == "dense" else shape.runs
        mac = kept * (cin // ch)
        calls = runs if aligned else kept
        tails = 0.0 if aligned else kept
        visits = 0.0 if fmt == "dense" else kept
        im2col = taps * chunks
    return [
        float(p * mac),                   # SIMD MAC steps (full chunks)
        float(blocks * calls),            # dot-product calls per pixel block
        float(blocks * tails),            # leftover-chunk handling per filterlet per block
        float(blocks * visits),           # index decode per kept filterlet per block
        float(p * im2col),                # im2col chunks per pixel
        float(p * shape.cout),            # requantize + store each output
        float(blocks * shape.cout),       # per output channel per block: loop + bias setup
        1.0,                              # call overhead
        # im2col per tap and pixel (bounds check, address, copy setup): separately for the packed
        # patch (Cin bytes appended at an unaligned offset), the chunk layout, and taps whose
        # Cin leaves a partial chunk (zero fill). With MVE's 16-byte chunks these dominate the
        # copy itself (without them the M55 fit missed held-out shapes by up to 22%).
        float(p * taps) if packed else 0.0,
        float(p * taps),
        float(p * taps) if (not aligned and not packed) else 0.0,
        float(blocks),                    # per pixel block: im2col call, accumulator tile, requant pass
    ]


#: Pixels per block of the pattern kernel (PG of dtmm_conv_pattern_s8.c) and the channels its
#: gather moves per vector step (DSP: 4 via SXTB16/PKH, MVE: 16 via VST4; else one at a time).
_PATTERN_PG = {"cortex-m4": 4, "cortex-m7": 4, "cortex-m55": 8}
_PATTERN_GATHER_STEP = {"cortex-m4": 4, "cortex-m7": 4, "cortex-m55": 16}

PATTERN_FEATURES = ["kernel_visits", "filter_blocks", "outputs", "gather_steps", "gather_tails",
                    "pattern_pixels", "kept_kernels", "patterns", "call"]


def pattern_features(shape: ConvShape, kept_kernels: int, patterns: int, target: str) -> list:
    """Feature vector of a regular conv compiled in the pattern format (dtmm_conv_pattern_s8.c:
    per block of PG pixels a gather of every pattern's 4 taps over Cin, then per filter one
    dot-product step per kept kernel (MVE: per 4 kept kernels), then requantization)."""
    core = _core(target)
    pg = _PATTERN_PG[core]
    step = _PATTERN_GATHER_STEP[core]
    p = shape.pixels
    blocks = -(-p // pg)
    kept = int(kept_kernels)
    visits = kept / 4.0 if core == "cortex-m55" else float(kept)
    return [
        float(blocks * visits),                         # inner dot-product steps
        float(blocks * shape.cout),                     # per filter per block: bias, loop, tail
        float(p * shape.cout),                          # requantize + store each output
        float(p * patterns * (shape.cin // step)),      # vector gather steps
        float(p * patterns * (shape.cin % step)),       # scalar gather of the channel tail
        float(p * patterns),                            # tap pointers per pattern per pixel
        float(kept),                                    # effective bias (4 weights per kept kernel)
        float(patterns),                                # tap offsets of the pattern table
        1.0,                                            # call overhead
    ]


def depthwise_features(shape: ConvShape, target: str) -> list:
    p = shape.pixels
    taps = shape.kh * shape.kw
    return [float(p * shape.cout * taps), float(p * shape.cout), float(p), 1.0]


def fc_features(in_features: int, out_features: int, target: str) -> list:
    ch = _CHUNK[_core(target)]
    return [float(out_features * -(-in_features // ch)), float(out_features), float(in_features), 1.0]


#: Non-conv operators the cost model prices (what the pruner's Keras models lower to): group ->
#: feature names. Their cost barely changes with pruning (only through the channels kept), but
#: whole-model predictions must include them to track measured totals.
OTHER_OP_FEATURES = {
    "max_pool2d": ["window_reads", "outputs", "output_pixels", "call"],
    "avg_pool2d": ["window_reads", "outputs", "output_pixels", "call"],
    "mean": ["inputs", "outputs", "call"],
    "softmax": ["elements", "rows", "call"],
    "add": ["elements", "call"],
}


def pool_features(out_hw: tuple, channels: int, window: tuple) -> list:
    """Max / average pool (NHWC, batch 1): every output reads its window's elements."""
    pixels = int(out_hw[0]) * int(out_hw[1])
    outputs = pixels * int(channels)
    return [float(outputs * int(window[0]) * int(window[1])), float(outputs), float(pixels), 1.0]


def mean_features(height: int, width: int, channels: int) -> list:
    """MEAN over H and W (Keras' GlobalAveragePooling2D in TFLite)."""
    return [float(height * width * channels), float(channels), 1.0]


def softmax_features(rows: int, depth: int) -> list:
    return [float(rows * depth), float(rows), 1.0]


def add_features(elements: int) -> list:
    """Elementwise ADD of two same-shape int8 tensors."""
    return [float(elements), 1.0]
