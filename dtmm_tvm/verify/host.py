"""Build a model's generated C for the host and call it: the portable kernels, run with gcc.

The C written by :func:`dtmm_tvm.codegen.build_aot` is plain C99; built for the host it takes the
micro-kernels' portable paths. :class:`HostModel` calls ``tvmgen_default_run`` through ctypes.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from ..errors import ToolchainError

HOST_CFLAGS = ["-std=c99", "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-w"]


class HostModel:
    """One generated C model built as a host shared library.

    Parameters
    ----------
    aot : dtmm_tvm.codegen.AOTModule
        The generated files and the input/output tensors.
    directory : path
        Where the sources and the library are written (must exist and be private to this model).
    """

    def __init__(self, aot, directory: str | os.PathLike):
        gcc = shutil.which(os.environ.get("CC", "gcc"))
        if gcc is None:
            raise ToolchainError("no host C compiler (gcc) found: --verify builds the generated C on the host")
        directory = Path(directory)
        sources = []
        for rel, text in aot.files.items():
            path = directory / os.path.basename(rel)
            path.write_text(text)
            if path.suffix == ".c":
                sources.append(str(path))
        library = directory / "libmodel.so"
        proc = subprocess.run([gcc, *HOST_CFLAGS, "-I", str(directory), *sources, "-o", str(library), "-lm"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            first = next((l for l in proc.stderr.splitlines() if "error" in l), proc.stderr.strip()[:200])
            raise ToolchainError(f"the generated C does not build on the host: {first}")
        self.inputs = list(aot.inputs)
        self.outputs = list(aot.outputs)
        self._lib = ctypes.CDLL(str(library))
        self._run = self._lib.tvmgen_default_run
        self._run.restype = ctypes.c_int32

        def struct(tensors):
            fields = [(t.c_name, ctypes.c_void_p) for t in tensors] or [("unused", ctypes.c_void_p)]
            return type("S", (ctypes.Structure,), {"_fields_": fields})

        self._in_struct = struct(self.inputs)
        self._out_struct = struct(self.outputs)

    def run(self, inputs: list) -> list:
        """Run every stacked input; returns one ``(N, *shape)`` array per output.

        Parameters
        ----------
        inputs : list of numpy.ndarray
            One ``(N, *shape)`` array per model input, in the C interface's order.
        """
        n = int(np.asarray(inputs[0]).shape[0])
        results = [np.zeros((n,) + tuple(t.shape), dtype=t.dtype) for t in self.outputs]
        for i in range(n):
            ins = [np.ascontiguousarray(np.asarray(a[i]), dtype=t.dtype).reshape(t.shape)
                   for a, t in zip(inputs, self.inputs)]
            outs = [np.zeros(t.shape, dtype=t.dtype) for t in self.outputs]
            status = self._run(ctypes.byref(self._in_struct(*[a.ctypes.data for a in ins])),
                               ctypes.byref(self._out_struct(*[a.ctypes.data for a in outs])))
            if status != 0:
                raise ToolchainError(f"the host build of the model returned {status} on input {i}")
            for k, out in enumerate(outs):
                results[k][i] = out
        return results
