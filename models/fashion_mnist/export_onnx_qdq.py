"""Export the Fashion-MNIST CNN to ONNX (NCHW) and quantize it the way PyTorch users do: QDQ int8.

PyTorch is not installed here, so the ONNX graph is written with ``onnx.helper`` from the weights
of the committed TFLite models (``train.py``'s network): each int8 weight tensor is dequantized
with its per-channel scales (exact float32 values; pruned filterlets stay exactly zero), each int32
bias with ``input_scale * weight_scale``. The float graph is the network as
``torch.onnx.export`` would write it (Conv+Relu, MaxPool, GlobalAveragePool, Flatten, Gemm,
Softmax; TensorFlow's SAME padding of the stride-2 conv becomes explicit pads ``[0, 0, 1, 1]``).
It is then quantized with ``onnxruntime.quantization.quantize_static(..., QuantFormat.QDQ)``,
int8 activations and weights, calibrated on the first 200 Fashion-MNIST *training* images
(Debian ``dataset-fashion-mnist``), per-channel and per-tensor.

Both models are quantized with ``reduce_range=True`` (7-bit weights), as onnxruntime's
documentation recommends for x86 CPUs without VNNI: there ORT's u8 x s8 GEMM (``vpmaddubsw``)
saturates the sum of two adjacent products at int16, so with full-range weights ORT's
outputs depend on the host CPU (measured on an AVX2 host: per-channel, 140 of the 200 test_subset
outputs off by up to 40 LSB; per-tensor, 44 of 600 outputs off by up to 13 LSB on the pruner's
demo model).
With 7-bit weights the pair sums fit int16 (255 * 64 * 2 < 32768) and ORT is exact on every host,
which makes the model a stable bit-exact reference. ``--full-range`` writes the per-channel model
with 8-bit weights instead (``*_qdq_per_channel_full_range.onnx``, not committed).

Outputs (next to this file; the filterlet-pruned network, ~45 KB each)::

    fashion_cnn_filterlet_qdq_per_channel.onnx
    fashion_cnn_filterlet_qdq_per_tensor.onnx

``--dense`` writes the same two for the unpruned network (``fashion_cnn_dense_qdq_*.onnx``, not
committed) and ``--float`` keeps the float ONNX model (``*_float.onnx``) as well.

Run: ``.venv/bin/python models/fashion_mnist/export_onnx_qdq.py`` (a few seconds).
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
CALIBRATION_IMAGES = 200


def _read_idx_images(path: Path, count: int) -> np.ndarray:
    """The first ``count`` images of a gzipped IDX3 file as uint8 (count, 28, 28)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[:3] != b"\x00\x00\x08" or raw[3] != 3:
        raise ValueError(f"{path}: not a uint8 IDX3 file")
    dims = np.frombuffer(raw, ">u4", 3, 4).astype(int)
    return np.frombuffer(raw, np.uint8, count * dims[1] * dims[2], 16).reshape(count, dims[1], dims[2])


def float_weights(tflite_path: Path) -> dict:
    """Float32 weights of the TFLite int8 network: OIHW convs, [O] biases, Gemm [10, 64]."""
    sys.path.insert(0, str(HERE.parents[1]))
    from dtmm_tvm.frontend.tflite_reader import read_tflite

    graph = read_tflite(tflite_path)
    out = {}
    convs = [op for op in graph.operators if op.opcode in ("CONV_2D", "FULLY_CONNECTED")]
    for i, op in enumerate(convs):
        x_t, w_t, b_t = (graph.tensor(j) for j in op.inputs[:3])
        w_scale = w_t.scale.astype(np.float32)
        axes = (-1,) + (1,) * (w_t.data.ndim - 1)
        w = w_t.data.astype(np.float32) * w_scale.reshape(axes)
        b = b_t.data.astype(np.float32) * (np.float32(x_t.scale[0]) * w_scale)
        name = f"conv{i + 1}" if op.opcode == "CONV_2D" else "fc"
        out[name] = (np.ascontiguousarray(w.transpose(0, 3, 1, 2)) if w.ndim == 4 else w, b)  # OHWI -> OIHW
    return out


def build_float_model(weights: dict):
    """The network as an NCHW float ONNX model (opset 13)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes = [], []

    def conv(name, x, strides, pads):
        w, b = weights[name]
        inits.extend([numpy_helper.from_array(w, f"{name}.weight"), numpy_helper.from_array(b, f"{name}.bias")])
        nodes.append(helper.make_node("Conv", [x, f"{name}.weight", f"{name}.bias"], [f"{name}_out"], name=name,
                                      kernel_shape=list(w.shape[2:]), strides=strides, pads=pads))
        nodes.append(helper.make_node("Relu", [f"{name}_out"], [f"{name}_relu"], name=f"{name}_relu"))
        return f"{name}_relu"

    x = conv("conv1", "input", [1, 1], [1, 1, 1, 1])
    x = conv("conv2", x, [2, 2], [0, 0, 1, 1])  # TF SAME, stride 2 on 28: the odd pixel after
    x = conv("conv3", x, [1, 1], [1, 1, 1, 1])
    nodes.append(helper.make_node("MaxPool", [x], ["pool"], name="pool", kernel_shape=[2, 2], strides=[2, 2]))
    x = conv("conv4", "pool", [1, 1], [1, 1, 1, 1])
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1))
    fc_w, fc_b = weights["fc"]
    inits.extend([numpy_helper.from_array(fc_w, "fc.weight"), numpy_helper.from_array(fc_b, "fc.bias")])
    nodes.append(helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1))
    nodes.append(helper.make_node("Softmax", ["logits"], ["output"], name="softmax", axis=1))
    graph = helper.make_graph(nodes, "fashion_cnn",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 28, 28])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="dtmm-export")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def quantize(float_path: Path, out_path: Path, per_channel: bool, reduce_range: bool) -> None:
    """``quantize_static`` QDQ, int8 activations and weights, calibrated on training images."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    images = _read_idx_images(DATA_DIR / "train-images-idx3-ubyte.gz", CALIBRATION_IMAGES)
    batches = [{"input": (img.astype(np.float32) / 255.0)[None, None]} for img in images]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(float_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=per_channel, reduce_range=reduce_range, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8)


def export(kind: str, keep_float: bool, full_range: bool, directory: Path = HERE) -> list[Path]:
    import onnx

    model = build_float_model(float_weights(directory / f"fashion_cnn_{kind}_int8.tflite"))
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "float.onnx"
        onnx.save(model, float_path)
        if keep_float:
            onnx.save(model, directory / f"fashion_cnn_{kind}_float.onnx")
            written.append(directory / f"fashion_cnn_{kind}_float.onnx")
        variants = [("per_channel", True, True), ("per_tensor", False, True)]
        if full_range:
            variants.append(("per_channel_full_range", True, False))
        for suffix, per_channel, reduce_range in variants:
            out = directory / f"fashion_cnn_{kind}_qdq_{suffix}.onnx"
            quantize(float_path, out, per_channel, reduce_range)
            written.append(out)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dense", action="store_true", help="also export the unpruned network")
    ap.add_argument("--float", action="store_true", help="keep the float ONNX models too")
    ap.add_argument("--full-range", action="store_true", help="also a per-channel model with 8-bit weights")
    ap.add_argument("--dir", type=Path, default=HERE,
                    help="read fashion_cnn_*_int8.tflite from and write the ONNX models into this directory "
                         "(tests/fixtures/fashion_filterlet: the test fixtures)")
    args = ap.parse_args()
    for kind in ["filterlet"] + (["dense"] if args.dense else []):
        for path in export(kind, args.float, args.full_range, args.dir):
            print(f"{path.name}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
