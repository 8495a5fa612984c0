"""Models as the converter writes them (batch -1 in shape_signature), square weights and
FULLY_CONNECTED on N-D inputs: compiled, run on emulated cores, bit-exact with TFLM.

Fixtures: tests/fixtures/ops/make_layout_ops.py (square FC per-channel / per-tensor with and
without ReLU, 16x16 FC, depthwise multiplier 2 with a square kernel, 1x1 and pruned 3x3 convs with
Cin == Cout, pooling and MEAN on square maps, FC with keep_num_dims, FC on a 4-D input) and
tests/fixtures/models/dynamic_batch.tflite (Keras -> TFLiteConverter, batch -1 left as written).
"""

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from dtmm_tvm.compiler import compile_model
from dtmm_tvm.frontend.loader import load_model
from dtmm_tvm.micro import run_artifact
from dtmm_tvm.reference import run_tflm

OPS = Path(__file__).parent / "fixtures" / "ops"
MODELS = Path(__file__).parent / "fixtures" / "models"
BOARD = {"dtmm/cortex-m4": "mps2-an386", "dtmm/cortex-m55": "mps3-an547"}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")

    @lru_cache(maxsize=None)
    def build(model: Path, mode: str, target: str) -> str:
        out = root / f"{model.stem}-{mode}-{target.replace('/', '_')}.tar"
        compile_model(model, out, target=target, mode=mode)
        return str(out)

    return build


def _bit_exact(artifacts, model: Path, mode: str, target: str, count: int = 4) -> None:
    shape = load_model(model).inputs[0].shape
    x = np.random.default_rng(len(model.name)).integers(-128, 128, size=(count, *shape)).astype(np.int8)
    x[0], x[1] = -128, 127  # saturation and padding extremes
    expected = run_tflm(model.read_bytes(), x)
    result = run_artifact(artifacts(model, mode, target), BOARD[target], x)
    np.testing.assert_array_equal(result.outputs.reshape(expected.shape), expected)


@pytest.mark.parametrize(
    "model, mode, target",
    [
        (OPS / "layout_fc_square_per_channel.tflite", "dense", "dtmm/cortex-m4"),
        (OPS / "layout_fc_square_per_channel.tflite", "dense", "dtmm/cortex-m55"),
        (OPS / "layout_fc_square_per_tensor.tflite", "dense", "dtmm/cortex-m4"),
        (OPS / "layout_conv_square.tflite", "dense", "dtmm/cortex-m4"),
        (OPS / "layout_conv_square.tflite", "dtmm", "dtmm/cortex-m4"),
        (OPS / "layout_conv_square.tflite", "dtmm", "dtmm/cortex-m55"),
        (OPS / "layout_fc_keep_num_dims.tflite", "dense", "dtmm/cortex-m4"),
        (OPS / "layout_fc_4d_input.tflite", "dense", "dtmm/cortex-m4"),
        (MODELS / "dynamic_batch.tflite", "dtmm", "dtmm/cortex-m4"),
    ],
    ids=lambda v: v.stem if isinstance(v, Path) else v.replace("dtmm/", ""),
)
def test_bit_exact_with_tflm(artifacts, model, mode, target):
    _bit_exact(artifacts, model, mode, target)


def test_batch_minus_one_is_batch_one():
    model = load_model(MODELS / "dynamic_batch.tflite")
    assert model.tflite.tensor(model.tflite.inputs[0]).shape_signature[0] == -1
    assert model.inputs[0].shape == (1, 8, 8, 3) and model.outputs[0].shape == (1, 4)


def test_fully_connected_on_4d_input_is_one_row_of_all_elements():
    model = load_model(OPS / "layout_fc_4d_input.tflite")
    fc = [op for op in model.tflite.operators if op.opcode == "FULLY_CONNECTED"][0]
    assert model.tflite.tensor(fc.inputs[0]).shape == (1, 5, 4, 8)
    assert model.tflite.tensor(fc.inputs[1]).shape == (4, 160)
    assert model.outputs[0].shape == (1, 4)


def test_onnx_symbolic_batch_compiles_as_batch_one(tmp_path):
    import onnx

    static = MODELS / "onnx_conv_float.onnx"
    model = onnx.load(static)
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "N"  # clears dim_value: a symbolic batch
    symbolic = tmp_path / "symbolic.onnx"
    onnx.save(model, symbolic)
    loaded = load_model(symbolic)
    assert loaded.inputs[0].shape == load_model(static).inputs[0].shape
    compile_model(static, tmp_path / "static.tar", mode="dense")
    compile_model(symbolic, tmp_path / "symbolic.tar", mode="dense")
    import tarfile

    def sources(path):
        with tarfile.open(path) as tar:
            return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith((".c", ".h"))}

    assert sources(tmp_path / "static.tar") == sources(tmp_path / "symbolic.tar")
