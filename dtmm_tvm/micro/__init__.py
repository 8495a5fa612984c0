"""Run compiled model artifacts on emulated Cortex-M boards (QEMU) and measure them.

Public entry point: :func:`run_artifact`. Lower level: :class:`Project` (generate / build /
run steps through the template's Project API server), the board table and the QEMU runner.
"""

from .boards import BOARDS, Board, get_board
from .measure import RunResult
from .project import Project, check_fits, read_metadata, run_artifact
from .qemu import require_tool, require_toolchain

__all__ = ["BOARDS", "Board", "get_board", "RunResult", "Project", "check_fits",
           "read_metadata", "run_artifact", "require_tool", "require_toolchain"]
