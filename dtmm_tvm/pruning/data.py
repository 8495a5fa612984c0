"""Data for pruning: ``fashion-mnist`` (Debian's dataset-fashion-mnist), ``digits``
(scikit-learn's bundled 8x8 digits) or an ``.npz`` file with ``x_train, y_train, x_test,
y_test`` and optionally ``x_val, y_val`` (otherwise the last 10% of the training data, at most
5000 examples, is held out as the validation split).

Images are float32 in [0, 1], NHWC; labels int64 class indices.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DTMMError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


class DataError(DTMMError):
    """Data that cannot be read or does not fit the model."""


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_val.max(), self.y_test.max())) + 1

    def check_fits(self, input_shape, num_outputs: int, model_name: str = "model") -> None:
        """One clear error when the data's shape or labels do not fit the model."""
        want = tuple(int(d) for d in input_shape)
        for split, x in (("train", self.x_train), ("validation", self.x_val), ("test", self.x_test)):
            if tuple(x.shape[1:]) != want:
                raise DataError(f"data '{self.name}': {split} examples are {tuple(x.shape[1:])} but {model_name} "
                                f"takes {want}")
        if self.num_classes > num_outputs:
            raise DataError(f"data '{self.name}': labels go up to {self.num_classes - 1} but {model_name} has "
                            f"{num_outputs} outputs")


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[:3] != b"\x00\x00\x08":
        raise DataError(f"{path}: not a uint8 IDX file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: size {data.size} does not match its header {tuple(dims)}")
    return data.reshape(tuple(dims))


def _split_val(x, y, val=None):
    if val is not None:
        return x, y, val[0], val[1]
    n = min(5000, max(1, len(x) // 10))
    return x[:-n], y[:-n], x[-n:], y[-n:]


def fashion_mnist(data_dir: Path = FASHION_MNIST_DIR) -> Dataset:
    files = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz"]
    missing = [f for f in files if not (data_dir / f).exists()]
    if missing:
        raise DataError(f"Fashion-MNIST not found in {data_dir} (missing {missing[0]}); "
                        f"apt-get install dataset-fashion-mnist")
    x_tr = _read_idx(data_dir / files[0])[..., None].astype(np.float32) / 255.0
    y_tr = _read_idx(data_dir / files[1]).astype(np.int64)
    x_te = _read_idx(data_dir / files[2])[..., None].astype(np.float32) / 255.0
    y_te = _read_idx(data_dir / files[3]).astype(np.int64)
    x_tr, y_tr, x_val, y_val = _split_val(x_tr, y_tr)
    return Dataset("fashion-mnist", x_tr, y_tr, x_val, y_val, x_te, y_te)


def digits(seed: int = 0) -> Dataset:
    """scikit-learn's 1797 8x8 digits (pixels 0..16 scaled to [0, 1]): 70% train (of which a
    validation split), 30% test, a seeded shuffle."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("--data digits needs scikit-learn (pip install 'dtmm-tvm[train]')") from None
    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[..., None]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_test = int(round(0.3 * len(x)))
    x_te, y_te, x_tr, y_tr = x[:n_test], y[:n_test], x[n_test:], y[n_test:]
    n_val = int(round(0.15 * len(x_tr)))
    return Dataset("digits", x_tr[n_val:], y_tr[n_val:], x_tr[:n_val], y_tr[:n_val], x_te, y_te)


def from_npz(path) -> Dataset:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable .npz ({err})") from None
    need = ["x_train", "y_train", "x_test", "y_test"]
    missing = [k for k in need if k not in arrays]
    if missing:
        raise DataError(f"{path}: missing arrays {missing} (need {need}, optionally x_val, y_val)")
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise DataError(f"{path}: give both x_val and y_val, or neither")

    def xs(a, name):
        a = np.asarray(a)
        if a.dtype == np.uint8:
            return a.astype(np.float32) / 255.0
        if not np.issubdtype(a.dtype, np.floating):
            raise DataError(f"{path}: {name} must be float or uint8 images, got {a.dtype}")
        return a.astype(np.float32)

    def ys(a, name):
        a = np.asarray(a)
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
            raise DataError(f"{path}: {name} must be a 1-D integer class-index array, got {a.dtype} {a.shape}")
        return a.astype(np.int64)

    x_tr, y_tr = xs(arrays["x_train"], "x_train"), ys(arrays["y_train"], "y_train")
    x_te, y_te = xs(arrays["x_test"], "x_test"), ys(arrays["y_test"], "y_test")
    for xa, ya, name in ((x_tr, y_tr, "train"), (x_te, y_te, "test")):
        if len(xa) != len(ya):
            raise DataError(f"{path}: {len(xa)} {name} examples but {len(ya)} labels")
    val = None
    if "x_val" in arrays:
        val = (xs(arrays["x_val"], "x_val"), ys(arrays["y_val"], "y_val"))
    x_tr, y_tr, x_val, y_val = _split_val(x_tr, y_tr, val)
    return Dataset(path.stem, x_tr, y_tr, x_val, y_val, x_te, y_te)


def load_data(spec) -> Dataset:
    """``"fashion-mnist"``, ``"digits"``, a path to an ``.npz``, or a :class:`Dataset`."""
    if isinstance(spec, Dataset):
        return spec
    if spec == "fashion-mnist":
        return fashion_mnist()
    if spec == "digits":
        return digits()
    if str(spec).endswith(".npz"):
        return from_npz(spec)
    raise DataError(f"unknown data '{spec}': use fashion-mnist, digits or a FILE.npz")
