"""Turn a harness run into measurements: instruction counts, flash and RAM.

Instruction counts come from the ``DTMM ...`` lines the harness prints (timer ticks around
``tvmgen_default_run`` and around an empty call with the same signature). Memory comes from the
section headers of the linked ELF (parsed directly, no binutils needed) and of the object files
compiled from the artifact's codegen sources.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelError, ResourceError, ToolchainError
from .boards import Board

#: Exit statuses of the harness (microtvm_project/qemu_baremetal/src/dtmm_harness.h).
EXIT_MESSAGES = {
    10: (ToolchainError, "could not open the input file via semihosting"),
    11: (ToolchainError, "could not create the output file via semihosting"),
    12: (ToolchainError, "semihosting read of the input file failed"),
    13: (ToolchainError, "the input file ends in the middle of a record"),
    14: (ToolchainError, "semihosting write of the output file failed"),
    15: (ToolchainError, "the input file holds no complete record"),
    16: (ModelError, "tvmgen_default_run returned a non-zero status"),
    17: (ResourceError, "the stack overflowed its reservation (raise stack_bytes)"),
    18: (ModelError, "the program raised a CPU fault"),
}

SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
SHT_NOBITS = 8


@dataclass
class HarnessReport:
    """The harness's machine-readable lines, parsed.

    Attributes
    ----------
    ticks : list of int
        Timer ticks of each inference, in input order.
    empty_ticks : list of int
        Timer ticks of each empty call.
    stack_high_water, stack_size : int or None
        Painted-stack high-water mark and the reserved stack, bytes.
    done : int or None
        Inference count from the final ``DTMM done`` line (None if the run did not finish).
    error : tuple of int or None
        ``(code, detail)`` of a ``DTMM error`` line.
    """

    ticks: list = field(default_factory=list)
    empty_ticks: list = field(default_factory=list)
    stack_high_water: int | None = None
    stack_size: int | None = None
    done: int | None = None
    error: tuple | None = None
    mark_ticks: int | None = None
    op_ticks: list = field(default_factory=list)
    op_instructions: list = field(default_factory=list)


def parse_harness_output(text: str) -> HarnessReport:
    """Parse the ``DTMM <key> <a> [<b>]`` lines of a harness run (QEMU's stderr)."""
    rep = HarnessReport()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[0] != "DTMM":
            continue
        key, nums = parts[1], [int(p) for p in parts[2:]]
        if key == "ticks":
            if nums[0] != len(rep.ticks):
                raise ToolchainError(f"harness output out of order: {line!r}")
            rep.ticks.append(nums[1])
        elif key == "empty_ticks":
            rep.empty_ticks.append(nums[1])
        elif key == "mark_ticks":
            rep.mark_ticks = nums[1]
        elif key == "op_ticks":
            if not rep.ticks:
                raise ToolchainError(f"harness output out of order: {line!r}")
            if len(rep.op_ticks) < len(rep.ticks):
                rep.op_ticks.append([])
            rep.op_ticks[len(rep.ticks) - 1].append(nums[1])
        elif key == "stack":
            rep.stack_high_water, rep.stack_size = nums[0], nums[1]
        elif key == "done":
            rep.done = nums[0]
        elif key == "error":
            rep.error = (nums[0], nums[1] if len(nums) > 1 else 0)
    return rep


def check_exit(exit_status: int, report: HarnessReport, board: Board, elf: str,
               stack_bytes: int | None = None) -> None:
    """Raise the matching dtmm error for a failed harness run."""
    if exit_status == 0 and report.done is not None:
        return
    code = report.error[0] if report.error else exit_status
    detail = report.error[1] if report.error else None
    cls, what = EXIT_MESSAGES.get(code, (ToolchainError, "QEMU or the harness failed"))
    extra = f" (detail {detail})" if detail is not None else ""
    if code == 16:
        extra = f" (returned {np.int32(np.uint32(detail))} at inference {len(report.ticks)})"
    elif code == 17:
        extra = f" (high-water {detail} bytes)" if detail else " (stack-limit fault)"
        if stack_bytes:
            extra += f"; stack_bytes={stack_bytes}"
    elif code == 18:
        extra = f" (exception number {detail})"
    raise cls(f"{elf} on {board.name}: {what}{extra}; exit status {exit_status}")


@dataclass
class Section:
    """One section of an ELF file."""

    name: str
    size: int
    addr: int
    flags: int
    nobits: bool


def elf_sections(path: str | os.PathLike) -> list:
    """Allocated sections of a 32-bit little-endian ELF file (executable or object)."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise ToolchainError(f"{path} is not a 32-bit little-endian ELF file")
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    headers = [struct.unpack_from("<IIIIII", data, shoff + i * shentsize) for i in range(shnum)]
    str_off = headers[shstrndx][4]

    def name(off: int) -> str:
        end = data.index(b"\0", str_off + off)
        return data[str_off + off:end].decode()

    return [Section(name(h[0]), h[5], h[3], h[2], h[1] == SHT_NOBITS)
            for h in headers if h[2] & SHF_ALLOC and h[5] > 0]


def elf_memory(elf: str | os.PathLike) -> dict:
    """Flash and RAM use of a linked harness ELF.

    Returns
    -------
    dict
        ``text`` (code), ``rodata`` (read-only data incl. unwind tables), ``data`` (initialised
        data: its image in flash and its copy in RAM), ``bss`` (zeroed data, incl. the model
        arena) and ``stack_reserved`` (the ``.stack`` reservation), bytes.
    """
    out = {"text": 0, "rodata": 0, "data": 0, "bss": 0, "stack_reserved": 0}
    for s in elf_sections(elf):
        if s.name == ".stack":
            out["stack_reserved"] += s.size
        elif s.flags & SHF_EXECINSTR:
            out["text"] += s.size
        elif s.nobits:
            out["bss"] += s.size
        elif s.flags & SHF_WRITE:
            out["data"] += s.size
        else:
            out["rodata"] += s.size
    return out


def object_sizes(objects) -> dict:
    """Code and constant bytes of relocatable objects (the model's own share, before linking).

    Returns
    -------
    dict
        ``code`` (executable sections), ``constants`` (read-only data), ``data`` (initialised
        writable data) and ``bss``, summed over ``objects``.
    """
    out = {"code": 0, "constants": 0, "data": 0, "bss": 0}
    for obj in objects:
        for s in elf_sections(obj):
            if s.flags & SHF_EXECINSTR:
                out["code"] += s.size
            elif s.nobits:
                out["bss"] += s.size
            elif s.flags & SHF_WRITE:
                out["data"] += s.size
            else:
                out["constants"] += s.size
    return out


@dataclass
class RunResult:
    """Outputs and measurements of running a model artifact on a board.

    Attributes
    ----------
    board : str
        Board name.
    outputs : numpy.ndarray or list of numpy.ndarray
        ``(N, *output_shape)`` in the output dtype; a list in metadata order when the model
        has several outputs.
    output_names : list of str
        Output names from metadata.json.
    instructions_per_inference : list of int
        Guest instructions executed by ``tvmgen_default_run`` for each input, minus the cost
        of an empty call (instructions, not cycles).
    empty_call_instructions : int
        Instructions of the timed empty call (timer read + call + return + timer read).
    flash, ram : dict
        Breakdown as in the measurement record of docs/architecture.md.
    stack_reserved : int
        Bytes reserved for the stack (its high-water mark is ``ram["stack_high_water"]``).
    project_dir : str or None
        Generated project (kept only when requested).
    op_instructions : list of list of int or None
        Profiled builds only: per inference, the instructions of each operator call of the
        runner, in call order (``metadata.json`` ``runner_steps``).
    """

    board: str
    outputs: object
    output_names: list
    instructions_per_inference: list
    empty_call_instructions: int
    flash: dict
    ram: dict
    stack_reserved: int = 0
    project_dir: str | None = None
    op_instructions: list | None = None

    @property
    def inferences(self) -> int:
        return len(self.instructions_per_inference)

    @property
    def instructions(self) -> int:
        """Instructions per inference, maximum over the inputs."""
        return max(self.instructions_per_inference)

    @property
    def flash_bytes(self) -> int:
        return self.flash["text"] + self.flash["rodata"] + self.flash["data"]

    @property
    def ram_bytes(self) -> int:
        return self.ram["data"] + self.ram["bss"] + self.ram["stack_high_water"]

    def to_dict(self) -> dict:
        """The measurement record (``dtmm run --json``) as a dict."""
        return {"board": self.board, "inferences": self.inferences,
                "instructions": self.instructions,
                "instructions_per_inference": list(self.instructions_per_inference),
                "flash_bytes": self.flash_bytes, "ram_bytes": self.ram_bytes,
                "flash": dict(self.flash), "ram": dict(self.ram),
                **({"op_instructions": self.op_instructions} if self.op_instructions else {})}

    def to_json(self, indent: int | None = 2) -> str:
        """The measurement record as JSON."""
        return json.dumps(self.to_dict(), indent=indent)


def instructions_from_report(report: HarnessReport, board: Board, icount_shift: int) -> tuple:
    """Per-inference instruction counts and the empty-call cost from a parsed run.

    Each tick count is converted to instructions separately (rounding removes the timer's
    sub-instruction quantisation), then the empty call's count is subtracted.
    """
    if not report.empty_ticks:
        raise ToolchainError(f"{board.name}: the harness reported no empty-call measurement")
    empty = min(board.ticks_to_instructions(t, icount_shift) for t in report.empty_ticks)
    counts = [board.ticks_to_instructions(t, icount_shift) - empty for t in report.ticks]
    report.op_instructions = op_instructions(report.op_ticks, report.mark_ticks or 0, board,
                                             icount_shift)
    return counts, empty


def op_instructions(op_ticks: list, mark_pair_ticks: int, board: Board,
                    icount_shift: int) -> list:
    """Per-operator instructions of each inference: ticks between two profile marks, minus
    the cost of a mark measured between two back-to-back marks."""
    mark = board.ticks_to_instructions(mark_pair_ticks, icount_shift)
    return [[board.ticks_to_instructions(t, icount_shift) - mark for t in per]
            for per in op_ticks]
