"""The README's main command: the bundled Fashion-MNIST model before and after the DTMM pruner,
compiled (the unpruned model dense; the pruned one dense and with DTMM), run on an emulated
Cortex-M4, checked against TFLM, figures side by side.

``python -m dtmm_tvm.demo [--count N] [--board mps2-an386] [--target dtmm/cortex-m4]``
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
from pathlib import Path

import numpy as np

from .errors import DTMMError
from .resources import bundled_model_dir

MODEL_DIR = bundled_model_dir()
MODEL = MODEL_DIR / "fashion_cnn_filterlet_int8.tflite"
UNPRUNED = MODEL_DIR / "fashion_cnn_dense_int8.tflite"
SUBSET = MODEL_DIR / "test_subset.npz"
DEBIAN_TEST = Path("/usr/share/datasets/fashion-mnist")


def load_test_images(count: int, scale: float, zero_point: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Real Fashion-MNIST test images quantized like the model's input, with their labels.

    Uses Debian's dataset-fashion-mnist (10000 test images) when installed, else the 200 images
    bundled with the model.
    """
    images_file = next(iter(sorted(DEBIAN_TEST.glob("t10k-images*"))), None) if DEBIAN_TEST.exists() else None
    labels_file = next(iter(sorted(DEBIAN_TEST.glob("t10k-labels*"))), None) if DEBIAN_TEST.exists() else None
    if images_file and labels_file:
        opener = gzip.open if images_file.suffix == ".gz" else open
        with opener(images_file, "rb") as f:
            pixels = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)
        with (gzip.open if labels_file.suffix == ".gz" else open)(labels_file, "rb") as f:
            labels = np.frombuffer(f.read(), np.uint8, offset=8)
        source = f"Debian dataset-fashion-mnist, first {min(count, len(labels))} test images"
    else:
        subset = np.load(SUBSET)
        pixels, labels = subset["x_uint8"].reshape(-1, 28, 28, 1), subset["y"]
        source = f"bundled test subset ({min(count, len(labels))} images)"
    pixels, labels = pixels[:count], labels[:count]
    real = pixels.astype(np.float32) / 255.0
    quantized = np.clip(np.round(real / scale) + zero_point, -128, 127).astype(np.int8)
    return quantized, labels.astype(np.int64), source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="test images to run (default 1000)")
    parser.add_argument("--target", default="dtmm/cortex-m4")
    parser.add_argument("--board", default="mps2-an386")
    parser.add_argument("--model", default=str(MODEL))
    args = parser.parse_args(argv)
    try:
        return _demo(args)
    except DTMMError as err:
        print(f"demo: error: {err}", file=sys.stderr)
        return 2


def _demo(args) -> int:
    from .compiler import compile_model
    from .micro import run_artifact
    from .reference import run_tflm
    from .verify import compare, verify_model

    model_path = Path(args.model)
    # The bundled model comes with the unpruned network it was pruned from: the user's before.
    bundled = model_path == MODEL and UNPRUNED.exists()
    which = "pruned" if bundled else "given"  # a --model of the user's own: no claim about how it was made
    builds = [(which, model_path, "dense"), (which, model_path, "dtmm")]
    if bundled:
        builds.insert(0, ("unpruned", UNPRUNED, "dense"))
    with tempfile.TemporaryDirectory(prefix="dtmm-demo-") as tmp:
        results = []
        inputs = None
        for which, path, mode in builds:
            artifact = Path(tmp) / f"{which}-{mode}.tar"
            if mode == "dtmm":  # what `dtmm compile --verify` does: the C on the host against TFLM
                print(f"verifying {path.name} ({mode}) on the host against TFLM ...", flush=True)
                report = verify_model(path, mode=mode, workdir=tmp, target=args.target)
                print(f"  {report.summary()}", flush=True)
            print(f"compiling {path.name} ({mode}) for {args.target} ...", flush=True)
            metadata = compile_model(path, artifact, target=args.target, mode=mode)
            if inputs is None:  # every build takes the same images, quantized like the model's input
                spec = metadata["inputs"][0]
                quant = spec["quantization"]
                inputs, labels, source = load_test_images(args.count, quant["scale"], quant["zero_point"])
                inputs = inputs.reshape((len(inputs),) + tuple(spec["shape"]))
            print(f"running {len(inputs)} images on {args.board} (QEMU, -icount) ...", flush=True)
            run = run_artifact(artifact, args.board, inputs)
            print("running TFLM (host reference) ...", flush=True)
            results.append((which, mode, metadata, run, run_tflm(path.read_bytes(), inputs)))

    def accuracy(outputs) -> float:
        return float((outputs.reshape(len(labels), -1).argmax(axis=1) == labels).mean())

    rows = []
    for which, mode, metadata, run, reference in results:
        record = run.to_dict()
        mismatches = compare(run.outputs, reference)["mismatches"]
        rows.append({
            "build": f"{which} model, " + ("TVM dense (--dense)" if mode == "dense" else "TVM + DTMM"),
            "flash": record["flash_bytes"],
            "model flash": record["flash"].get("model_code", 0) + record["flash"].get("model_constants", 0),
            "weights+index": metadata["constants_bytes"],
            "RAM": record["ram_bytes"],
            "arena": metadata["arena"]["bytes"],
            "instructions": record["instructions"],
            "accuracy": f"{accuracy(run.outputs):.2%}",
            "TFLM accuracy": f"{accuracy(reference):.2%}",
            "bit-exact vs TFLM": "yes" if mismatches == 0 else f"NO ({mismatches} values differ)",
        })
    columns = ["build", "flash", "model flash", "weights+index", "RAM", "arena", "instructions", "accuracy",
               "TFLM accuracy", "bit-exact vs TFLM"]
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print()
    print(f"{model_path.name} on {args.board} ({args.target}); {source}")
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))
    before, after = rows[0], rows[-1]
    print()
    print(f"{after['build']} vs {before['build']}: flash {after['flash'] / before['flash']:.2f}x "
          f"(weights+index {after['weights+index'] / before['weights+index']:.2f}x), instructions "
          f"{after['instructions'] / before['instructions']:.2f}x (instructions per inference from QEMU -icount; "
          "flash and RAM from the ELF)")
    exact = all(r["bit-exact vs TFLM"] == "yes" for r in rows)
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
