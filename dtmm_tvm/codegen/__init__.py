"""Plain C code generation: PrimFunc kernels, liveness-packed arena, AOT runner, MLF archive.

Public API
----------
- :func:`build_c_kernels`, :func:`primfunc_to_c` (c_source): PrimFuncs -> plain C.
- :func:`plan_arena` (planner): pack buffers by liveness into one arena.
- :func:`build_aot` (aot): straight-line Relax ``main`` -> the four C/H files.
- :func:`write_archive` (mlf): the ``.tar`` of docs/architecture.md with metadata.json.
"""

from .aot import AOTModule, TensorInfo, build_aot
from .c_source import (
    STACK_SCRATCH_THRESHOLD_BYTES,
    CKernel,
    CSource,
    ScratchBuffer,
    build_c_kernels,
    lowering_passes,
    primfunc_to_c,
)
from .mlf import archive_bytes, build_metadata, read_metadata, write_archive
from .planner import ArenaPlan, BufferRequest, Placement, plan_arena, validate_plan

__all__ = [
    "AOTModule",
    "ArenaPlan",
    "BufferRequest",
    "CKernel",
    "CSource",
    "Placement",
    "STACK_SCRATCH_THRESHOLD_BYTES",
    "ScratchBuffer",
    "TensorInfo",
    "archive_bytes",
    "build_aot",
    "build_c_kernels",
    "build_metadata",
    "lowering_passes",
    "plan_arena",
    "primfunc_to_c",
    "read_metadata",
    "validate_plan",
    "write_archive",
]
