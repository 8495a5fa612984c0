"""``python -m bench.onnx_qdq``: the Fashion-MNIST CNN as an ONNX QDQ model vs the same network from TFLite.

Compiles ``models/fashion_mnist/fashion_cnn_filterlet_int8.tflite`` and its ONNX QDQ exports
(``export_onnx_qdq.py``: per-channel and per-tensor) dense and with DTMM for each core, runs the
first ``--inputs`` test images on QEMU and writes ``bench/results/onnx_qdq.{md,json}``: instructions
per inference (``-icount``), flash, RAM, bit-exactness (TFLM for TFLite, onnxruntime for ONNX)
and the ONNX / TFLite instruction ratio. The ONNX models take float input and return float
output (their QuantizeLinear / DequantizeLinear run on the board); the TFLite model is int8 in
and out.

    python -m bench.onnx_qdq                  # M4, M7, M55 (~5 min on 2 cores)
    python -m bench.onnx_qdq --cores m4
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FASHION = ROOT / "models" / "fashion_mnist"
TFLITE = FASHION / "fashion_cnn_filterlet_int8.tflite"
ONNX = {"per_channel": FASHION / "fashion_cnn_filterlet_qdq_per_channel.onnx",
        "per_tensor": FASHION / "fashion_cnn_filterlet_qdq_per_tensor.onnx"}
CORES = {"m4": ("dtmm/cortex-m4", "mps2-an386"), "m7": ("dtmm/cortex-m7", "mps2-an500"),
         "m55": ("dtmm/cortex-m55", "mps3-an547")}


def _measure(model: Path, x: np.ndarray, expected: np.ndarray, target: str, board: str, mode: str, work: Path) -> dict:
    from dtmm_tvm.compiler import compile_model
    from dtmm_tvm.micro import run_artifact

    out = work / f"{model.stem}-{mode}-{board}.tar"
    compile_model(model, out, target=target, mode=mode)
    result = run_artifact(out, board, x)
    return {"instructions": int(result.instructions), "flash_bytes": int(result.flash_bytes),
            "ram_bytes": int(result.ram_bytes),
            "bit_exact": bool(np.array_equal(result.outputs.reshape(expected.shape), expected))}


def main(argv=None) -> None:
    import onnxruntime as ort

    from dtmm_tvm.reference import run_tflm

    p = argparse.ArgumentParser(prog="python -m bench.onnx_qdq", description=__doc__.splitlines()[0])
    p.add_argument("--cores", default="m4,m7,m55")
    p.add_argument("--inputs", type=int, default=4)
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = p.parse_args(argv)
    subset = np.load(FASHION / "test_subset.npz")
    x_int8 = subset["x_int8"][: args.inputs][:, None]
    x_float = (subset["x_uint8"][: args.inputs].astype(np.float32) / 255.0).transpose(0, 3, 1, 2)[:, None].copy()
    references = {"tflite": run_tflm(TFLITE.read_bytes(), x_int8)}
    for name, path in ONNX.items():
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        references[name] = np.stack([session.run(None, {"input": xi})[0] for xi in x_float])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for core in [c.strip() for c in args.cores.split(",") if c.strip()]:
            target, board = CORES[core]
            for mode in ("dense", "dtmm"):
                base = _measure(TFLITE, x_int8, references["tflite"], target, board, mode, Path(tmp))
                rows.append(dict(base, model="tflite", core=core, mode=mode, ratio=1.0))
                for name, path in ONNX.items():
                    m = _measure(path, x_float, references[name], target, board, mode, Path(tmp))
                    rows.append(dict(m, model=f"onnx_qdq_{name}", core=core, mode=mode,
                                     ratio=round(m["instructions"] / base["instructions"], 3)))
                    print(rows[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "onnx_qdq.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["# Fashion-MNIST CNN: ONNX QDQ vs TFLite int8 (QEMU, instructions per inference)", "",
             "| core | mode | model | instructions | vs TFLite | flash B | RAM B | bit-exact |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = "TFLM" if r["model"] == "tflite" else "onnxruntime"
        lines.append(f"| {r['core']} | {r['mode']} | {r['model']} | {r['instructions']} | {r['ratio']:.2f}x | "
                     f"{r['flash_bytes']} | {r['ram_bytes']} | {'yes' if r['bit_exact'] else 'NO'} ({ref}) |")
    (out / "onnx_qdq.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
