"""Run compiled model artifacts on emulated Cortex-M boards (QEMU) and measure them.

Public entry point: :func:`run_artifact` (in-process, a batch run through semihosting). Through
microTVM's Project API protocol (the template's server as a separate process, JSON-RPC 2.0, the
board's UART as transport): :mod:`.session` (``create_project``, ``build_project``,
``run_project``), :mod:`.project_api` (the client), :mod:`.transport` (framing). Lower level:
:class:`Project`, the board table and the QEMU runner.
"""

from .boards import BOARDS, Board, get_board
from .measure import RunResult
from .project import Project, check_fits, read_metadata, run_artifact
from .qemu import require_tool, require_toolchain

__all__ = ["BOARDS", "Board", "get_board", "RunResult", "Project", "check_fits",
           "read_metadata", "run_artifact", "require_tool", "require_toolchain"]
