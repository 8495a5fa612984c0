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

__all__ = ["ConvSchedule", "default_schedule", "resolve", "schedule_space", "scratch_bytes"]

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
        Unroll the (kh, kw) im2col loops in TIR.
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


def row_stride_bytes(params: Conv2DParams, isa: str) -> int:
    """Bytes between two pixels' im2col rows (mirrors ``dtmm_conv_s8_get_buffer_size``)."""
    _, kh, kw, cin = params.weight_shape
    return (kh * kw * cin * elem_bytes(isa) + 15) // 16 * 16


def scratch_bytes(params: Conv2DParams, isa: str, schedule: ConvSchedule) -> int:
    """Arena scratch of one kernel: the im2col block plus the per-channel bias (int32)."""
    if not schedule.micro_kernel:
        return 0
    pixels = params.output_shape[1] * params.output_shape[2]
    p = min(schedule.pixels_per_block, pixels)
    return p * row_stride_bytes(params, isa) + 4 * params.output_shape[3]


def default_schedule(params: Conv2DParams, target=None) -> ConvSchedule:
    """The default per target, measured on the paper's layer (3x3, 16x16x64 -> 64, 50%):

    - DSP (Cortex-M4/M7): 2 pixels per block (instructions on M4 for 1/2/4/8 pixels:
      17.4 / 12.7 / 14.7 / 14.7 M): the 4-pixel SMLAD loop runs out of registers and spills;
    - MVE (Cortex-M55) and portable C: 4 pixels per block (M55 for 2/4/8: 3.24 / 1.95 / 1.95 M);
    - all output channels in one micro-kernel call (fewest calls).
    """
    import tvm

    if target is None:
        target = tvm.target.Target.current(allow_none=True)
    if target is None or str(target.kind.name) != "c":
        # No C target (e.g. host tests building with LLVM): extern calls cannot link.
        return ConvSchedule(micro_kernel=False)
    ppb = 2 if target_isa(target) == "dsp" else 4
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
    for p, c, u in itertools.product(PIXELS_PER_BLOCK, channels, (False, True)):
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
