"""Generate the benchmark models in ``bench/models/`` (int8 TFLite, random weights).

Run with the TensorFlow environment::

    /work/tfenv/bin/python bench/models/make_bench_models.py            # all models
    /work/tfenv/bin/python bench/models/make_bench_models.py --only paper_3x3_s90 resnet8

Models (batch 1, full-int8 I/O, per-channel weights, calibrated on uniform(-1, 1) data;
weights are random He-style with whole filterlets ``W[o, kh, kw, :]`` zeroed at the stated
sparsity *before* conversion, lowest-L2 first; the script checks the zeros survive int8):

================================  ==============================================================
``paper_3x3_s{00,50,75,90}``      the DTMM paper's microbenchmark: 3x3 conv, 16x16x64 -> 64,
                                  SAME, stride 1, no activation (9.44 M MACs), at filterlet
                                  sparsity 0 / 0.5 / 0.75 / 0.9
``conv_1x1``                      1x1 conv 16x16x64 -> 64 (dense)
``dw_3x3``                        depthwise 3x3 16x16x64, SAME, multiplier 1
``conv_5x5``                      5x5 conv 16x16x32 -> 32, SAME (dense)
``fc_256_64``                     fully connected 256 -> 64
``resnet8``                       MLPerf-Tiny ResNet-8-like, 32x32x3: stem 3x3x16, three residual
                                  stacks (16, 32 s2, 64 s2) of two 3x3 convs each, 1x1 s2
                                  projection shortcuts, ADD+ReLU, MEAN, FC 10, softmax; the
                                  seven 3x3 convs at 60-80 % filterlet sparsity
``resnet8_s{50,75,90}``           the same ResNet-8 with every conv (1x1 projections included)
                                  at 50 / 75 / 90 % filterlet sparsity
``ds_cnn_s{00,50,75,90}``         MLPerf-Tiny KWS DS-CNN-like, 49x10x1: conv 10x4 s2 64 + ReLU,
                                  four depthwise-separable blocks (dw 3x3 64 + pw 1x1 64, ReLU),
                                  average pool 25x5, FC 12, softmax; every regular conv at the
                                  stated filterlet sparsity (pw 1x1: whole filters)
``mobilenet_v1_025_s{00,90}``     MobileNetV1-0.25 VWW-like, 96x96x3: conv 3x3 s2 8, 13 dw/pw
                                  blocks (16 .. 256 channels, dw s2 at 2, 4, 6, 12), average
                                  pool 3x3, FC 2, softmax (two sparsities: 200 KB per file)
``kws_1d_s{00,50,75,90}``         streaming wake-word-like 1-D conv net, 49x1x40 (time x 1 x
                                  features): four (3, 1) convs 64 (stride 2 on the 2nd and 4th),
                                  ReLU, MEAN over time, FC 12, softmax
``ad_autoencoder``                MLPerf-Tiny anomaly-detection FC autoencoder 640-128x4-8-128x4-640
                                  (ReLU), dense (filterlet sparsity applies to convs only)
================================  ==============================================================

``bench/models/manifest.json`` lists every file with its ops and per-conv sparsity.
``SPECS`` is importable (without TensorFlow) for scripts that want the list of models.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 20240401

#: name -> one-line description (the order models are written in)
SPECS = {
    "paper_3x3_s00": "3x3 conv 16x16x64->64 SAME s1, 0% filterlet sparsity",
    "paper_3x3_s50": "3x3 conv 16x16x64->64 SAME s1, 50% filterlet sparsity",
    "paper_3x3_s75": "3x3 conv 16x16x64->64 SAME s1, 75% filterlet sparsity",
    "paper_3x3_s90": "3x3 conv 16x16x64->64 SAME s1, 90% filterlet sparsity",
    "conv_1x1": "1x1 conv 16x16x64->64",
    "dw_3x3": "depthwise 3x3 16x16x64 SAME s1",
    "conv_5x5": "5x5 conv 16x16x32->32 SAME s1",
    "fc_256_64": "fully connected 256->64",
    "resnet8": "MLPerf-Tiny-like ResNet-8 32x32x3, 3x3 convs at 60-80% filterlet sparsity",
    **{f"resnet8_s{r}": f"ResNet-8 32x32x3, every conv at {r}% filterlet sparsity" for r in (50, 75, 90)},
    **{f"ds_cnn_s{r:02d}": f"DS-CNN-like KWS 49x10x1 (conv 10x4 s2, 4 dw/pw blocks), {r}% filterlet sparsity"
       for r in (0, 50, 75, 90)},
    **{f"mobilenet_v1_025_s{r:02d}": f"MobileNetV1-0.25 VWW-like 96x96x3, {r}% filterlet sparsity" for r in (0, 90)},
    **{f"kws_1d_s{r:02d}": f"streaming wake-word-like 1-D conv net 49x1x40, {r}% filterlet sparsity"
       for r in (0, 50, 75, 90)},
    "ad_autoencoder": "MLPerf-Tiny-like anomaly-detection FC autoencoder 640-128x4-8-128x4-640",
}


def filterlet_keep(w_ohwi: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean keep-mask (O, KH, KW): zero the ``ratio`` lowest-L2 filterlets."""
    norms = np.sqrt((w_ohwi.astype(np.float64) ** 2).sum(axis=3)) + rng.uniform(0, 1e-9, w_ohwi.shape[:3])
    keep = np.ones(norms.shape, bool).ravel()
    n = int(round(ratio * norms.size))
    keep[np.argsort(norms.ravel(), kind="stable")[:n]] = False
    return keep.reshape(norms.shape)


def build(names: list[str]) -> list[dict]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    warnings.filterwarnings("ignore")
    L = tf.keras.layers
    tf.keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)

    def randomize(model, prune: dict) -> None:
        for layer in model.layers:
            if not isinstance(layer, (L.Conv2D, L.DepthwiseConv2D, L.Dense)):
                continue
            w = layer.kernel.numpy()
            dw = isinstance(layer, L.DepthwiseConv2D)
            fan_in = int(np.prod(w.shape[:2])) if dw else int(np.prod(w.shape[:-1]))
            w = rng.normal(0, np.sqrt(2.0 / fan_in), w.shape).astype(np.float32)
            red = (0, 1, 3) if dw else tuple(range(w.ndim - 1))
            floor = 0.05 * np.max(np.abs(w), axis=red, keepdims=True)
            w = np.where(w >= 0, 1.0, -1.0) * np.maximum(np.abs(w), floor)  # no accidental int8 zeros
            if layer.name in prune:
                ohwi = np.transpose(w, (3, 0, 1, 2))
                ohwi = ohwi * filterlet_keep(ohwi, prune[layer.name], rng)[..., None]
                w = np.transpose(ohwi, (1, 2, 3, 0))
            layer.kernel.assign(w.astype(np.float32))
            if layer.use_bias:
                layer.bias.assign(rng.uniform(-0.1, 0.1, layer.bias.shape).astype(np.float32))

    def convert(model) -> bytes:
        in_shape = tuple(model.inputs[0].shape[1:])

        def rep():
            for _ in range(16):
                yield [rng.uniform(-1, 1, (1,) + in_shape).astype(np.float32)]

        with tempfile.TemporaryDirectory() as d:
            model.export(d, input_signature=[tf.TensorSpec((1,) + in_shape, tf.float32)], verbose=False)
            conv = tf.lite.TFLiteConverter.from_saved_model(d)
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = rep
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
            return conv.convert()

    def inspect(data: bytes) -> tuple[list, list]:
        interp = tf.lite.Interpreter(model_content=data, experimental_op_resolver_type=(
            tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
        interp.allocate_tensors()
        ops = interp._get_ops_details()
        convs = []
        for op in ops:
            if op["op_name"] == "CONV_2D":
                w = interp.get_tensor(int(op["inputs"][1]))
                zero = np.all(w == 0, axis=3)
                convs.append({"weight_shape": list(w.shape), "filterlet_sparsity": round(float(zero.mean()), 4)})
        return [op["op_name"] for op in ops], convs

    def single(name, make_layer, in_shape, prune=None):
        inp = tf.keras.Input(in_shape)
        layer = make_layer()
        m = tf.keras.Model(inp, layer(inp), name=name)
        randomize(m, {layer.name: prune} if prune else {})
        return m

    def resnet8():
        inp = tf.keras.Input((32, 32, 3))
        x = L.Conv2D(16, 3, padding="same", activation="relu", name="stem")(inp)
        ratios = iter([0.6, 0.7, 0.7, 0.75, 0.75, 0.8, 0.8])
        prune = {"stem": None}
        for stack, filters in enumerate((16, 32, 64)):
            stride = 1 if stack == 0 else 2
            y = L.Conv2D(filters, 3, strides=stride, padding="same", activation="relu", name=f"s{stack}c1")(x)
            y = L.Conv2D(filters, 3, padding="same", name=f"s{stack}c2")(y)
            prune[f"s{stack}c1"] = next(ratios)
            prune[f"s{stack}c2"] = next(ratios)
            if stride != 1:
                x = L.Conv2D(filters, 1, strides=stride, name=f"s{stack}proj")(x)
            x = L.ReLU()(L.Add()([x, y]))
        prune["stem"] = next(ratios)
        x = L.GlobalAveragePooling2D()(x)
        out = L.Softmax()(L.Dense(10)(x))
        m = tf.keras.Model(inp, out, name="resnet8")
        randomize(m, prune)
        return m

    def resnet8_uniform(ratio):
        m = resnet8()
        randomize(m, {l.name: ratio for l in m.layers if isinstance(l, L.Conv2D)})
        return m

    def ds_cnn(ratio):
        inp = tf.keras.Input((49, 10, 1))
        x = L.Conv2D(64, (10, 4), strides=2, padding="same", activation="relu", name="conv1")(inp)
        convs = ["conv1"]
        for i in range(4):
            x = L.DepthwiseConv2D(3, padding="same", activation="relu", name=f"dw{i}")(x)
            x = L.Conv2D(64, 1, activation="relu", name=f"pw{i}")(x)
            convs.append(f"pw{i}")
        x = L.AveragePooling2D((25, 5))(x)
        x = L.Reshape((64,))(x)
        out = L.Softmax()(L.Dense(12)(x))
        m = tf.keras.Model(inp, out, name="ds_cnn")
        randomize(m, {c: ratio for c in convs} if ratio else {})
        return m

    def mobilenet(ratio):
        inp = tf.keras.Input((96, 96, 3))
        x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv1")(inp)
        convs = ["conv1"]
        blocks = [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2)] + [(128, 1)] * 5 + [(256, 2), (256, 1)]
        for i, (filters, stride) in enumerate(blocks):
            x = L.DepthwiseConv2D(3, strides=stride, padding="same", activation="relu", name=f"dw{i}")(x)
            x = L.Conv2D(filters, 1, activation="relu", name=f"pw{i}")(x)
            convs.append(f"pw{i}")
        x = L.AveragePooling2D((3, 3))(x)
        x = L.Reshape((256,))(x)
        out = L.Softmax()(L.Dense(2)(x))
        m = tf.keras.Model(inp, out, name="mobilenet_v1_025")
        randomize(m, {c: ratio for c in convs} if ratio else {})
        return m

    def kws_1d(ratio):
        inp = tf.keras.Input((49, 1, 40))
        x = inp
        convs = []
        for i, stride in enumerate((1, 2, 1, 2)):
            x = L.Conv2D(64, (3, 1), strides=(stride, 1), padding="same", activation="relu", name=f"tc{i}")(x)
            convs.append(f"tc{i}")
        x = L.GlobalAveragePooling2D()(x)
        out = L.Softmax()(L.Dense(12)(x))
        m = tf.keras.Model(inp, out, name="kws_1d")
        randomize(m, {c: ratio for c in convs} if ratio else {})
        return m

    def ad_autoencoder():
        inp = tf.keras.Input((640,))
        x = inp
        for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
            x = L.Dense(units, activation="relu")(x)
        m = tf.keras.Model(inp, L.Dense(640)(x), name="ad_autoencoder")
        randomize(m, {})
        return m

    paper = (16, 16, 64)
    makers = {
        **{f"resnet8_s{r}": (lambda r=r: resnet8_uniform(r / 100)) for r in (50, 75, 90)},
        **{f"ds_cnn_s{r:02d}": (lambda r=r: ds_cnn(r / 100)) for r in (0, 50, 75, 90)},
        **{f"mobilenet_v1_025_s{r:02d}": (lambda r=r: mobilenet(r / 100)) for r in (0, 90)},
        **{f"kws_1d_s{r:02d}": (lambda r=r: kws_1d(r / 100)) for r in (0, 50, 75, 90)},
        "ad_autoencoder": ad_autoencoder,
        "paper_3x3_s00": lambda: single("p0", lambda: L.Conv2D(64, 3, padding="same", name="conv"), paper, 0.0),
        "paper_3x3_s50": lambda: single("p50", lambda: L.Conv2D(64, 3, padding="same", name="conv"), paper, 0.5),
        "paper_3x3_s75": lambda: single("p75", lambda: L.Conv2D(64, 3, padding="same", name="conv"), paper, 0.75),
        "paper_3x3_s90": lambda: single("p90", lambda: L.Conv2D(64, 3, padding="same", name="conv"), paper, 0.9),
        "conv_1x1": lambda: single("c1", lambda: L.Conv2D(64, 1, name="conv"), paper),
        "dw_3x3": lambda: single("dw", lambda: L.DepthwiseConv2D(3, padding="same", name="dw"), paper),
        "conv_5x5": lambda: single("c5", lambda: L.Conv2D(32, 5, padding="same", name="conv"), (16, 16, 32)),
        "fc_256_64": lambda: single("fc", lambda: L.Dense(64, name="fc"), (256,)),
        "resnet8": resnet8,
    }
    entries = []
    for name in names:
        data = convert(makers[name]())
        ops, convs = inspect(data)
        (HERE / f"{name}.tflite").write_bytes(data)
        entries.append({"name": name, "file": f"{name}.tflite", "description": SPECS[name],
                        "bytes": len(data), "ops": ops, "convs": convs})
        sp = ", ".join(f"{c['filterlet_sparsity']:.2f}" for c in convs)
        print(f"  {name}.tflite {len(data):8d} B  ops={','.join(sorted(set(ops)))}  sparsity=[{sp}]")
    return entries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=list(SPECS), help="models to (re)generate; default all")
    args = ap.parse_args()
    names = args.only or list(SPECS)
    entries = build(names)
    path = HERE / "manifest.json"
    old = json.loads(path.read_text())["models"] if path.exists() else []
    keep = [e for e in old if e["name"] not in names]
    models = sorted(keep + entries, key=lambda e: list(SPECS).index(e["name"]) if e["name"] in SPECS else 99)
    path.write_text(json.dumps({"schema": "dtmm-bench-models/1", "models": models}, indent=1) + "\n")


if __name__ == "__main__":
    main()
