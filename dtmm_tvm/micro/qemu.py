"""Tool discovery and running an ELF on QEMU with exact instruction timing."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import ToolchainError
from .boards import Board

#: Debian packages that provide each tool (named in error messages).
APT_PACKAGES = {
    "arm-none-eabi-gcc": "gcc-arm-none-eabi libnewlib-arm-none-eabi",
    "arm-none-eabi-size": "binutils-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
    "make": "make",
}

DEFAULT_ICOUNT_SHIFT = 7


def require_tool(name: str) -> str:
    """Return the path of ``name`` on PATH.

    Raises
    ------
    ToolchainError
        When the tool is missing; the message names the apt package that provides it.
    """
    path = shutil.which(name)
    if path is None:
        pkg = APT_PACKAGES.get(name, name)
        raise ToolchainError(
            f"{name} was not found on PATH; install it with "
            f"`apt-get install -y --no-install-recommends {pkg}`")
    return path


def require_toolchain() -> dict:
    """Check every tool the build and run need; returns name -> path."""
    return {name: require_tool(name) for name in APT_PACKAGES}


@dataclass
class QemuResult:
    """Outcome of one emulator run."""

    exit_status: int
    stdout: str
    stderr: str
    command: list


def qemu_command(board: Board, elf: str | os.PathLike,
                 icount_shift: int = DEFAULT_ICOUNT_SHIFT) -> list:
    """QEMU command line for a semihosting ELF with deterministic instruction timing."""
    return [require_tool("qemu-system-arm"), "-M", board.qemu_machine, "-nographic",
            "-monitor", "none", "-serial", "none",
            "-semihosting-config", "enable=on,target=native",
            "-icount", f"shift={icount_shift},sleep=off", "-kernel", str(elf)]


def run_elf(elf: str | os.PathLike, board: Board, *, cwd: str | os.PathLike | None = None,
            timeout_s: float = 120.0, icount_shift: int = DEFAULT_ICOUNT_SHIFT) -> QemuResult:
    """Run a semihosting ELF on the board's QEMU machine to completion.

    Parameters
    ----------
    elf : path
        Program linked for ``board``.
    board : Board
        Target board.
    cwd : path, optional
        Working directory of QEMU; semihosting file names are relative to it.
    timeout_s : float
        Wall-clock limit.
    icount_shift : int
        ``-icount shift``; 7 gives exact instruction counts on every board in the table.

    Returns
    -------
    QemuResult
        Exit status (the guest's SYS_EXIT_EXTENDED status), stdout and stderr.

    Raises
    ------
    ToolchainError
        If qemu-system-arm is missing, the ELF does not exist, or the run times out.
    """
    elf = Path(elf)
    if not elf.is_file():
        raise ToolchainError(f"cannot run {elf} on {board.name}: the file does not exist")
    cmd = qemu_command(board, elf.resolve(), icount_shift)
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"QEMU ({board.qemu_machine}) did not finish {elf} within "
                             f"{timeout_s:g} s") from None
    return QemuResult(proc.returncode, proc.stdout, proc.stderr, cmd)
