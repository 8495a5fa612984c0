"""Shared by the kernel tests: the single-op fixtures and a host (llvm) build of a PrimFunc."""

from pathlib import Path

import numpy as np
import tvm

from dtmm_tvm.frontend.tflite_reader import read_tflite

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ops"


def fixtures_of(opcode: str, prefix: str = "conv_") -> list[str]:
    """Names of the single-op fixtures whose first operator is ``opcode``."""
    return sorted(p.name for p in FIXTURES.glob(f"{prefix}*.tflite") if read_tflite(p).operators[0].opcode == opcode)


def build(func):
    """Build a destination-passing PrimFunc for the host."""
    return tvm.compile(tvm.IRModule({"main": func}), target="llvm")["main"]


def run(kernel, *arrays):
    """Call a destination-passing kernel; the last array is the output."""
    args = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in arrays]
    kernel(*args)
    return args[-1].numpy()
