"""Hand-written C micro-kernels that TIR kernels call with ``T.call_extern`` (CMSIS-NN style).

The hook API (how a kernel builder uses a C micro-kernel)
=========================================================
1. Put the C source in this folder as ``dtmm_tvm/kernels/<name>.c`` where ``<name>`` matches
   ``[a-z][a-z0-9_]*`` (by convention ``dtmm_<what>_s8``; one kernel per file, the exported
   functions start with ``<name>``). Declare every exported function in the ONE shared header
   ``dtmm_kernels.h`` (this folder; add your own section, keep others' sections untouched) and
   ``#include "dtmm_kernels.h"`` from the .c file. Other ``*.h`` files in this folder are
   shipped too, so the shared header may include per-owner headers.
   ISA paths live inside the file, chosen at C compile time:
   ``#if defined(DTMM_ISA_MVE)`` (arm_mve.h) / ``#elif defined(DTMM_ISA_DSP)``
   (arm_acle.h) / ``#else`` portable C (``dtmm_kernels_isa.h`` defines exactly one; in an
   archive it is the archive's ISA, see :mod:`dtmm_tvm.codegen.isa_guard`, never the build's
   ``__ARM_FEATURE_*``). The portable path is what host tests run.
   No malloc, no libc beyond <stdint.h>/<string.h>; scratch comes from the caller (allocate it
   in TIR with ``T.alloc_buffer``/``T.decl_buffer`` - codegen turns allocations > 16 bytes into
   arena scratch); where a kernel needs scratch, export ``<name>_get_buffer_size`` and mirror
   it in Python.
2. In the TIR builder call it with ``T.call_extern("void", "<function>", args...)`` (pointers via
   ``T.address_of(buf[i])``) and attach the file names to the PrimFunc::

       from dtmm_tvm.kernels import with_c_kernels
       func = with_c_kernels(func, ["dtmm_conv_block_s8"])     # attr "dtmm.c_kernels"

   (merges with names already present; the attribute value is a list of str).
3. Codegen does the rest (:mod:`dtmm_tvm.codegen`): when any called PrimFunc has
   ``"dtmm.c_kernels"``, the generated kernels C (``default_lib0.c``) gets
   ``#include "dtmm_kernels.h"``, the archive gets ``codegen/host/include/dtmm_kernels.h`` (and
   the other headers of this folder) and ``codegen/host/src/<name>.c`` for each named kernel.
   Unknown names raise :class:`dtmm_tvm.errors.ModelError` at codegen time.

Pick the ISA for a builder with :func:`target_isa` (``"mve"`` / ``"dsp"`` / ``"c"`` from
``tvm.target.Target.current()`` ``feature.has_mve`` / ``feature.has_dsp``) - for the buffer sizes
and default schedules; the archive records it and its C takes that path (or refuses to build).
The shared header also has ``dtmm_requantize()`` (static inline, TFLM's double rounding, the
same arithmetic as :mod:`dtmm_tvm.ops.fixed_point`) for anyone's kernel to use.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = [
    "ATTR",
    "HEADER",
    "KERNEL_DIR",
    "available_kernels",
    "c_kernel_names",
    "header_files",
    "kernel_source",
    "target_isa",
    "with_c_kernels",
]

#: PrimFunc attribute naming the C micro-kernel files a kernel calls (list of str).
ATTR = "dtmm.c_kernels"
#: The shared header every kernel file declares its functions in.
HEADER = "dtmm_kernels.h"
KERNEL_DIR = Path(__file__).resolve().parent
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def available_kernels() -> list[str]:
    """Names of every C micro-kernel shipped in this folder (file stems of ``*.c``)."""
    return sorted(p.stem for p in KERNEL_DIR.glob("*.c"))


def kernel_source(name: str) -> str:
    """The C source of kernel ``name``; KeyError-like ModelError if unknown."""
    from ..errors import ModelError

    if not _NAME.match(str(name)) or not (KERNEL_DIR / f"{name}.c").is_file():
        raise ModelError(f"unknown C micro-kernel {name!r}; available: {available_kernels()}")
    return (KERNEL_DIR / f"{name}.c").read_text()


def header_files() -> dict[str, str]:
    """File name -> text of every header in this folder (``dtmm_kernels.h`` first)."""
    files = {HEADER: (KERNEL_DIR / HEADER).read_text()}
    for p in sorted(KERNEL_DIR.glob("*.h")):
        files.setdefault(p.name, p.read_text())
    return files


def c_kernel_names(func) -> list[str]:
    """The ``"dtmm.c_kernels"`` names of a PrimFunc (empty list when absent)."""
    attrs = func.attrs
    if attrs is None or ATTR not in attrs:
        return []
    return [str(v) for v in attrs[ATTR]]


def with_c_kernels(func, names):
    """Return ``func`` with ``names`` added to its ``"dtmm.c_kernels"`` attribute."""
    merged = c_kernel_names(func)
    for n in names:
        kernel_source(n)  # validate early, in the builder
        if n not in merged:
            merged.append(str(n))
    return func.with_attr(ATTR, merged)


def target_isa(target=None) -> str:
    """``"mve"``, ``"dsp"`` or ``"c"`` for ``target`` (default ``Target.current()``)."""
    import tvm

    if target is None:
        target = tvm.target.Target.current(allow_none=True)
    if target is None:
        return "c"
    attrs = target.attrs
    if bool(attrs.get("feature.has_mve", False)):
        return "mve"
    if bool(attrs.get("feature.has_dsp", False)):
        return "dsp"
    return "c"
