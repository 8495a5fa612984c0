"""Measure the compiler's peak memory on a ~10 MB int8 model (not a test; prints one line).

    .venv/bin/python tests/hardening/measure_compiler_memory.py [--layers 4] [--width 1600]

The model (written to a temporary directory) is a chain of int8 FULLY_CONNECTED layers with
``width x width`` random weights, built with the TFLite schema's object API. It does not fit any
board's 4 MiB flash, so ``dtmm compile`` ends in the ResourceError naming the flash after the
whole pipeline ran: the figure is the peak RSS of that whole run (``ru_maxrss`` of the child).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def fc_chain(layers: int, width: int) -> bytes:
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s

    rng = np.random.default_rng(0)
    model = s.ModelT()
    model.version = 3
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = 9  # FULLY_CONNECTED
    model.operatorCodes = [code]
    model.buffers = [s.BufferT()]
    graph = s.SubGraphT()
    graph.tensors, graph.operators = [], []

    def tensor(name, shape, dtype, scale, data=None):
        t = s.TensorT()
        t.name, t.shape, t.type = name.encode(), list(shape), dtype
        q = s.QuantizationParametersT()
        q.scale, q.zeroPoint = [float(scale)], [0]
        t.quantization = q
        buf = s.BufferT()
        if data is not None:
            buf.data = np.frombuffer(data.tobytes(), np.uint8)
        model.buffers.append(buf)
        t.buffer = len(model.buffers) - 1
        graph.tensors.append(t)
        return len(graph.tensors) - 1

    x = tensor("input", (1, width), 9, 0.05)
    graph.inputs = [x]
    for k in range(layers):
        w = tensor(f"w{k}", (width, width), 9, 0.01, rng.integers(-127, 128, size=(width, width), dtype=np.int8))
        b = tensor(f"b{k}", (width,), 2, 0.05 * 0.01, rng.integers(-1000, 1000, size=width, dtype=np.int32))
        y = tensor(f"fc{k}", (1, width), 9, 0.05)
        op = s.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = 0, [x, w, b], [y]
        op.builtinOptionsType = s.BuiltinOptions.FullyConnectedOptions
        op.builtinOptions = s.FullyConnectedOptionsT()
        graph.operators.append(op)
        x = y
    graph.outputs = [x]
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=1600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "fc_chain.tflite"
        model.write_bytes(fc_chain(args.layers, args.width))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "dtmm_tvm.cli.main", "compile", str(model), "-o",
                               str(Path(tmp) / "out.tar")], env=env, capture_output=True, text=True)
        seconds = time.monotonic() - started
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"model {model.stat().st_size / 1e6:.1f} MB ({args.layers} FC {args.width}x{args.width} int8): "
              f"peak RSS {peak_mib:.0f} MiB, {seconds:.0f} s, exit {proc.returncode}: "
              f"{(proc.stderr.strip().splitlines() or [''])[-1][:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
