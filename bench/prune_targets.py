"""Measure the pruner's targets (issue 7) on Fashion-MNIST: a pruned model against its unpruned
int8 model, compiled for ``dtmm/cortex-m4`` and run on QEMU (``mps2-an386``).

    .venv/bin/python -m bench.prune_targets --model vgg  --flash-fraction 0.25   # VGG-style target
    .venv/bin/python -m bench.prune_targets --model demo --pruned models/fashion_mnist/fashion_cnn_filterlet_int8.tflite \
        --dense models/fashion_mnist/fashion_cnn_dense_int8.tflite                # the demo model's figures

``--model vgg`` trains the VGG-style CNN (seeded), prunes it with :func:`dtmm_tvm.pruning.prune`
and times training and prune + fine-tune separately. Both ways then compile the unpruned int8
model (``--dense`` build) and the pruned one (DTMM build, and its own ``--dense`` build), run
``--images`` test images on the board (instructions per inference, flash from the ELF, the
model's stored constants from metadata.json), and evaluate TFLM accuracy on the whole test set.
Results go to ``bench/results/prune_<model>.json`` (printed as a table).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"


def vgg_model():
    """VGG-style: 3 stages of two 3x3 convs (+BN, ReLU) and a max pool, flatten, dense 10."""
    import keras

    L = keras.layers
    inp = keras.Input((28, 28, 1), name="input")
    x = inp
    for stage, width in enumerate((16, 32, 64)):
        for j in range(2):
            x = L.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv{stage + 1}_{j + 1}")(x)
            x = L.BatchNormalization(name=f"bn{stage + 1}_{j + 1}")(x)
            x = L.ReLU(name=f"relu{stage + 1}_{j + 1}")(x)
        x = L.MaxPooling2D(2, name=f"pool{stage + 1}")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dropout(0.3, name="drop")(x)
    out = L.Dense(10, activation="softmax", name="fc")(x)
    return keras.Model(inp, out, name="vgg_fashion")


def measure(tflite: bytes, x_int8: np.ndarray, mode: str, tmp: Path, name: str) -> dict:
    from dtmm_tvm.compiler import compile_model
    from dtmm_tvm.micro import run_artifact

    path = tmp / f"{name}.tflite"
    path.write_bytes(tflite)
    art = tmp / f"{name}-{mode}.tar"
    meta = compile_model(path, art, target="dtmm/cortex-m4", mode=mode, force=True)
    spec = meta["inputs"][0]
    res = run_artifact(art, "mps2-an386", x_int8.reshape((len(x_int8),) + tuple(spec["shape"])), timeout_s=3600)
    return {"instructions": int(res.instructions), "flash_bytes": int(res.flash_bytes),
            "constants_bytes": int(meta["constants_bytes"]), "arena_bytes": int(meta["arena"]["bytes"]),
            "outputs": res.outputs}


def predicted_vs_measured(tflite: bytes, x_int8: np.ndarray, target: str, tmp: Path) -> dict:
    """The cost model's per-layer prediction (:func:`dtmm_tvm.costmodel.predict_artifact`) next to
    the profiled run's per-layer instructions, for the DTMM build on ``target``'s board."""
    from dtmm_tvm.compiler import compile_model
    from dtmm_tvm.costmodel import predict_artifact
    from dtmm_tvm.micro import run_artifact
    from dtmm_tvm.micro.profile import profile_rows
    from dtmm_tvm.target import DEFAULT_BOARD

    path = tmp / "m.tflite"
    path.write_bytes(tflite)
    meta = compile_model(path, tmp / "m.tar", target=target, force=True)
    spec = meta["inputs"][0]
    res = run_artifact(tmp / "m.tar", DEFAULT_BOARD[target], x_int8.reshape((1,) + tuple(spec["shape"])),
                       timeout_s=3600, profile=True)
    prof = profile_rows(meta, res)
    pred = predict_artifact(meta, target)
    layers = []
    for r, p in zip(prof["rows"], pred["layers"]):
        layers.append({"layer": r["layer"], "op": r["op"], "format": r["format"], "measured": r["instructions"],
                       "predicted": p["instructions"]})
    run_plain = run_artifact(tmp / "m.tar", DEFAULT_BOARD[target], x_int8.reshape((1,) + tuple(spec["shape"])),
                             timeout_s=3600)
    total = int(run_plain.instructions)
    return {"predicted_total": pred["instructions"], "measured_total": total,
            "error": (pred["instructions"] - total) / total, "unpriced": pred["unpriced"],
            "profiled_layers_total": int(prof["layers_instructions"]), "layers": layers}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["vgg", "demo"], required=True)
    ap.add_argument("--pruned", type=Path, help="demo: the pruned .tflite")
    ap.add_argument("--dense", type=Path, help="demo: the unpruned int8 .tflite")
    ap.add_argument("--epochs", type=int, default=8, help="vgg: dense training epochs")
    ap.add_argument("--finetune-epochs", type=int, default=4)
    ap.add_argument("--flash-fraction", type=float, default=0.25)
    ap.add_argument("--instructions-fraction", type=float, default=0.33)
    ap.add_argument("--speed-weight", type=float, default=0.05)
    ap.add_argument("--schedule", default="gradual")
    ap.add_argument("--images", type=int, default=200, help="test images run on the board")
    ap.add_argument("--dense-keras", type=Path, default=None, help="vgg: reuse/save the trained dense model")
    ap.add_argument("--distill", type=float, default=0.7, help="vgg: distillation weight in fine-tuning")
    ap.add_argument("--lr", type=float, default=1e-3, help="vgg: fine-tuning learning rate")
    ap.add_argument("--batch", type=int, default=64, help="vgg: fine-tuning batch size")
    ap.add_argument("--sensitivity-images", type=int, default=1000,
                    help="vgg: validation images of the search's per-layer sensitivity (0: importance share)")
    ap.add_argument("--max-filter-ratio", type=float, default=0.9,
                    help="vgg: the largest share of any layer's filters the search may remove")
    ap.add_argument("--profile-targets", default="dtmm/cortex-m4,dtmm/cortex-m55",
                    help="targets whose per-layer profile (measured) is compared with the cost model's prediction")
    args = ap.parse_args()

    from dtmm_tvm.pruning.data import fashion_mnist
    from dtmm_tvm.reference import run_tflm
    from dtmm_tvm.frontend.tflite_reader import read_tflite

    data = fashion_mnist()
    # The wall time is only comparable on an idle machine: record how busy it was.
    record: dict = {"model": args.model, "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}
    if args.model == "vgg":
        import keras

        from dtmm_tvm.pruning import Budget, prune
        import importlib.util

        spec = importlib.util.spec_from_file_location("demo_train", ROOT / "models" / "fashion_mnist" / "train.py")
        demo_train = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(demo_train)
        train_dense = demo_train.train_dense

        keras.utils.set_random_seed(1234)
        t0 = time.time()
        c0 = time.process_time()  # CPU seconds of all threads: the machine is shared
        if args.dense_keras and args.dense_keras.exists():
            model = keras.models.load_model(args.dense_keras)
        else:
            model = vgg_model()
            train_dense(model, data, args.epochs)
            if args.dense_keras:
                model.save(args.dense_keras)
        record["train_dense_seconds"] = round(time.time() - t0, 1)
        record["train_dense_cpu_seconds"] = round(time.process_time() - c0, 1)
        t1, c1 = time.time(), time.process_time()
        budget = Budget(flash_fraction=args.flash_fraction, instructions_fraction=args.instructions_fraction)
        result = prune(model, data, budget, "dtmm/cortex-m4", epochs=args.finetune_epochs,
                       schedule=args.schedule, seed=1234, objective_weight=args.speed_weight,
                       distill=args.distill, lr=args.lr, max_filter_ratio=args.max_filter_ratio,
                       batch=args.batch, sensitivity_images=args.sensitivity_images,
                       progress=lambda e, i: print(f"  {e} {i.get('epoch', '')} {i.get('val_accuracy', '')}",
                                                   flush=True) if e != "search" else None)
        record["prune_finetune_seconds"] = round(time.time() - t1, 1)
        record["prune_finetune_cpu_seconds"] = round(time.process_time() - c1, 1)
        record["cores"] = os.cpu_count()
        record["load_average_after_prune"] = [round(v, 2) for v in os.getloadavg()]
        record["prune_report"] = result.report
        pruned, dense = result.tflite, result.dense_tflite
    else:
        pruned, dense = args.pruned.read_bytes(), args.dense.read_bytes()

    def quant(tfl):
        g = read_tflite(tfl, name="m")
        t = g.tensor(g.inputs[0])
        return np.clip(np.round(data.x_test / float(t.scale[0])) + int(t.zero_point[0]), -128, 127).astype(np.int8)

    acc = {}
    for name, tfl in (("dense", dense), ("pruned", pruned)):
        xq = quant(tfl)
        out = run_tflm(tfl, xq)
        acc[name] = float(np.mean(out.reshape(len(xq), -1).argmax(1) == data.y_test))
    record["int8_accuracy_tflm"] = acc
    with tempfile.TemporaryDirectory(prefix="dtmm-prune-bench-") as tmp:
        builds = {}
        for label, tfl, mode in (("unpruned, dense build", dense, "dense"), ("pruned, dense build", pruned, "dense"),
                                 ("pruned, DTMM build", pruned, "dtmm")):
            xq = quant(tfl)[: args.images]
            m = measure(tfl, xq, mode, Path(tmp), label.split(",")[0])
            out = m.pop("outputs")
            m["board_accuracy"] = float(np.mean(out.reshape(len(xq), -1).argmax(1) == data.y_test[: args.images]))
            builds[label] = m
            print(label, m, flush=True)
    record["builds"] = builds
    base = builds["unpruned, dense build"]
    dtmm = builds["pruned, DTMM build"]
    pdense = builds["pruned, dense build"]
    record["ratios"] = {
        "flash_constants_vs_unpruned_dense": dtmm["constants_bytes"] / base["constants_bytes"],
        "flash_elf_vs_unpruned_dense": dtmm["flash_bytes"] / base["flash_bytes"],
        "instructions_vs_unpruned_dense": dtmm["instructions"] / base["instructions"],
        "flash_elf_vs_pruned_dense_build": dtmm["flash_bytes"] / pdense["flash_bytes"],
        "instructions_vs_pruned_dense_build": dtmm["instructions"] / pdense["instructions"],
        "accuracy_drop_points": 100 * (acc["dense"] - acc["pruned"]),
    }
    print(json.dumps(record["ratios"], indent=1))
    record["cost_model_vs_measured"] = {}
    for target in [t for t in args.profile_targets.split(",") if t]:
        for label, tfl in (("unpruned", dense), ("pruned", pruned)):
            with tempfile.TemporaryDirectory(prefix="dtmm-prune-bench-") as tmp:
                row = predicted_vs_measured(tfl, quant(tfl)[:1], target, Path(tmp))
            record["cost_model_vs_measured"][f"{target} {label}"] = row
            print(f"{target} {label}: predicted {row['predicted_total']} measured {row['measured_total']} "
                  f"({row['error']:+.1%})", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"prune_{args.model}.json"
    out.write_text(json.dumps(record, indent=1, default=float) + "\n")
    print(f"wrote {out}")
    return 0


def _main() -> int:
    from dtmm_tvm.errors import DTMMError

    try:
        return main()
    except DTMMError as err:  # a refused budget, bad data, ...: one line, nothing written
        print(f"prune_targets: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_main())
