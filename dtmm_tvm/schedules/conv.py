"""Schedule knobs of the regular int8 conv kernels (dense, filterlet-sparse, 1x1).

The kernels (:mod:`dtmm_tvm.ops.conv2d_micro`) are TIR loop nests over blocks of output pixels
and blocks of output channels whose innermost work - the dot products of the kept filterlets
with the block's im2col rows, then bias/requantization - is a ``T.call_extern`` into the C
micro-kernel ``dtmm_conv_block_s8`` (``dtmm_tvm/kernels``). :class:`ConvSchedule` fixes that loop
structure; :func:`default_schedule` is the per-target choice and :func:`schedule_space` the set
an autotuner searches.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from ..kernels import target_isa
from ..quant.conv import Conv2DParams

__all__ = ["ConvSchedule", "PACKED_MAX", "block_tile_bytes", "csr_pixels", "default_schedule", "group_width",
           "mve_fast_block", "packed_patch", "resolve", "row_bytes", "schedule_space", "scratch_bytes",
           "unstructured_scratch_bytes"]

PIXELS_PER_BLOCK = (1, 2, 4, 8)


@dataclass(frozen=True)
class ConvSchedule:
    """Loop structure of one conv kernel.

    Attributes
    ----------
    pixels_per_block
        Output pixels gathered (im2col) per block; the micro-kernel reuses every loaded weight
        for up to 4 of them (8 = two groups of 4 per gathered block). Scratch grows linearly.
    channels_per_block
        Output channels per micro-kernel call (0 = all ``Cout`` in one call).
    unroll_taps
        No effect since the im2col moved into one C call per block (kept so schedules and
        tuning records that name it still load); not part of :func:`schedule_space`.
    micro_kernel
        False: the plain TIR loop nest (portable, no extern calls, slow; the reference path).
    """

    pixels_per_block: int = 4
    channels_per_block: int = 0
    unroll_taps: bool = False
    micro_kernel: bool = True

    def __post_init__(self):
        if self.pixels_per_block not in PIXELS_PER_BLOCK:
            raise ValueError(f"pixels_per_block={self.pixels_per_block} not in {PIXELS_PER_BLOCK}")
        if self.channels_per_block < 0:
            raise ValueError("channels_per_block must be >= 0 (0 = all)")


def elem_bytes(isa: str) -> int:
    """Bytes per im2col element: int8 rows with MVE, q15 otherwise."""
    return 1 if isa == "mve" else 2


def chunk_elems(isa: str) -> int:
    """Elements per im2col chunk (mirrors ``CH`` of ``dtmm_conv_im2col_s8.c``)."""
    return 16 if isa == "mve" else 4


def group_width(pixels_per_block: int, isa: str) -> int:
    """Pixels sharing one im2col pointer in the micro-kernel (interleaved chunks): up to 8 with
    MVE (2 x 4 accumulators), up to 4 with DSP / portable C (4 SMLAD accumulators)."""
    return min(pixels_per_block, 8 if isa == "mve" else 4)


#: Largest KH*KW*Cin of the packed-patch im2col (``DTMM_CONV_PACKED_MAX`` of dtmm_kernels.h).
PACKED_MAX = 256


def packed_patch(params: Conv2DParams, isa: str, fmt: str = "dense") -> bool:
    """Whether the dense kernel uses the small-Cin fast path: the whole KH x KW x Cin patch as
    ONE dot product of ceil(KH*KW*Cin / CH) chunks (``dtmm_conv_im2col_packed_s8``) instead of
    KH*KW taps of ceil(Cin / CH) chunks. Dense weights only; taken when Cin is not a multiple of
    the chunk (per-tap chunks would be partial: Cin = 3 uses 3 of 16 MVE lanes) and the patch
    fits ``PACKED_MAX`` bytes."""
    _, kh, kw, cin = params.weight_shape
    return fmt == "dense" and cin % chunk_elems(isa) != 0 and kh * kw * cin <= PACKED_MAX


def mve_fast_block(params: Conv2DParams, isa: str, fmt: str, group: int) -> str | None:
    """Which fast path of ``dtmm_conv_block_mve_s8`` (MVE, groups of 8 pixels) a layer takes:
    ``"small_k"`` (dense packed patch of at most 32 bytes: 2 filters in registers for 8 pixels),
    ``"sparse"`` (a filterlet format with Cin 16, 32 or 64: one asm loop per channel over its
    kept filterlets) or None (``dtmm_conv_block_s8``). Mirrors the checks of that C entry."""
    if isa != "mve" or group != 8:
        return None
    _, kh, kw, cin = params.weight_shape
    if fmt == "dense":
        return "small_k" if packed_patch(params, isa, fmt) and kh * kw * cin <= 32 else None
    return "sparse" if cin in (16, 32, 64) and 1 < kh * kw <= 32 else None


def row_bytes(params: Conv2DParams, isa: str, packed: bool = False) -> int:
    """im2col bytes per output pixel (mirrors ``dtmm_conv_s8_get_buffer_size(kk, cin, 1)``):
    KH*KW taps of ceil(Cin / CH) chunks, 16 B per chunk with MVE (int8), 8 B otherwise (q15);
    ``packed`` (:func:`packed_patch`): ceil(KH*KW*Cin / CH) chunks."""
    _, kh, kw, cin = params.weight_shape
    ch = chunk_elems(isa)
    cb = 16 if isa == "mve" else 8
    if packed:
        return ((kh * kw * cin + ch - 1) // ch) * cb
    return kh * kw * ((cin + ch - 1) // ch) * cb


def row_stride_bytes(params: Conv2DParams, isa: str) -> int:
    """Alias of :func:`row_bytes` (kept for callers of the previous layout)."""
    return row_bytes(params, isa)


def block_tile_bytes(isa: str) -> int:
    """Scratch of ``dtmm_conv_block_s8``'s accumulator tile (mirrors
    ``dtmm_conv_block_s8_get_buffer_size``): 8 pixels x ``TILE_CH`` = 32 channels of int32 with
    MVE (kept off the stack), none on the other ISAs."""
    return 4 * 8 * 32 if isa == "mve" else 0


def scratch_bytes(params: Conv2DParams, isa: str, schedule: ConvSchedule, fmt: str = "dense",
                  kept_filters: int | None = None) -> int:
    """Arena scratch of one kernel: the im2col block plus the per-channel bias (int32) plus the
    block kernel's accumulator tile (:func:`block_tile_bytes`)
    (``"unstructured_csr"``: :func:`unstructured_scratch_bytes`; ``"filter_compact"``: the dense
    conv of its ``kept_filters`` filters, whose schedule ``schedule`` is, plus the block of kept
    output rows the expansion reads)."""
    if not schedule.micro_kernel:
        return 0
    if fmt == "unstructured_csr":
        return unstructured_scratch_bytes(params, isa)
    pixels = params.output_shape[1] * params.output_shape[2]
    p = min(schedule.pixels_per_block, pixels)
    if fmt == "filter_compact":
        if kept_filters is None:
            raise ValueError("the scratch of a filter_compact conv depends on its kept filters: pass kept_filters")
        inner = replace(params, weight_shape=(int(kept_filters), *params.weight_shape[1:]))
        return scratch_bytes(inner, isa, schedule, "dense") + p * int(kept_filters)
    return (p * row_bytes(params, isa, packed_patch(params, isa, fmt)) + 4 * params.output_shape[3]
            + block_tile_bytes(isa))


def csr_pixels(isa: str) -> int:
    """Output pixels per CSR row walk of ``dtmm_conv_csr_s8`` (its ``CSR_P``: 8 MVE, else 4)."""
    return 8 if isa == "mve" else 4


def unstructured_scratch_bytes(params: Conv2DParams, isa: str) -> int:
    """Mirror of ``dtmm_conv_csr_s8_get_buffer_size``: effective bias (int32 per output channel),
    the column table (4 bytes per patch element) and ``csr_pixels`` gathered patches."""
    cout, kh, kw, cin = params.weight_shape
    k = kh * kw * cin
    return 4 * cout + 4 * k + csr_pixels(isa) * ((k + 3) & ~3)


def default_schedule(params: Conv2DParams, target=None) -> ConvSchedule:
    """The default per target, measured on the paper's layer (3x3, 16x16x64 -> 64):

    - DSP (Cortex-M4/M7): 4 pixels per block = one interleaved group of 4 (LDM of 4 pixels'
      q15 pairs, 4 SMLAD accumulators): dense 10.1 M instructions (was 23.1 M with 2 pixels);
    - MVE (Cortex-M55): 8 pixels = one group of 8 (8 VMLADAVA per weight load): dense
      1.85 M, 50% 1.35-1.40 M (4 pixels: 2.45 M dense);
    - portable C: 4; all output channels in one micro-kernel call (fewest calls).
    """
    import tvm

    if target is None:
        target = tvm.target.Target.current(allow_none=True)
    if target is None or str(target.kind.name) != "c":
        # No C target (e.g. host tests building with LLVM): extern calls cannot link.
        return ConvSchedule(micro_kernel=False)
    ppb = 8 if target_isa(target) == "mve" else 4
    return ConvSchedule(pixels_per_block=ppb, channels_per_block=0, unroll_taps=False)


def schedule_space(params: Conv2DParams, target=None) -> list[ConvSchedule]:
    """Every schedule worth measuring for ``params`` on ``target`` (default first)."""
    cout = params.output_shape[3]
    pixels = params.output_shape[1] * params.output_shape[2]
    default = default_schedule(params, target)
    if not default.micro_kernel:
        return [default]
    channels = sorted({0, *(c for c in (4, 8, 16) if c < cout)})
    space = [default]
    for p, c, u in itertools.product(PIXELS_PER_BLOCK, channels, (False,)):
        if p > 1 and p // 2 >= pixels:
            continue
        s = replace(default, pixels_per_block=p, channels_per_block=c, unroll_taps=u)
        if s not in space:
            space.append(s)
    return space


def resolve(params: Conv2DParams, target=None, schedule: ConvSchedule | None = None):
    """``(target, schedule)`` with the defaults filled in (``Target.current()``, per-target)."""
    import tvm

    if target is None:
        target = tvm.target.Target.current(allow_none=True)
    if schedule is None:
        schedule = default_schedule(params, target)
    if schedule.micro_kernel and (target is None or str(target.kind.name) != "c"):
        raise ValueError("the conv micro-kernels need a C target (kind 'c'); pass "
                         "ConvSchedule(micro_kernel=False) for the plain TIR kernel")
    return target, schedule
