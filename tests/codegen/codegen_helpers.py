"""Shared helpers for the codegen tests: build small Relax models, compile the generated C on the
host, call it through ctypes, and compare with TVM's own LLVM build run on the Relax VM."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest



import tvm  # noqa: E402
from tvm import relax  # noqa: E402

ARM_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-O2", "-c",
             "-Wall", "-Werror"]

LEAD_PIPELINE = [
    "LegalizeOps", "AnnotateTIROpPattern", "FoldConstant", "FuseOps", "FuseTIR", "DeadCodeElimination",
]


def lead_pipeline(mod: tvm.IRModule) -> tvm.IRModule:
    """The Relax passes the lead's pipeline ends with: main becomes straight-line call_tir."""
    return tvm.transform.Sequential([getattr(relax.transform, p)() for p in LEAD_PIPELINE])(mod)


def write_sources(aot, directory: Path) -> list:
    """Write the generated files flat into ``directory``; return the .c paths."""
    directory.mkdir(parents=True, exist_ok=True)
    sources = []
    for rel, text in aot.files.items():
        path = directory / os.path.basename(rel)
        path.write_text(text)
        if path.suffix == ".c":
            sources.append(path)
    return sources


def compile_host_library(aot, directory: Path) -> ctypes.CDLL:
    """Compile the generated C with host gcc -Wall -Werror into a shared library and load it."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("host gcc not installed")
    sources = write_sources(aot, directory)
    lib = directory / "libmodel.so"
    cmd = [gcc, "-std=c99", "-O1", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror", "-shared",
           "-fPIC", "-I", str(directory), *map(str, sources), "-o", str(lib), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return ctypes.CDLL(str(lib))


def compile_cortex_m4(aot, directory: Path) -> None:
    """Compile every generated .c for Cortex-M4 (hard float) with -Wall -Werror."""
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        pytest.skip("arm-none-eabi-gcc not installed")
    for src in write_sources(aot, directory):
        obj = directory / (src.stem + ".arm.o")
        proc = subprocess.run([gcc, *ARM_FLAGS, "-I", str(directory), str(src), "-o", str(obj)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, f"{src.name}: {proc.stderr}"


def run_library(lib: ctypes.CDLL, aot, inputs: list) -> list:
    """Call tvmgen_default_run through the header's structs; return the outputs as arrays."""

    def struct(tensors):
        fields = [(t.c_name, ctypes.c_void_p) for t in tensors] or [("unused", ctypes.c_void_p)]
        return type("S", (ctypes.Structure,), {"_fields_": fields})

    in_arrays = [np.ascontiguousarray(a, dtype=t.dtype).reshape(t.shape) for a, t in zip(inputs, aot.inputs)]
    out_arrays = [np.zeros(t.shape, dtype=t.dtype) for t in aot.outputs]
    ins = struct(aot.inputs)(*[a.ctypes.data for a in in_arrays])
    outs = struct(aot.outputs)(*[a.ctypes.data for a in out_arrays])
    run = lib.tvmgen_default_run
    run.restype = ctypes.c_int32
    assert run(ctypes.byref(ins), ctypes.byref(outs)) == 0
    return out_arrays


def run_tvm_reference(mod: tvm.IRModule, inputs: list) -> list:
    """TVM's own build of the same module (LLVM, Relax VM)."""
    ex = tvm.compile(mod, target="llvm")
    vm = relax.VirtualMachine(ex, tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(np.ascontiguousarray(a)) for a in inputs])
    if isinstance(out, tvm.runtime.Tensor):
        return [out.numpy()]
    return [o.numpy() for o in out]
