"""Train, filterlet-prune and int8-quantize the Fashion-MNIST demo CNN.

This is the demo model for DTMM-for-TVM. It reproduces the DTMM recipe
(see ``/work/shared/notes/dtmm-method.md``) at a small scale:

1. Train a small CNN on the real Fashion-MNIST (the Debian IDX gz files).
2. Rank the filterlets ``W[o, kh, kw, :]`` of every conv with a kernel larger
   than 1x1 by L2 norm (default) or by first-order Taylor importance
   ``sum_cin |w * g|`` (``--importance taylor``; ``g`` the loss gradient
   averaged over a validation split) and zero the lowest fraction per layer,
   gradually (50%, 75%, 100% of the target ratio). Taylor scored 1.1 points
   lower here: a filter whose ReLU output is dead gets zero gradient, so
   Taylor ranking prunes many whole filters (21 of 32 in conv3).
3. Fine-tune with the mask re-applied after every optimizer step, keeping the
   weights with the best validation accuracy.
4. Full-integer int8 post-training quantization (per-channel weights, int8
   input and output, representative data from training images).
5. Verify that every float-zero filterlet is all-zero in the int8 weights,
   and evaluate the int8 model with TensorFlow Lite Micro on all 10000 test
   images.

Needs TensorFlow (``/work/tfenv/bin/python``); the project itself does not.
Run: ``/work/tfenv/bin/python models/fashion_mnist/train.py`` (a few minutes
on two cores).

Outputs (next to this file): ``fashion_cnn_filterlet_int8.tflite``,
``fashion_cnn_dense_int8.tflite``, ``training_report.json``,
``test_subset.npz``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
import warnings

# tf.lite.Interpreter (used only to read back weights) warns about deprecation.
warnings.filterwarnings("ignore", category=UserWarning)

HERE = Path(__file__).resolve().parent
DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
SEED = 1234

# Filterlet pruning ratio per conv layer (by Keras layer name). conv1 has
# Cin = 1, so its "filterlets" are single weights: prune it least. The wider
# later layers carry most of the MACs and tolerate more pruning.
PRUNE_RATIOS = {"conv1": 0.60, "conv2": 0.75, "conv3": 0.85, "conv4": 0.80}


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------
def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST container format) into numpy.

    Parameters
    ----------
    path : Path
        ``*-idx1-ubyte.gz`` (labels) or ``*-idx3-ubyte.gz`` (images).

    Returns
    -------
    np.ndarray
        uint8 array with the shape stored in the header.
    """
    with gzip.open(path, "rb") as f:
        raw = f.read()
    # Header: two zero bytes, a dtype code (0x08 = uint8), the rank, then
    # one big-endian uint32 per dimension.
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not a uint8 IDX file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: size {data.size} does not match header {dims}")
    return data.reshape(tuple(dims))


def load_fashion_mnist(data_dir: Path = DATA_DIR):
    """Load Fashion-MNIST as uint8 images (N, 28, 28, 1) and int labels.

    Returns
    -------
    tuple
        ``(x_train, y_train, x_test, y_test)``.
    """
    x_tr = read_idx(data_dir / "train-images-idx3-ubyte.gz")[..., None]
    y_tr = read_idx(data_dir / "train-labels-idx1-ubyte.gz").astype(np.int64)
    x_te = read_idx(data_dir / "t10k-images-idx3-ubyte.gz")[..., None]
    y_te = read_idx(data_dir / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    return x_tr, y_tr, x_te, y_te


def to_float(x_uint8: np.ndarray) -> np.ndarray:
    """Pixels to the float model input range [0, 1]."""
    return x_uint8.astype(np.float32) / 255.0


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------
def build_model() -> tf.keras.Model:
    """The demo CNN: 4 convs (3x3), global average pool, dense 10, softmax."""
    inp = tf.keras.Input((28, 28, 1), name="input")
    x = tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inp)
    x = tf.keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = tf.keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv3")(x)
    x = tf.keras.layers.MaxPooling2D(2, name="pool")(x)
    x = tf.keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv4")(x)
    x = tf.keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = tf.keras.layers.Dense(10, name="fc")(x)
    out = tf.keras.layers.Softmax(name="softmax")(x)
    return tf.keras.Model(inp, out, name="fashion_cnn")


def compile_model(model: tf.keras.Model, lr) -> None:
    """Adam + sparse categorical cross-entropy on softmax outputs."""
    model.compile(
        optimizer=tf.keras.optimizers.Adam(lr),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )


def accuracy(model: tf.keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    """Float top-1 accuracy."""
    pred = model.predict(x, batch_size=500, verbose=0)
    return float(np.mean(np.argmax(pred, axis=1) == y))


def prunable_convs(model: tf.keras.Model):
    """Conv layers with a kernel larger than 1x1 (1x1 convs get filter pruning only)."""
    return [l for l in model.layers
            if isinstance(l, tf.keras.layers.Conv2D) and tuple(l.kernel_size) != (1, 1)]


# --------------------------------------------------------------------------
# Filterlet pruning
# --------------------------------------------------------------------------
def taylor_filterlet_importance(model, x_val, y_val, batch=500):
    """First-order Taylor importance of every filterlet.

    Importance of a weight is ``|w * g|`` with ``g`` the loss gradient
    averaged over the validation split; a filterlet's importance is the sum
    over its Cin weights (as in the DTMM authors' code).

    Returns
    -------
    dict
        layer name -> array (Cout, KH, KW), in TFLite's OHWI filterlet order.
    """
    convs = prunable_convs(model)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy()
    grads = [np.zeros(l.kernel.shape, np.float64) for l in convs]
    n_batches = 0
    for i in range(0, len(x_val), batch):
        xb = tf.constant(x_val[i:i + batch])
        yb = tf.constant(y_val[i:i + batch])
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=False))
        gs = tape.gradient(loss, [l.kernel for l in convs])
        for acc, g in zip(grads, gs):
            acc += g.numpy()
        n_batches += 1
    out = {}
    for l, g in zip(convs, grads):
        w = l.kernel.numpy()                      # Keras layout (KH, KW, Cin, Cout)
        imp = np.abs(w * (g / n_batches)).sum(axis=2)  # (KH, KW, Cout)
        out[l.name] = np.transpose(imp, (2, 0, 1))     # (Cout, KH, KW)
    return out


def l2_filterlet_importance(model) -> dict:
    """L2 norm of every filterlet, layer name -> (Cout, KH, KW)."""
    out = {}
    for l in prunable_convs(model):
        w = l.kernel.numpy()
        out[l.name] = np.transpose(np.sqrt((w ** 2).sum(axis=2)), (2, 0, 1))
    return out


def filterlet_masks(importance: dict, ratios: dict) -> dict:
    """Zero the lowest-importance fraction of filterlets per layer.

    Parameters
    ----------
    importance : dict
        layer name -> (Cout, KH, KW) importance.
    ratios : dict
        layer name -> fraction of filterlets to prune.

    Returns
    -------
    dict
        layer name -> Keras-layout kernel mask (KH, KW, 1, Cout), float32,
        broadcast over Cin so a filterlet is kept or dropped whole.
    """
    masks = {}
    for name, imp in importance.items():
        n = imp.size
        n_prune = int(round(ratios[name] * n))
        # argsort with a stable kind so ties break deterministically.
        order = np.argsort(imp.ravel(), kind="stable")
        keep = np.ones(n, np.float32)
        keep[order[:n_prune]] = 0.0
        keep = keep.reshape(imp.shape)                 # (Cout, KH, KW)
        masks[name] = np.transpose(keep, (1, 2, 0))[:, :, None, :]
    return masks


class ApplyMask(tf.keras.callbacks.Callback):
    """Re-apply the filterlet masks after every optimizer step.

    Adam's momentum would otherwise regrow pruned weights; zeroing them after
    each step keeps the sparsity pattern fixed during fine-tuning.
    """

    def __init__(self, masks: dict):
        super().__init__()
        self.masks = masks

    def apply(self):
        for name, m in self.masks.items():
            layer = self.model.get_layer(name)
            layer.kernel.assign(layer.kernel.numpy() * m)

    def on_train_batch_end(self, batch, logs=None):
        self.apply()


class KeepBest(tf.keras.callbacks.Callback):
    """Remember the weights with the best validation accuracy."""

    def __init__(self, x_val, y_val):
        super().__init__()
        self.x_val, self.y_val = x_val, y_val
        self.best = -1.0
        self.weights = None

    def on_epoch_end(self, epoch, logs=None):
        acc = accuracy(self.model, self.x_val, self.y_val)
        print(f"    epoch {epoch + 1}: val acc {acc:.4f}")
        if acc > self.best:
            self.best, self.weights = acc, self.model.get_weights()


# --------------------------------------------------------------------------
# Quantization and verification
# --------------------------------------------------------------------------
def quantize_int8(model: tf.keras.Model, rep_images: np.ndarray) -> bytes:
    """Full-integer int8 PTQ with int8 input and output.

    Parameters
    ----------
    model : tf.keras.Model
        Float model taking [0, 1] images.
    rep_images : np.ndarray
        Float representative images (N, 28, 28, 1).
    """
    # Export a SavedModel with a fixed batch-1 signature: it gives a static
    # input shape [1, 28, 28, 1] (what a microcontroller runtime wants) and,
    # unlike from_concrete_functions on a Keras 3 model, freezes the variables.
    with tempfile.TemporaryDirectory() as d:
        model.export(d, input_signature=[tf.TensorSpec([1, 28, 28, 1], tf.float32)],
                     verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(d)

        def rep():
            for i in range(len(rep_images)):
                yield [rep_images[i:i + 1]]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        return conv.convert()


def int8_conv_weights(tflite_bytes: bytes) -> list:
    """Int8 weights (OHWI) of every CONV_2D, in graph order."""
    # No default delegate: XNNPACK would fold the convs into one DELEGATE op.
    interp = tf.lite.Interpreter(
        model_content=tflite_bytes,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    out = []
    for op in interp._get_ops_details():
        if op["op_name"] == "CONV_2D":
            out.append(interp.get_tensor(int(op["inputs"][1])))
    return out


def check_sparsity(float_model: tf.keras.Model, tflite_bytes: bytes) -> dict:
    """Check that sparsity survives quantization exactly, per conv layer.

    Every filterlet that is all-zero in float must be all-zero int8, and
    (reported) no extra filterlets may become zero by rounding.

    Returns
    -------
    dict
        layer name -> {"kernel", "cin", "cout", "filterlets", "zero_filterlets",
        "filterlet_sparsity", "zero_filters", "weight_sparsity"}.
    """
    convs = [l for l in float_model.layers if isinstance(l, tf.keras.layers.Conv2D)]
    qweights = int8_conv_weights(tflite_bytes)
    if len(qweights) != len(convs):
        raise RuntimeError(f"{len(qweights)} CONV_2D ops in the tflite, {len(convs)} convs in Keras")
    report = {}
    for layer, q in zip(convs, qweights):
        wf = np.transpose(layer.kernel.numpy(), (3, 0, 1, 2))   # -> OHWI
        if q.shape != wf.shape or q.dtype != np.int8:
            raise RuntimeError(f"{layer.name}: int8 weights {q.shape} {q.dtype} vs float {wf.shape}")
        f_zero = np.all(wf == 0, axis=3)        # (O, KH, KW) float-zero filterlets
        q_zero = np.all(q == 0, axis=3)
        lost = int(np.sum(f_zero & ~q_zero))
        if lost:
            raise RuntimeError(f"{layer.name}: {lost} pruned filterlets are non-zero after quantization")
        report[layer.name] = {
            "kernel": list(layer.kernel_size),
            "cin": int(q.shape[3]),
            "cout": int(q.shape[0]),
            "filterlets": int(q_zero.size),
            "zero_filterlets": int(q_zero.sum()),
            "filterlet_sparsity": round(float(q_zero.mean()), 4),
            "float_zero_filterlets": int(f_zero.sum()),
            "zero_filters": int(np.all(q == 0, axis=(1, 2, 3)).sum()),
            "weight_sparsity": round(float(np.mean(q == 0)), 4),
        }
    return report


def tflm_accuracy(tflite_bytes: bytes, x_uint8: np.ndarray, y: np.ndarray):
    """Top-1 accuracy of the int8 model under TensorFlow Lite Micro.

    Returns
    -------
    tuple
        (accuracy, predictions, input scale, input zero point).
    """
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(tflite_bytes, arena_size=256 * 1024)
    q = interp.get_input_details(0)["quantization_parameters"]
    scale, zp = float(q["scales"][0]), int(q["zero_points"][0])
    x_q = quantize_input(x_uint8, scale, zp)
    preds = np.empty(len(x_q), np.int64)
    for i in range(len(x_q)):
        interp.set_input(x_q[i:i + 1], 0)
        interp.invoke()
        preds[i] = int(np.argmax(interp.get_output(0)[0]))
    return float(np.mean(preds == y)), preds, scale, zp


def quantize_input(x_uint8: np.ndarray, scale: float, zp: int) -> np.ndarray:
    """Quantize raw pixels the way the float model sees them (x/255)."""
    q = np.round(x_uint8.astype(np.float32) / 255.0 / scale) + zp
    return np.clip(q, -128, 127).astype(np.int8)


# --------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6, help="dense training epochs")
    ap.add_argument("--finetune-epochs", type=int, default=4, help="epochs at the final ratios")
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--importance", choices=["taylor", "l2"], default="l2",
                    help="filterlet ranking (l2 gave 85.2%% vs taylor 84.1%% float pruned)")
    args = ap.parse_args()

    tf.keras.utils.set_random_seed(SEED)
    t0 = time.time()
    x_tr8, y_tr, x_te8, y_te = load_fashion_mnist()
    # Hold out the last 5000 training images as the validation split used
    # for Taylor importance and for keeping the best fine-tuned weights.
    x_val8, y_val = x_tr8[-5000:], y_tr[-5000:]
    x_tr8, y_tr = x_tr8[:-5000], y_tr[:-5000]
    x_tr, x_val, x_te = to_float(x_tr8), to_float(x_val8), to_float(x_te8)

    model = build_model()
    steps = args.epochs * int(np.ceil(len(x_tr) / 64))
    compile_model(model, tf.keras.optimizers.schedules.CosineDecay(2e-3, steps, alpha=0.05))
    print(f"training dense model ({args.epochs} epochs)")
    keep = KeepBest(x_val, y_val)
    model.fit(x_tr, y_tr, batch_size=64, epochs=args.epochs, verbose=0, callbacks=[keep])
    model.set_weights(keep.weights)
    float_dense_acc = accuracy(model, x_te, y_te)
    print(f"float dense test accuracy {float_dense_acc:.4f}")

    rng = np.random.default_rng(SEED)
    rep = x_tr[rng.choice(len(x_tr), 300, replace=False)]
    dense_bytes = quantize_int8(model, rep)
    (args.out / "fashion_cnn_dense_int8.tflite").write_bytes(dense_bytes)

    # ---- filterlet pruning ------------------------------------------------
    # Gradual: prune to 50%, 75%, then 100% of each layer's target ratio,
    # recomputing Taylor importance each time and fine-tuning one epoch in
    # between. One-shot pruning to 60-85% collapses this small net to chance
    # and recovers slowly; gradual pruning lets the kept filterlets adapt.
    # Pruned weights are 0, so their importance is 0 and masks only grow.
    float_pruned_no_ft = None
    for stage, frac in enumerate((0.5, 0.75, 1.0)):
        ratios = {k: v * frac for k, v in PRUNE_RATIOS.items()}
        imp = (taylor_filterlet_importance(model, x_val, y_val) if args.importance == "taylor"
               else l2_filterlet_importance(model))
        masks = filterlet_masks(imp, ratios)
        masker = ApplyMask(masks)
        masker.set_model(model)
        masker.apply()
        if frac == 1.0:
            float_pruned_no_ft = accuracy(model, x_te, y_te)
            print(f"float pruned at full ratio, before final fine-tune: {float_pruned_no_ft:.4f}")
        n_ep = 1 if frac < 1.0 else args.finetune_epochs
        steps = n_ep * int(np.ceil(len(x_tr) / 64))
        lr = 1e-3 if frac < 1.0 else tf.keras.optimizers.schedules.CosineDecay(1e-3, steps, alpha=0.05)
        compile_model(model, lr)
        print(f"stage {stage + 1}: {frac:.0%} of target ratios, fine-tune {n_ep} epoch(s)")
        keep = KeepBest(x_val, y_val)
        model.fit(x_tr, y_tr, batch_size=64, epochs=n_ep, verbose=0, callbacks=[masker, keep])
        model.set_weights(keep.weights)
    masker.apply()  # set_weights restored a masked snapshot; re-apply defensively
    float_pruned_acc = accuracy(model, x_te, y_te)
    print(f"float pruned test accuracy {float_pruned_acc:.4f}")

    pruned_bytes = quantize_int8(model, rep)
    out_path = args.out / "fashion_cnn_filterlet_int8.tflite"
    out_path.write_bytes(pruned_bytes)
    sparsity = check_sparsity(model, pruned_bytes)
    print("int8 filterlet sparsity (float-zero filterlets all stay zero in int8):")
    for name, s in sparsity.items():
        print(f"  {name}: {s['zero_filterlets']}/{s['filterlets']} = {s['filterlet_sparsity']:.3f}"
              f"  (target {PRUNE_RATIOS.get(name, 0):.2f}, Cin {s['cin']})")

    # ---- int8 accuracy under TFLM on the full test set ---------------------
    print("evaluating int8 models with TFLM on 10000 test images")
    int8_pruned_acc, preds, in_scale, in_zp = tflm_accuracy(pruned_bytes, x_te8, y_te)
    int8_dense_acc, _, d_scale, d_zp = tflm_accuracy(dense_bytes, x_te8, y_te)
    print(f"int8 dense (TFLM) {int8_dense_acc:.4f}, int8 filterlet-pruned (TFLM) {int8_pruned_acc:.4f}")

    # ---- shipped test subset (first 200 test images) -----------------------
    n_sub = 200
    x_sub_q = quantize_input(x_te8[:n_sub], in_scale, in_zp)
    np.savez_compressed(args.out / "test_subset.npz", x_int8=x_sub_q, x_uint8=x_te8[:n_sub],
                        y=y_te[:n_sub].astype(np.int64),
                        input_scale=np.float32(in_scale), input_zero_point=np.int32(in_zp))
    subset_acc = float(np.mean(preds[:n_sub] == y_te[:n_sub]))

    dense_convs = int8_conv_weights(dense_bytes)
    macs = {"conv1": 28 * 28 * 16 * 9 * 1, "conv2": 14 * 14 * 32 * 9 * 16,
            "conv3": 14 * 14 * 32 * 9 * 32, "conv4": 7 * 7 * 64 * 9 * 32}
    kept_macs = sum(int(round(m * (1 - sparsity[n]["filterlet_sparsity"]))) for n, m in macs.items())
    report = {
        "dataset": "Fashion-MNIST (Debian dataset-fashion-mnist IDX files), 55000 train / "
                   "5000 validation (last of train) / 10000 test",
        "seed": SEED,
        "architecture": "28x28x1 -> conv3x3 16 relu -> conv3x3 32 s2 relu -> conv3x3 32 relu -> "
                        "maxpool2 -> conv3x3 64 relu -> mean(H,W) -> dense 10 -> softmax",
        "input_quantization": {"scale": in_scale, "zero_point": in_zp,
                               "preprocess": "q = round(pixel/255/scale) + zero_point"},
        "epochs": args.epochs, "finetune_epochs": args.finetune_epochs,
        "importance": ("first-order Taylor |w*g| summed over Cin, g averaged over the validation split"
                       if args.importance == "taylor" else "L2 norm of the filterlet"),
        "schedule": "gradual: 50%, 75% of target ratios (1 fine-tune epoch each), then 100% "
                    "(finetune_epochs, cosine lr); mask re-applied after every step",
        "prune_ratios": PRUNE_RATIOS,
        "accuracy": {
            "float_dense": round(float_dense_acc, 4),
            "float_pruned_before_final_finetune": round(float_pruned_no_ft, 4),
            "float_pruned": round(float_pruned_acc, 4),
            "int8_dense_tflm": round(int8_dense_acc, 4),
            "int8_pruned_tflm": round(int8_pruned_acc, 4),
            "int8_pruned_tflm_test_subset_200": round(subset_acc, 4),
        },
        "filterlet_sparsity": sparsity,
        "conv_macs": {"dense": sum(macs.values()), "kept": kept_macs},
        "dense_conv_weight_bytes": int(sum(w.size for w in dense_convs)),
        "files": {
            "fashion_cnn_filterlet_int8.tflite": len(pruned_bytes),
            "fashion_cnn_dense_int8.tflite": len(dense_bytes),
        },
        "train_seconds": round(time.time() - t0, 1),
    }
    (args.out / "training_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["accuracy"], indent=2))
    print(f"model size {len(pruned_bytes)} bytes; done in {report['train_seconds']} s")


if __name__ == "__main__":
    main()
