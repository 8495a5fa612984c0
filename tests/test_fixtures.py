"""Checks on the test-model zoo and the Fashion-MNIST demo model.

Runs in the project venv (no TensorFlow): models are read with the ``tflite``
flatbuffer package and executed with TensorFlow Lite Micro (``tflite-micro``)
or onnxruntime. It verifies that the fixtures are what ``manifest.json`` says
they are, so later stages can trust the manifest:

* every valid TFLite fixture loads in TFLM and runs on a random input, with
  the manifest's input/output shapes and dtypes;
* the ONNX fixtures run in onnxruntime;
* the operator set and the per-layer filterlet sparsity stated in the
  manifest hold in the stored (int8) weights;
* each bad-input fixture really has the defect it is meant to have;
* the demo model's TFLM accuracy on ``test_subset.npz`` matches
  ``training_report.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tflite
from tflite.BuiltinOperator import BuiltinOperator
from tflite.TensorType import TensorType

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "models"
DEMO = ROOT / "models" / "fashion_mnist"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())["models"]

OP_NAMES = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
TYPE_NAMES = {v: k for k, v in vars(TensorType).items() if not k.startswith("_")}
# numpy view of a raw flatbuffer buffer, by TFLite tensor type.
NP_TYPES = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32,
            "INT64": np.int64, "FLOAT32": np.float32, "FLOAT16": np.float16}
MCU_RAM = 4 * 1024 * 1024


def entries(fmt: str, kind: str) -> list:
    return [e for e in MANIFEST if e["format"] == fmt and e["kind"] == kind]


def ids(es: list) -> list:
    return [e["name"] for e in es]


# --------------------------------------------------------------------------
# A minimal TFLite reader on top of the `tflite` flatbuffer package
# --------------------------------------------------------------------------
class TFLiteFile:
    """Operators and constant tensors of subgraph 0 of a .tflite file."""

    def __init__(self, path: Path):
        self.data = path.read_bytes()
        self.model = tflite.Model.GetRootAsModel(self.data, 0)
        self.graph = self.model.Subgraphs(0)

    def op_name(self, i: int) -> str:
        code = self.model.OperatorCodes(self.graph.Operators(i).OpcodeIndex())
        # Builtin codes >= 127 live in BuiltinCode(); older files only set the
        # deprecated int8 field. The larger of the two is the real one.
        return OP_NAMES[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]

    def ops(self) -> list:
        return [self.op_name(i) for i in range(self.graph.OperatorsLength())]

    def inputs(self, i: int) -> list:
        return [int(t) for t in self.graph.Operators(i).InputsAsNumpy()]

    def tensor_type(self, t: int) -> str:
        return TYPE_NAMES[self.graph.Tensors(t).Type()]

    def shape(self, t: int) -> list:
        return [int(d) for d in self.graph.Tensors(t).ShapeAsNumpy()]

    def shape_signature(self, t: int) -> list:
        sig = self.graph.Tensors(t).ShapeSignatureAsNumpy()
        return [int(d) for d in sig] if not isinstance(sig, int) else self.shape(t)

    def constant(self, t: int) -> np.ndarray:
        """The stored value of a constant tensor, typed and shaped."""
        tensor = self.graph.Tensors(t)
        raw = self.model.Buffers(tensor.Buffer()).DataAsNumpy()
        assert not isinstance(raw, int), f"tensor {t} has no data"
        return raw.view(NP_TYPES[self.tensor_type(t)]).reshape(self.shape(t))

    def conv_weights(self) -> list:
        """(op index, stored OHWI weights) of every CONV_2D, in graph order.

        Weights fed through a DEQUANTIZE (float16 models) are read at its input.
        """
        producer = {}
        for i in range(self.graph.OperatorsLength()):
            for t in self.graph.Operators(i).OutputsAsNumpy():
                producer[int(t)] = i
        out = []
        for i, name in enumerate(self.ops()):
            if name != "CONV_2D":
                continue
            w = self.inputs(i)[1]
            if w in producer and self.op_name(producer[w]) == "DEQUANTIZE":
                w = self.inputs(producer[w])[0]
            out.append((i, self.constant(w)))
        return out


def filterlet_stats(w_ohwi: np.ndarray) -> tuple:
    """(zero filterlets, filterlets, zero whole filters) of an OHWI kernel."""
    zero_fl = np.all(w_ohwi == 0, axis=3)
    return int(zero_fl.sum()), int(zero_fl.size), int(np.all(w_ohwi == 0, axis=(1, 2, 3)).sum())


def tflm(data: bytes, arena: int = 1 << 20):
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(data, arena_size=arena)


def random_input(shape: list, dtype: str, rng: np.random.Generator) -> np.ndarray:
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.uniform(-1, 1, size=shape).astype(dtype)


# --------------------------------------------------------------------------
# Manifest sanity
# --------------------------------------------------------------------------
def test_manifest_files_exist_and_small():
    total = 0
    for e in MANIFEST:
        path = FIXTURES / e["file"]
        assert path.is_file(), e["file"]
        assert path.stat().st_size == e["bytes"], f"{e['file']} changed since the manifest"
        total += e["bytes"]
    assert total < 1024 * 1024
    names = [e["name"] for e in MANIFEST]
    assert len(names) == len(set(names))


# --------------------------------------------------------------------------
# Valid TFLite fixtures
# --------------------------------------------------------------------------
@pytest.mark.parametrize("entry", entries("tflite", "valid"), ids=ids(entries("tflite", "valid")))
def test_tflite_runs_in_tflm(entry):
    rng = np.random.default_rng(0)
    interp = tflm((FIXTURES / entry["file"]).read_bytes())
    for k, spec in enumerate(entry["inputs"]):
        d = interp.get_input_details(k)
        assert list(d["shape"]) == spec["shape"]
        assert np.dtype(d["dtype"]).name == spec["dtype"]
        interp.set_input(random_input(spec["shape"], spec["dtype"], rng), k)
    interp.invoke()
    for k, spec in enumerate(entry["outputs"]):
        y = interp.get_output(k)
        assert list(y.shape) == spec["shape"] and y.dtype.name == spec["dtype"]
        if entry["op_list"][-1] == "SOFTMAX":
            # A softmax output is a probability vector: sanity-check the scale.
            p = (y.astype(np.float64) - (spec["zero_point"] or 0)) * (spec["scale"] or 1.0)
            assert abs(p.sum() - 1.0) < 0.1


@pytest.mark.parametrize("entry", [e for e in MANIFEST if e["format"] == "tflite"
                                   and e["ops"]], ids=lambda e: e["name"])
def test_tflite_ops_and_sparsity(entry):
    f = TFLiteFile(FIXTURES / entry["file"])
    assert f.ops() == entry["op_list"]
    assert sorted(set(f.ops())) == entry["ops"]
    convs = f.conv_weights()
    assert len(convs) == len(entry["conv_layers"])
    quantized = entry["inputs"][0]["dtype"] in ("int8", "int16")
    for (op_index, w), layer in zip(convs, entry["conv_layers"]):
        assert op_index == layer["op_index"]
        if quantized:
            assert w.dtype == np.int8, f"{layer['layer']}: weights {w.dtype}"
        assert list(w.shape) == [layer["cout"], *layer["kernel"], layer["cin"]]
        zero_fl, n_fl, zero_f = filterlet_stats(w)
        assert (zero_fl, n_fl, zero_f) == (layer["zero_filterlets"], layer["filterlets"],
                                          layer["zero_filters"]), layer["layer"]
        assert zero_fl / n_fl == pytest.approx(layer["filterlet_sparsity"], abs=1e-4)


def test_zoo_covers_intended_sparsities_and_ops():
    """The zoo as a whole exercises what the compiler must handle."""
    valid = entries("tflite", "valid")
    ops = set().union(*(e["ops"] for e in valid))
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "AVERAGE_POOL_2D",
            "MAX_POOL_2D", "MEAN", "RESHAPE", "SOFTMAX"} <= ops
    layers = [c for e in valid for c in e["conv_layers"]]
    sparsities = {round(c["filterlet_sparsity"], 1) for c in layers}
    assert {0.0, 0.5, 0.8, 0.9} <= sparsities            # 0.75 rounds to 0.8
    assert any(c["filterlet_sparsity"] == 0.75 for c in layers)
    kernels = {tuple(c["kernel"]) for c in layers}
    assert {(1, 1), (3, 3), (5, 5), (10, 4)} <= kernels
    assert any(c["stride"] == [2, 2] for c in layers)
    # A layer with whole filters deliberately zeroed on top of filterlets.
    ladder = next(e for e in valid if e["name"] == "sparsity_ladder")
    assert ladder["conv_layers"][-1]["zero_filters"] == 4


# --------------------------------------------------------------------------
# ONNX fixtures
# --------------------------------------------------------------------------
@pytest.mark.parametrize("entry", entries("onnx", "valid"), ids=ids(entries("onnx", "valid")))
def test_onnx_runs_and_sparsity(entry):
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    path = FIXTURES / entry["file"]
    model = onnx.load(path)
    onnx.checker.check_model(model)
    assert sorted({n.op_type for n in model.graph.node}) == entry["ops"]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, entry["inputs"][0]["shape"]).astype(np.float32)
    (y,) = sess.run(None, {sess.get_inputs()[0].name: x})
    assert list(y.shape) == entry["outputs"][0]["shape"]
    assert abs(float(y.sum()) - 1.0) < 1e-2                 # softmax output

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == len(entry["conv_layers"])
    for node, layer in zip(convs, entry["conv_layers"]):
        name = node.input[1]
        if name not in inits:                                # QDQ: int8 weights behind DQ
            dq = producer[name]
            assert dq.op_type == "DequantizeLinear"
            name = dq.input[0]
            assert inits[name].dtype == np.int8
        w_ohwi = np.transpose(inits[name], (0, 2, 3, 1))    # filterlet = W[o, :, kh, kw]
        assert filterlet_stats(w_ohwi) == (layer["zero_filterlets"], layer["filterlets"],
                                           layer["zero_filters"]), layer["layer"]


# --------------------------------------------------------------------------
# Bad inputs: each has exactly the defect it is meant to have
# --------------------------------------------------------------------------
def bad(name: str) -> dict:
    return next(e for e in MANIFEST if e["name"] == name and e["kind"] == "bad")


def test_bad_not_a_model_and_truncated():
    text = (FIXTURES / bad("not_a_model")["file"]).read_bytes()
    assert not tflite.Model.ModelBufferHasIdentifier(text, 0)
    full = (FIXTURES / "conv_basic.tflite").read_bytes()
    trunc = (FIXTURES / bad("truncated")["file"]).read_bytes()
    assert full.startswith(trunc) and len(trunc) == len(full) // 2
    for data in (text, trunc):
        with pytest.raises(Exception):
            tflm(data)


def test_bad_float16_weights():
    f = TFLiteFile(FIXTURES / bad("float16_weights")["file"])
    assert "DEQUANTIZE" in f.ops()
    assert all(w.dtype == np.float16 for _, w in f.conv_weights())


def test_bad_int16_activations():
    e = next((e for e in MANIFEST if e["name"] == "int16x8"), None)
    if e is None:
        pytest.skip("the converter refused 16x8 quantization when the fixtures were made")
    f = TFLiteFile(FIXTURES / e["file"])
    inp = int(f.graph.InputsAsNumpy()[0])
    assert f.tensor_type(inp) == "INT16"
    assert all(w.dtype == np.int8 for _, w in f.conv_weights())


def test_bad_dynamic_batch():
    f = TFLiteFile(FIXTURES / bad("dynamic_batch")["file"])
    inp = int(f.graph.InputsAsNumpy()[0])
    assert f.shape_signature(inp)[0] == -1


def test_bad_unsupported_op():
    assert "TANH" in TFLiteFile(FIXTURES / bad("unsupported_tanh")["file"]).ops()


def test_bad_huge_activations():
    e = bad("huge_activations")
    f = TFLiteFile(FIXTURES / e["file"])
    largest = max(int(np.prod(f.shape(t))) for t in range(f.graph.TensorsLength())
                  if f.model.Buffers(f.graph.Tensors(t).Buffer()).DataLength() == 0)
    assert largest > MCU_RAM                # one int8 activation alone exceeds 4 MiB
    assert e["bytes"] < 16 * 1024


# --------------------------------------------------------------------------
# The Fashion-MNIST demo model
# --------------------------------------------------------------------------
def test_demo_model_accuracy_and_sparsity():
    report = json.loads((DEMO / "training_report.json").read_text())
    data = (DEMO / "fashion_cnn_filterlet_int8.tflite").read_bytes()
    assert len(data) < 60 * 1024
    sub = np.load(DEMO / "test_subset.npz")
    x, y = sub["x_int8"], sub["y"]
    assert x.shape == (200, 28, 28, 1) and x.dtype == np.int8 and sub["x_uint8"].dtype == np.uint8

    interp = tflm(data, arena=256 * 1024)
    q = interp.get_input_details(0)["quantization_parameters"]
    assert float(q["scales"][0]) == pytest.approx(float(sub["input_scale"]))
    assert int(q["zero_points"][0]) == int(sub["input_zero_point"])
    preds = []
    for i in range(len(x)):
        interp.set_input(x[i:i + 1], 0)
        interp.invoke()
        preds.append(int(np.argmax(interp.get_output(0)[0])))
    acc = float(np.mean(np.array(preds) == y))
    accs = report["accuracy"]
    # Same 200 images as the report's subset figure: must agree within a point.
    assert abs(acc - accs["int8_pruned_tflm_test_subset_200"]) <= 0.01
    # And 200 images are a fair sample of the full 10000-image test accuracy.
    assert abs(acc - accs["int8_pruned_tflm"]) <= 0.05

    f = TFLiteFile(DEMO / "fashion_cnn_filterlet_int8.tflite")
    convs = f.conv_weights()
    stated = list(report["filterlet_sparsity"].items())
    filters = {row["layer"]: row["filters"] for row in report["layers"] if row["kind"] == "conv"}
    assert len(convs) == len(stated)
    for (_, w), (name, layer) in zip(convs, stated):
        assert w.dtype == np.int8
        assert filterlet_stats(w)[0] == layer["zero_filterlets"]
        assert w.shape[0] == layer["cout"] == filters[name]  # removed filters are gone from the file
    # The pruner's own check of the compiled artifact: the budget it reports as met is met.
    budget, compiled = report["budget"], report["compiled"]
    assert compiled["constants_bytes"] <= budget["flash_bytes"]
    assert compiled["instructions"] <= budget["instructions"] and compiled["instructions"] < compiled["dense_instructions"]
