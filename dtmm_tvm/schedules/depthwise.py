"""Schedule knobs of the int8 depthwise conv kernel (:mod:`dtmm_tvm.ops.depthwise_conv2d`)."""

from __future__ import annotations

from dataclasses import dataclass

import tvm

from ..kernels import target_isa
from ..quant.conv import Conv2DParams

__all__ = ["CHANNEL_BLOCKS", "DepthwiseSchedule", "c_target", "default_schedule", "schedule_space"]

#: Channel blocks the C kernel implements per ISA (others fall back to the next smaller one).
CHANNEL_BLOCKS = {"mve": (4, 8, 16), "dsp": (4, 8), "c": (1, 2, 4)}


@dataclass(frozen=True)
class DepthwiseSchedule:
    """Knobs of the depthwise kernel.

    Attributes
    ----------
    channel_block
        Output channels the micro-kernel accumulates together per pass over the taps (one
        SXTB16/SMLAxy group = 4 on DSP, one int32x4 vector = 4 on MVE). Larger blocks share the
        tap-pointer loads but need more registers.
    micro_kernel
        False: the plain TIR loop nest (no extern call; what host builds use).
    """

    channel_block: int = 4
    micro_kernel: bool = True

    def __post_init__(self):
        if self.channel_block not in (1, 2, 4, 8, 16):
            raise ValueError(f"channel_block={self.channel_block} not in (1, 2, 4, 8, 16)")


def c_target(target):
    if target is None:
        target = tvm.target.Target.current(allow_none=True)
    return target if target is not None and str(target.kind.name) == "c" else None


def default_schedule(params: Conv2DParams, target=None) -> DepthwiseSchedule:
    """Per-target default (measured on 16x16x64 3x3 and the fixtures, see the kernel bench).

    MVE: 16 channels (4 vectors) per pass; DSP: 4 (8 spills on Cortex-M4); portable C: 4.
    Without a C target (host LLVM builds): the TIR loop nest.
    """
    target = c_target(target)
    if target is None:
        return DepthwiseSchedule(micro_kernel=False)
    return DepthwiseSchedule(channel_block={"mve": 16, "dsp": 4, "c": 4}[target_isa(target)])


def schedule_space(params: Conv2DParams, target=None) -> list[DepthwiseSchedule]:
    """Every schedule worth measuring for ``params`` on ``target`` (default first)."""
    default = default_schedule(params, target)
    if not default.micro_kernel:
        return [default]
    space = [default]
    for cb in CHANNEL_BLOCKS[target_isa(c_target(target))]:
        s = DepthwiseSchedule(channel_block=cb)
        if s not in space:
            space.append(s)
    return space


