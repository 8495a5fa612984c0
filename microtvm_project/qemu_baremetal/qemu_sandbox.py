"""Run firmware from an untrusted archive on QEMU without giving it the host.

The harness talks to the host through Arm semihosting, and semihosting as QEMU implements it is
the host's C library: SYS_OPEN opens any host path for reading or writing, SYS_SYSTEM runs a
shell command, SYS_WRITE0 prints without limit. So every emulator run is confined three ways:

* **seccomp** -- QEMU's own ``-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,
  resourcecontrol=deny``: QEMU cannot fork or exec, so SYS_SYSTEM ends the run instead of
  starting a shell;
* **file system** -- QEMU runs under bubblewrap (``bwrap``) in new namespaces (user, mount, PID,
  network, IPC, UTS) that see only ``/usr`` read-only (QEMU and its libraries), an empty ``/tmp``,
  and the run directory (the inputs file, the outputs file), writable, the ELF read-only, at their
  own paths. A SYS_OPEN of any other host file, for reading or writing, finds nothing or an
  in-sandbox tmpfs that vanishes with the run; the environment is cleared;
* **time and output** -- console output is streamed and capped (a flood kills QEMU at the cap
  instead of filling the host's memory), and a wall-clock limit always kills QEMU's whole process
  group (``--die-with-parent`` too, should the caller die).

Without a working ``bwrap`` (install Debian's ``bubblewrap``) the run is refused, unless
``DTMM_QEMU_UNCONFINED=1`` explicitly accepts seccomp only (then the firmware can read and write
host files as the user). Standard library only: this file is copied into generated projects.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

SECCOMP = ["-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"]
#: Default cap on what the firmware may print (stdout and stderr each); the harness prints a few
#: hundred bytes per inference.
DEFAULT_MAX_OUTPUT_BYTES = 4 * 1024 * 1024
UNCONFINED_ENV = "DTMM_QEMU_UNCONFINED"


class SandboxError(Exception):
    """The run could not be confined, ran too long, or printed too much.

    ``kind`` is ``"toolchain"`` (no sandbox available) or ``"run"``.
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


_BWRAP_OK: dict = {}


def bwrap_path() -> str | None:
    """``bwrap`` if it is installed and can create its namespaces here (probed once)."""
    path = shutil.which("bwrap")
    if path is None:
        return None
    if path not in _BWRAP_OK:
        try:
            proc = subprocess.run(_bwrap_prefix(path, [], []) + ["/usr/bin/true"], capture_output=True,
                                  timeout=30, stdin=subprocess.DEVNULL)
            _BWRAP_OK[path] = proc.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _BWRAP_OK[path] = False
    return path if _BWRAP_OK[path] else None


def _bwrap_prefix(bwrap: str, writable: list, readable: list) -> list:
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
            "--setenv", "PATH", "/usr/bin", "--ro-bind", "/usr", "/usr",
            "--dev", "/dev", "--tmpfs", "/tmp", "--proc", "/proc"]
    for top in ("lib", "lib64", "lib32", "bin", "sbin"):
        host = Path("/") / top
        if host.is_symlink():
            argv += ["--symlink", os.readlink(host), f"/{top}"]
        elif host.is_dir():
            argv += ["--ro-bind", str(host), f"/{top}"]
    for path in readable:
        argv += ["--ro-bind", str(path), str(path)]
    for path in writable:
        argv += ["--bind", str(path), str(path)]
    return argv


def confined_command(qemu_argv: list, run_dir: str | os.PathLike, elf: str | os.PathLike) -> list:
    """The full command: QEMU with seccomp, inside bubblewrap seeing only ``run_dir`` and ``elf``.

    Raises
    ------
    SandboxError
        ``kind="toolchain"`` when bubblewrap is unusable and unconfined runs were not allowed.
    """
    argv = list(qemu_argv) + SECCOMP
    bwrap = bwrap_path()
    if bwrap is None:
        if os.environ.get(UNCONFINED_ENV) == "1":
            return argv
        raise SandboxError(
            "toolchain", "cannot confine QEMU's semihosting file access: bubblewrap (bwrap) is missing "
            "or cannot create namespaces here; install it with `apt-get install -y bubblewrap`, or set "
            f"{UNCONFINED_ENV}=1 to run trusted firmware with QEMU's seccomp sandbox only")
    qemu = Path(argv[0]).resolve()
    readable = [Path(elf).resolve()]
    if not str(qemu).startswith("/usr/"):
        readable.append(qemu.parent)
    return _bwrap_prefix(bwrap, [Path(run_dir).resolve()], readable) + [str(qemu)] + argv[1:]


def run_confined(qemu_argv: list, run_dir: str | os.PathLike, elf: str | os.PathLike, timeout_s: float,
                 max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES, on_stderr=None) -> dict:
    """Run QEMU confined (see the module doc) in ``run_dir``; return exit status and output.

    ``on_stderr(text)``, if given, sees the stderr read so far after each chunk (the harness
    prints a ``DTMM ticks`` line per inference: progress for long runs).

    Returns
    -------
    dict
        ``exit_status``, ``stdout``, ``stderr`` (text), ``command``.

    Raises
    ------
    SandboxError
        ``kind="run"`` when the time limit passed or the output exceeded ``max_output_bytes``;
        QEMU has been killed (with its whole process group) when this is raised.
    """
    cmd = confined_command(qemu_argv, run_dir, elf)
    proc = subprocess.Popen(cmd, cwd=run_dir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    streams = {out_fd: bytearray(), err_fd: bytearray()}
    deadline = time.monotonic() + timeout_s
    problem = None
    try:
        open_fds = set(streams)
        while open_fds:
            left = deadline - time.monotonic()
            if left <= 0:
                problem = f"QEMU did not finish within {timeout_s:g} s"
                break
            ready, _, _ = select.select(list(open_fds), [], [], min(left, 1.0))
            for fd in ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    open_fds.discard(fd)
                    continue
                streams[fd] += chunk
                if fd == err_fd and on_stderr is not None:
                    on_stderr(streams[fd].decode("utf-8", "replace"))
                if len(streams[fd]) > max_output_bytes:
                    problem = f"the firmware printed more than {max_output_bytes} bytes"
                    break
            if problem:
                break
        if problem is None:
            left = max(0.0, deadline - time.monotonic())
            try:
                proc.wait(timeout=left)
            except subprocess.TimeoutExpired:
                problem = f"QEMU did not finish within {timeout_s:g} s"
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    if problem:
        raise SandboxError("run", f"{problem}; QEMU was stopped")
    return {"exit_status": proc.returncode,
            "stdout": streams[out_fd].decode("utf-8", "replace"),
            "stderr": streams[err_fd].decode("utf-8", "replace"),
            "command": cmd}
