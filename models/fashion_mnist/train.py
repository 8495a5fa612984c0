"""Train the Fashion-MNIST demo CNN, then make the demo model with the DTMM pruner.

1. Train a small CNN on the real Fashion-MNIST (Debian's IDX gz files; 55,000 train, the last
   5,000 of train as validation, 10,000 test), Adam with cosine decay, best validation epoch kept.
2. ``dtmm_tvm.pruning.prune``: Taylor importance on the validation split, simulated annealing for
   per-layer filter and filterlet ratios under a flash budget (a fraction of the dense model's,
   priced by the compiler's cost model for ``dtmm/cortex-m4``), physically smaller model,
   fine-tuning with masks enforced (gradual, polynomial), full-int8 export (per-channel, batch 1)
   with the sparsity check, compile and budget check on the artifact.
3. Evaluate both int8 models with TFLM on all 10,000 test images; write the files below only
   with ``--write`` (they are the bundled demo model).

Needs the ``[train]`` extra (TensorFlow). Run from the repository root:
``.venv/bin/python models/fashion_mnist/train.py --write``.

Outputs (next to this file): ``fashion_cnn_filterlet_int8.tflite``, ``fashion_cnn_dense_int8.tflite``,
``training_report.json``, ``test_subset.npz``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
SEED = 1234


def build_model():
    """The demo CNN: 4 convs (3x3), global average pool, dense 10, softmax."""
    import keras

    L = keras.layers
    inp = keras.Input((28, 28, 1), name="input")
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inp)
    x = L.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="conv3")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.Conv2D(64, 3, padding="same", activation="relu", name="conv4")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(10, name="fc")(x)
    out = L.Softmax(name="softmax")(x)
    return keras.Model(inp, out, name="fashion_cnn")


def train_dense(model, data, epochs: int, batch: int = 64, lr: float = 2e-3):
    import keras

    from dtmm_tvm.pruning.finetune import accuracy

    steps = epochs * int(np.ceil(len(data.x_train) / batch))
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps, alpha=0.05)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    best, weights = -1.0, None
    for epoch in range(epochs):
        model.fit(data.x_train, data.y_train, batch_size=batch, epochs=1, verbose=0)
        acc = accuracy(model, data.x_val, data.y_val)
        print(f"  dense epoch {epoch + 1}/{epochs}: val acc {acc:.4f}", flush=True)
        if acc > best:
            best, weights = acc, model.get_weights()
    model.set_weights(weights)


def load_dense_from_tflite(model, path: Path) -> None:
    """Set ``model``'s weights to the dequantized weights of an int8 .tflite of the same network
    (CONV_2D and FULLY_CONNECTED in graph order; per-channel scales; bias scale = input scale x
    weight scale), so pruning can start from the bundled dense model without retraining it."""
    from dtmm_tvm.frontend.tflite_reader import read_tflite

    g = read_tflite(path)
    layers = [l for l in model.layers if type(l).__name__ in ("Conv2D", "Dense")]
    ops = [op for op in g.operators if op.opcode in ("CONV_2D", "FULLY_CONNECTED")]
    if len(ops) != len(layers):
        raise SystemExit(f"{path}: {len(ops)} conv/FC ops, the Keras model has {len(layers)}")
    for layer, op in zip(layers, ops):
        w, b, x = g.tensor(op.inputs[1]), g.tensor(op.inputs[2]), g.tensor(op.inputs[0])
        scale = w.scale.astype(np.float64)
        wf = w.data.astype(np.float64) * scale.reshape((-1,) + (1,) * (w.data.ndim - 1))
        bf = b.data.astype(np.float64) * (float(x.scale[0]) * scale)
        kernel = wf.transpose(1, 2, 3, 0) if op.opcode == "CONV_2D" else wf.T
        layer.set_weights([kernel.astype(np.float32), bf.astype(np.float32)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6, help="dense training epochs")
    ap.add_argument("--finetune-epochs", type=int, default=10, help="fine-tuning epochs after pruning")
    ap.add_argument("--flash-fraction", type=float, default=0.45, help="flash budget / dense model flash")
    ap.add_argument("--instructions-fraction", type=float, default=0.5,
                    help="latency budget / dense model's predicted instructions")
    ap.add_argument("--speed-weight", type=float, default=0.05,
                    help="small: prune only as far as the budgets need")
    ap.add_argument("--guard", type=float, default=0.9)
    ap.add_argument("--distill", type=float, default=0.7,
                    help="weight of the unpruned model's softened outputs in the fine-tuning loss")
    ap.add_argument("--temperature", type=float, default=4.0, help="distillation temperature")
    ap.add_argument("--importance-weight", type=float, default=1.0)
    ap.add_argument("--dense-keras", type=Path, default=None,
                    help="reuse (or, if missing, save) the trained dense model here")
    ap.add_argument("--dense-from", type=Path, default=None,
                    help="start from this int8 .tflite of the same network (dequantized) instead of training")
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--write", action="store_true", help="write the model files into --out")
    args = ap.parse_args()

    import keras

    from dtmm_tvm.pruning import Budget, prune
    from dtmm_tvm.pruning.data import fashion_mnist
    from dtmm_tvm.pruning.finetune import accuracy

    keras.utils.set_random_seed(SEED)
    t0 = time.time()
    data = fashion_mnist()
    if args.dense_keras and args.dense_keras.exists():
        model = keras.models.load_model(args.dense_keras)
        print(f"dense model from {args.dense_keras}")
    elif args.dense_from:
        model = build_model()
        load_dense_from_tflite(model, args.dense_from)
        print(f"dense model: the dequantized weights of {args.dense_from}")
    else:
        model = build_model()
        print(f"training the dense model ({args.epochs} epochs)", flush=True)
        train_dense(model, data, args.epochs)
        if args.dense_keras:
            model.save(args.dense_keras)
    t_dense = time.time() - t0
    print(f"float dense test accuracy {accuracy(model, data.x_test, data.y_test):.4f}", flush=True)

    def progress(event, info):
        if event == "epoch":
            print(f"  fine-tune epoch {info['epoch']}/{info['total']}: ratio x{info['fraction']:.2f}, "
                  f"loss {info['loss']:.4f}, val acc {info['val_accuracy']:.4f}", flush=True)
        elif event == "search" and info["step"] == info["total"]:
            c = info["cost"]
            print(f"  search done: {c.instructions} predicted instructions, {c.flash_bytes} B flash", flush=True)
        elif event != "search":
            print(f"  {event} ...", flush=True)

    t1 = time.time()
    budget = Budget(flash_fraction=args.flash_fraction, instructions_fraction=args.instructions_fraction)
    from dtmm_tvm.errors import DTMMError

    try:
        result = prune(model, data, budget, "dtmm/cortex-m4", epochs=args.finetune_epochs, schedule="gradual",
                       distill=args.distill, temperature=args.temperature, guard=args.guard, importance_weight=args.importance_weight,
                       objective_weight=args.speed_weight, seed=SEED, progress=progress)
    except DTMMError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        rep = getattr(err, "report", None)
        if rep:
            print(json.dumps({k: rep.get(k) for k in ("accuracy", "predicted", "compiled", "budget_checked")},
                             indent=1, default=float))
        return 2
    t_prune = time.time() - t1
    rep = result.report
    rep["train_seconds"] = {"dense": round(t_dense, 1), "prune_and_finetune": round(t_prune, 1)}
    rep["architecture"] = ("28x28x1 -> conv3x3 16 relu -> conv3x3 32 s2 relu -> conv3x3 32 relu -> maxpool2 -> "
                           "conv3x3 64 relu -> mean(H,W) -> dense 10 -> softmax")
    rep["dataset"] = ("Fashion-MNIST (Debian dataset-fashion-mnist IDX files), 55000 train / 5000 validation "
                      "(last of train) / 10000 test")
    rep["seed"] = SEED
    print(json.dumps({k: rep[k] for k in ("accuracy", "predicted", "compiled", "plan")}, indent=1, default=float))
    if args.write:
        from dtmm_tvm.frontend.tflite_reader import read_tflite

        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "fashion_cnn_filterlet_int8.tflite").write_bytes(result.tflite)
        (args.out / "fashion_cnn_dense_int8.tflite").write_bytes(result.dense_tflite)
        g = read_tflite(result.tflite, name="pruned")
        t = g.tensor(g.inputs[0])
        scale, zp = float(t.scale[0]), int(t.zero_point[0])
        n_sub = 200
        x8 = np.round(data.x_test[:n_sub] * 255).astype(np.uint8)
        xq = np.clip(np.round(data.x_test[:n_sub] / scale) + zp, -128, 127).astype(np.int8)
        from dtmm_tvm.reference import run_tflm

        sub_acc = float(np.mean(run_tflm(result.tflite, xq).reshape(n_sub, -1).argmax(1) == data.y_test[:n_sub]))
        rep["accuracy"]["int8_pruned_tflm_test_subset_200"] = sub_acc
        from dtmm_tvm.sparsity import analyze_filterlets

        rep["filterlet_sparsity"] = {}
        convs = [op for op in g.operators if op.opcode == "CONV_2D"]
        for row, op in zip([r for r in rep["layers"] if r["kind"] == "conv"], convs):
            w = g.tensor(op.inputs[1]).data
            st = analyze_filterlets(w)
            rep["filterlet_sparsity"][row["layer"]] = {
                "kernel": list(w.shape[1:3]), "cin": int(w.shape[3]), "cout": int(w.shape[0]),
                "filters_total": row["filters_total"], "filterlets": int(st.total_filterlets),
                "zero_filterlets": int(st.total_filterlets - st.kept_filterlets),
                "filterlet_sparsity": round(float(st.filterlet_sparsity), 4)}
        rep["input_quantization"] = {"scale": scale, "zero_point": zp,
                                     "preprocess": "q = round(pixel/255/scale) + zero_point"}
        np.savez_compressed(args.out / "test_subset.npz", x_int8=xq, x_uint8=x8,
                            y=data.y_test[:n_sub].astype(np.int64), input_scale=np.float32(scale),
                            input_zero_point=np.int32(zp))
        (args.out / "training_report.json").write_text(json.dumps(rep, indent=2, default=float) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
