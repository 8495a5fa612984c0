"""Bad input gets one clear error naming the file, op or limit; nothing is left half written and
nothing the user had is overwritten."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dtmm_tvm.cli.main import main

FIXTURES = Path(__file__).parent.parent / "fixtures" / "models"


def _dtmm(capsys, *argv):
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize(
    "fixture, message",
    [
        ("not_a_model.tflite", r"not_a_model\.tflite: not a TFLite flatbuffer"),
        ("truncated.tflite", r"truncated\.tflite: corrupt or truncated TFLite flatbuffer"),
        ("float16_weights.tflite", r"float16_weights\.tflite: .*float16"),
        ("int16x8.tflite", r"int16x8\.tflite: .*int16"),
        # TANH (unsupported_tanh.tflite) has a lowering now; EXP has none. The line names the op,
        # its index, its tensors and options.
        ("../ops/more_unsupported_exp.tflite",
         r"more_unsupported_exp\.tflite: operator 0 EXP \(output '.*'\) \[int8\[1, 4, 4, 2\] -> int8\[1, 4, 4, 2\]\] is not supported"),
    ],
)
def test_bad_models_get_one_clear_line(tmp_path, capsys, fixture, message):
    out = tmp_path / "out.tar"
    status, _, err = _dtmm(capsys, "compile", FIXTURES / fixture, "-o", out)
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert __import__("re").search(message, err), err
    assert list(tmp_path.iterdir()) == []  # nothing half written


def _with_dynamic_height(tmp_path) -> Path:
    """dynamic_batch.tflite (batch -1, which runs as batch 1) with its input's height made -1 too."""
    import struct

    import tflite

    buf = bytearray((FIXTURES / "dynamic_batch.tflite").read_bytes())
    graph = tflite.Model.GetRootAsModel(buf, 0).Subgraphs(0)
    tensor = graph.Tensors(int(graph.Inputs(0)))
    assert tensor.ShapeSignature(0) == -1 and tensor.ShapeSignature(1) == 8
    signature = tensor._tab.Vector(tensor._tab.Offset(18))  # Tensor.shape_signature
    struct.pack_into("<i", buf, signature + 4, -1)
    path = tmp_path / "dynamic_height.tflite"
    path.write_bytes(bytes(buf))
    return path


def test_dynamic_dimension_other_than_batch_is_refused(tmp_path, capsys):
    model = _with_dynamic_height(tmp_path)
    out = tmp_path / "out.tar"
    status, _, err = _dtmm(capsys, "compile", model, "-o", out)
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "dynamic_height.tflite: tensor" in err and "[-1, -1, 8, 3] (axis 1)" in err, err
    assert "only a dynamic batch" in err and not out.exists()


def test_onnx_dynamic_dimension_other_than_batch_is_refused(tmp_path, capsys):
    import onnx

    model = onnx.load(FIXTURES / "onnx_conv_float.onnx")
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    path = tmp_path / "dynamic_height.onnx"
    onnx.save(model, path)
    status, _, err = _dtmm(capsys, "compile", path, "-o", tmp_path / "out.tar")
    assert status == 2 and err.count("\n") == 1
    assert "dynamic_height.onnx: tensor" in err and "('height', axis 2)" in err, err


def test_model_too_big_for_the_board_names_the_limit(tmp_path, capsys):
    out = tmp_path / "out.tar"
    status, _, err = _dtmm(capsys, "compile", FIXTURES / "huge_activations.tflite", "-o", out)
    assert status == 2
    assert "mps2-an386" in err and "RAM" in err and "bytes" in err, err
    assert not out.exists()


def test_missing_file(tmp_path, capsys):
    status, _, err = _dtmm(capsys, "compile", tmp_path / "nope.tflite", "-o", tmp_path / "o.tar")
    assert status == 2 and "nope.tflite: no such file" in err


def test_existing_output_is_never_replaced_without_force(tmp_path, capsys):
    out = tmp_path / "out.tar"
    out.write_bytes(b"precious")
    status, _, err = _dtmm(capsys, "compile", FIXTURES / "conv_kernels.tflite", "-o", out)
    assert status == 2 and "--force" in err
    assert out.read_bytes() == b"precious"
    status, _, _ = _dtmm(capsys, "compile", FIXTURES / "conv_kernels.tflite", "-o", out, "--force")
    assert status == 0 and out.read_bytes() != b"precious"


def test_run_checks_inputs_and_protects_outputs(tmp_path, capsys):
    artifact = tmp_path / "m.tar"
    assert _dtmm(capsys, "compile", FIXTURES / "conv_kernels.tflite", "-o", artifact)[0] == 0
    meta = json.loads(subprocess.run(["tar", "-xOf", str(artifact), "metadata.json"], capture_output=True, check=True).stdout)
    shape = meta["inputs"][0]["shape"]
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 3, 3), np.int8))
    status, _, err = _dtmm(capsys, "run", artifact, "--inputs", wrong, "--json")
    assert status == 2 and "wrong.npy" in err and str(shape[1:]).replace(" ", "")[1:-1] in err.replace(" ", "")
    floats = tmp_path / "floats.npy"
    np.save(floats, np.zeros([2] + shape, np.float32))
    status, _, err = _dtmm(capsys, "run", artifact, "--inputs", floats)
    assert status == 2 and "float32" in err and "int8" in err
    good = tmp_path / "in.npy"
    np.save(good, np.zeros([2] + shape[1:], np.int8))  # without the batch dimension
    outputs = tmp_path / "out.npy"
    outputs.write_bytes(b"keep me")
    status, _, err = _dtmm(capsys, "run", artifact, "--inputs", good, "--outputs", outputs)
    assert status == 2 and "--force" in err and outputs.read_bytes() == b"keep me"


def test_cli_entry_point_runs_as_a_program(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dtmm_tvm.cli.main", "compile", str(FIXTURES / "not_a_model.tflite"),
                             "-o", str(tmp_path / "x.tar")], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_run_rejects_a_file_that_is_not_an_artifact(tmp_path, capsys):
    bogus = tmp_path / "bogus.tar"
    bogus.write_text("hello")
    inputs = tmp_path / "in.npy"
    np.save(inputs, np.zeros((1, 4), np.int8))
    status, _, err = _dtmm(capsys, "run", bogus, "--inputs", inputs)
    assert status == 2 and err.count("\n") == 1 and "bogus.tar: not a dtmm artifact" in err
