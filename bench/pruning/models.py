"""The experiment's three Fashion-MNIST models (28x28x1 inputs, 10 classes) and their cached
base training.

- ``vgg``: VGG-style, 3x3 convs 16-16 / 32-32 / 64 with BN + ReLU and max pools, flatten, dense;
- ``resnet``: ResNet-style, a 3x3 stem (16), a residual block of two 3x3 convs (16), a stride-2
  3x3 conv (32) and a residual block (32), global average pool, dense;
- ``dscnn``: DS-CNN-style, a stride-2 3x3 conv (32), three depthwise-separable blocks (3x3
  depthwise + 1x1 pointwise 32, BN + ReLU), global average pool, dense.

Base training (cached under the cache directory, keyed by recipe, model name, epochs, images and
seed): Adam 2e-3 with cosine decay, batch 128, ``BASE_EPOCHS`` epochs on the first ``BASE_IMAGES``
images of the 55,000-image training split (kept small: the experiment runs on a loaded 2-core
machine). Batch normalization uses momentum 0.9: with Keras' default 0.99 the moving statistics
lag the weights over a run this short (a few hundred steps), and the inference-mode model (the one
that is exported) was at 46% test accuracy while the same weights in training mode were at 88%.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODELS = ("vgg", "resnet", "dscnn")
BASE_EPOCHS = 3
#: Fashion-MNIST's training split after the pruner's data module holds out 5,000 for validation.
TRAIN_IMAGES = 55000
#: Training images of the base models (the first of the 55,000-image training split).
BASE_IMAGES = 30000
#: Changes whenever the architecture or the training recipe does (part of the cache key).
RECIPE = "bn09-cos"
#: Batch-norm momentum (see the module docstring); the pruned copies inherit it for fine-tuning.
BN_MOMENTUM = 0.9


def build(name: str):
    import keras

    L = keras.layers
    inp = keras.Input((28, 28, 1), name="image")

    def cbr(x, f, k=3, s=1, n=""):
        x = L.Conv2D(f, k, strides=s, padding="same", use_bias=False, name=f"conv_{n}")(x)
        x = L.BatchNormalization(momentum=BN_MOMENTUM, name=f"bn_{n}")(x)
        return L.ReLU(name=f"relu_{n}")(x)

    if name == "vgg":
        x = cbr(inp, 16, n="1a")
        x = cbr(x, 16, n="1b")
        x = L.MaxPooling2D(2, name="pool1")(x)
        x = cbr(x, 32, n="2a")
        x = cbr(x, 32, n="2b")
        x = L.MaxPooling2D(2, name="pool2")(x)
        x = cbr(x, 64, n="3a")
        x = L.MaxPooling2D(2, name="pool3")(x)
        x = L.Flatten(name="flatten")(x)
    elif name == "resnet":
        x = cbr(inp, 16, n="stem")
        x = L.MaxPooling2D(2, name="pool0")(x)
        y = cbr(x, 16, n="b1a")
        y = L.Conv2D(16, 3, padding="same", use_bias=False, name="conv_b1b")(y)
        y = L.BatchNormalization(momentum=BN_MOMENTUM, name="bn_b1b")(y)
        x = L.ReLU(name="relu_b1")(L.Add(name="add_b1")([x, y]))
        x = cbr(x, 32, s=2, n="down")
        y = cbr(x, 32, n="b2a")
        y = L.Conv2D(32, 3, padding="same", use_bias=False, name="conv_b2b")(y)
        y = L.BatchNormalization(momentum=BN_MOMENTUM, name="bn_b2b")(y)
        x = L.ReLU(name="relu_b2")(L.Add(name="add_b2")([x, y]))
        x = L.GlobalAveragePooling2D(name="gap")(x)
    elif name == "dscnn":
        x = cbr(inp, 32, s=2, n="stem")
        for i in range(3):
            x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw_{i}")(x)
            x = L.BatchNormalization(momentum=BN_MOMENTUM, name=f"bn_dw_{i}")(x)
            x = L.ReLU(name=f"relu_dw_{i}")(x)
            x = cbr(x, 32, k=1, n=f"pw_{i}")
        x = L.GlobalAveragePooling2D(name="gap")(x)
    else:
        raise ValueError(f"unknown model '{name}' (choose from {', '.join(MODELS)})")
    out = L.Dense(10, activation="softmax", name="fc")(x)
    return keras.Model(inp, out, name=name)


def base_model(name: str, cache: Path, data, epochs: int = BASE_EPOCHS, seed: int = 0, images: int = BASE_IMAGES):
    """The trained base model (trained once, then loaded from ``cache``)."""
    import keras

    path = Path(cache) / f"{name}_{RECIPE}_e{epochs}_n{images}_s{seed}.keras"
    if path.exists():
        return keras.models.load_model(path), path
    keras.utils.set_random_seed(seed)
    model = build(name)
    steps = epochs * -(-images // 128)
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, steps, alpha=0.05)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.x_train[:images], data.y_train[:images], batch_size=128, epochs=epochs, verbose=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)
    return model, path
