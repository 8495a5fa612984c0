"""Tool discovery: the cross compiler and emulator, with errors that name the apt package.

QEMU itself is launched by the project template's Project API server (``Handler.run``)."""

from __future__ import annotations

import shutil

from ..errors import ToolchainError

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
