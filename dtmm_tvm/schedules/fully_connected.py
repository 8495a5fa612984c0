"""Schedule knobs of the int8 fully connected kernel (:mod:`dtmm_tvm.ops.fully_connected`)."""

from __future__ import annotations

from dataclasses import dataclass

import tvm

from ..kernels import target_isa
from ..quant.conv import FullyConnectedParams

__all__ = ["FullyConnectedSchedule", "ROWS_PER_BLOCK", "c_target", "default_schedule", "schedule_space"]

ROWS_PER_BLOCK = (1, 2, 4)


@dataclass(frozen=True)
class FullyConnectedSchedule:
    """Knobs of the fully connected kernel.

    Attributes
    ----------
    rows_per_block
        Output rows (1, 2 or 4) whose dot products run together, sharing every input load (and
        on DSP its SXTB16 unpacking).
    micro_kernel
        False: the plain TIR loop nest (no extern call; what host builds use).
    """

    rows_per_block: int = 2
    micro_kernel: bool = True

    def __post_init__(self):
        if self.rows_per_block not in ROWS_PER_BLOCK:
            raise ValueError(f"rows_per_block={self.rows_per_block} not in {ROWS_PER_BLOCK}")


def c_target(target):
    if target is None:
        target = tvm.target.Target.current(allow_none=True)
    return target if target is not None and str(target.kind.name) == "c" else None


def default_schedule(params: FullyConnectedParams, target=None) -> FullyConnectedSchedule:
    """Per-target default (measured on 256->64, 250->10 and the fixtures, see the kernel bench).

    4 rows per block on MVE, DSP and portable C. Without a C target (host LLVM builds) or with a
    non-zero weight zero point: the TIR loop nest.
    """
    target = c_target(target)
    if target is None or params.weight_zero_point != 0:
        return FullyConnectedSchedule(micro_kernel=False)
    return FullyConnectedSchedule(rows_per_block={"mve": 4, "dsp": 4, "c": 4}[target_isa(target)])


def schedule_space(params: FullyConnectedParams, target=None) -> list[FullyConnectedSchedule]:
    """Every schedule worth measuring for ``params`` on ``target`` (default first)."""
    default = default_schedule(params, target)
    if not default.micro_kernel:
        return [default]
    space = [default]
    for rows in ROWS_PER_BLOCK:
        s = FullyConnectedSchedule(rows_per_block=rows)
        if s not in space and rows <= max(params.weight_shape[0], 1):
            space.append(s)
    return space


