"""The board table: which QEMU machine, core, compiler flags, memory map and timer per board.

The template project keeps its own copy of the build-relevant fields in
``microtvm_project/qemu_baremetal/boards.json`` and one linker script per board (the template is
self-contained); ``tests/micro/test_boards.py`` checks that both agree with this table.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DTMMError

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True)
class Board:
    """One emulated board.

    Attributes
    ----------
    name : str
        Board name used throughout dtmm (``mps2-an386``, ...).
    qemu_machine : str
        ``qemu-system-arm -M`` machine.
    core : str
        GCC ``-mcpu`` name of the core.
    cflags : tuple of str
        Code-generation flags for arm-none-eabi-gcc (core, Thumb, float ABI, FPU).
    flash_origin, flash_bytes : int
        Code memory (linked as ``FLASH``): address and size.
    ram_origin, ram_bytes : int
        Data memory (linked as ``RAM``): address and size.
    timer : str
        ``"cmsdk_timer0"`` (MPS2 CMSDK TIMER0, down-counter), ``"sse300_syscounter"``
        (SSE-300 system counter, up-counter) or ``"nrf51_timer0"`` (nRF51 TIMER0, 32-bit
        up-counter at 16 MHz, read by a capture task).
    tick_ns : float
        Timer period in nanoseconds of virtual time.
    has_dsp, has_mve, has_fpu : bool
        ISA features (DSP extension, MVE/Helium, FPU).
    stack_bytes : int
        Default stack reservation of a run (small-RAM boards reserve less).
    """

    name: str
    qemu_machine: str
    core: str
    cflags: tuple
    flash_origin: int
    flash_bytes: int
    ram_origin: int
    ram_bytes: int
    timer: str
    tick_ns: float
    has_dsp: bool
    has_mve: bool
    has_fpu: bool = True
    stack_bytes: int = 64 * 1024

    def ticks_to_instructions(self, ticks: int, icount_shift: int = 7) -> int:
        """Convert timer ticks measured under ``-icount shift=N`` to guest instructions.

        Every instruction advances virtual time by ``2**N`` ns, so ``ticks * tick_ns / 2**N``
        is the instruction count up to the timer's quantisation (less than one tick), which
        rounding removes as long as an instruction lasts longer than two ticks.
        """
        return int(round(ticks * self.tick_ns / (1 << icount_shift)))


BOARDS = {
    b.name: b
    for b in (
        Board("mps2-an386", "mps2-an386", "cortex-m4",
              ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"),
              0x00000000, 4 * MiB, 0x20000000, 4 * MiB, "cmsdk_timer0", 40.0,
              has_dsp=True, has_mve=False),
        Board("mps2-an500", "mps2-an500", "cortex-m7",
              ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"),
              0x00000000, 4 * MiB, 0x20000000, 4 * MiB, "cmsdk_timer0", 40.0,
              has_dsp=True, has_mve=False),
        # Cortex-M3: no DSP, no FPU; models run the kernels' portable C paths.
        Board("mps2-an385", "mps2-an385", "cortex-m3",
              ("-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"),
              0x00000000, 4 * MiB, 0x20000000, 4 * MiB, "cmsdk_timer0", 40.0,
              has_dsp=False, has_mve=False, has_fpu=False),
        # Cortex-M33 (Armv8-M mainline with the DSP extension) on the SSE-200; boots secure, so
        # code, data, timer and UART use their secure aliases. Its CMSDK timer runs at 20 MHz.
        Board("mps2-an505", "mps2-an505", "cortex-m33",
              ("-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"),
              0x10000000, 4 * MiB, 0x38000000, 4 * MiB, "cmsdk_timer0", 50.0,
              has_dsp=True, has_mve=False),
        # BBC micro:bit (nRF51822): Cortex-M0, ARMv6-M (no DSP, no hardware divide, no
        # unaligned access), 256 KiB flash, 16 KiB RAM: small models only, 4 KiB of stack.
        Board("microbit", "microbit", "cortex-m0",
              ("-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft"),
              0x00000000, 256 * KiB, 0x20000000, 16 * KiB, "nrf51_timer0", 62.5,
              has_dsp=False, has_mve=False, has_fpu=False, stack_bytes=4 * 1024),
        Board("mps3-an547", "mps3-an547", "cortex-m55",
              ("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"),
              0x00000000, 512 * KiB, 0x20000000, 512 * KiB, "sse300_syscounter", 31.25,
              has_dsp=True, has_mve=True),
    )
}


def get_board(name: str) -> Board:
    """Look a board up by name.

    Raises
    ------
    DTMMError
        For an unknown name; the message lists the known boards.
    """
    try:
        return BOARDS[name]
    except KeyError:
        raise DTMMError(f"unknown board {name!r}; known boards: "
                        f"{', '.join(sorted(BOARDS))}") from None
