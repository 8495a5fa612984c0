"""Bad input, part two: other quantization schemes, importer failures, out-of-range options,
an .npz without the model's input, a closed stdout pipe — one clear line (or silence, for the pipe),
exit status 2, never a traceback nor a TVM log line after the message."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dtmm_tvm.cli.main import main
from dtmm_tvm.compiler import compile_model
from dtmm_tvm.errors import DTMMError

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "models"
FAKE_ARTIFACT = ROOT / "tests" / "micro" / "fake_artifact"


def _dtmm(capsys, *argv):
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize(
    "fixture, what, how",
    [
        ("hybrid_dynamic_range.tflite", "a hybrid (dynamic-range quantized) model", "TFLM cannot run hybrid models either"),
        ("float16_weights.tflite", "a float16-quantized model", "drop target_spec.supported_types = [tf.float16]"),
        ("int16x8.tflite", "an int16x8 model", "TFLITE_BUILTINS_INT8"),
    ],
)
def test_other_quantization_schemes_say_what_the_model_is_and_how_to_reexport(tmp_path, capsys, fixture, what, how):
    status, _, err = _dtmm(capsys, "compile", FIXTURES / fixture, "-o", tmp_path / "out.tar")
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"{fixture}: " in err and what in err and how in err, err
    assert "re-export" in err
    assert list(tmp_path.iterdir()) == []


def test_run_time_shape_computation_that_cannot_be_folded_is_refused():
    """Keras 3's Flatten with a dynamic batch (SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE) is folded
    to a constant shape (the zoo's keras_flatten_mlp runs it); a SHAPE of a tensor with another
    dynamic dimension is still refused, naming the operator."""
    from dtmm_tvm.errors import UnsupportedOpError
    from dtmm_tvm.frontend.shape_folding import fold_batch_shapes
    from dtmm_tvm.frontend.tflite_reader import read_tflite

    graph = read_tflite((FIXTURES / "keras_flatten_dynamic_batch.tflite").read_bytes(), name="k.tflite")
    folded = fold_batch_shapes(graph)
    assert folded.ops == {1, 2, 3} and folded.values[11].tolist() == [1, 128]
    x = graph.tensor(8)
    graph.tensors[8] = type(x)(**{**x.__dict__, "shape_signature": (-1, -1, 4, 8)})
    with pytest.raises(UnsupportedOpError, match=r"operator 1 SHAPE: SHAPE of .* only the batch"):
        fold_batch_shapes(graph)


# Runs the CLI with TVM's TFLite importer made to fail inside its op conversion, as it does on a
# model it cannot convert: the half-built Relax function must not leave TVM's "BlockBuilder
# destroyed with remaining blocks!" warning after our message.
_FAILING_IMPORT = """
import sys
from dtmm_tvm.frontend import tflite_import
def fail(self, op, **kwargs):
    raise ValueError("cannot convert this operator")
tflite_import.TFLMOperatorConverter.convert_conv = fail
from dtmm_tvm.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_importer_error_is_the_last_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", _FAILING_IMPORT, "compile", str(FIXTURES / "conv_kernels.tflite"), "-o",
         str(tmp_path / "out.tar")],
        capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "TVM's importer rejected the model: cannot convert this operator" in result.stderr
    assert "BlockBuilder" not in result.stderr


@pytest.mark.parametrize("value, message", [("1.5", "outside [0, 1)"), ("-0.1", "outside [0, 1)"),
                                             ("nan", "outside [0, 1)"), ("lots", "not a number")])
def test_threshold_out_of_range(tmp_path, capsys, value, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["compile", str(FIXTURES / "conv_kernels.tflite"), "-o", str(tmp_path / "o.tar"), "--threshold", value])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert "argument --threshold" in err and message in err, err
    with pytest.raises(SystemExit):
        main(["tune", str(FIXTURES / "conv_kernels.tflite"), "-o", str(tmp_path / "r.json"), "--threshold", value])
    assert message in capsys.readouterr().err


def test_threshold_out_of_range_from_python(tmp_path):
    with pytest.raises(DTMMError, match=r"threshold 1\.0 is outside \[0, 1\)"):
        compile_model(FIXTURES / "conv_kernels.tflite", tmp_path / "o.tar", threshold=1.0)
    assert not (tmp_path / "o.tar").exists()


def test_npz_inputs_without_the_model_inputs_name_get_one_line(tmp_path, capsys):
    """An .npz is keyed by input name (tvmc style); one that lacks the model's input says so."""
    inputs = tmp_path / "x.npz"
    np.savez(inputs, not_an_input=np.zeros((1, 16), np.int8))
    status, _, err = _dtmm(capsys, "run", FAKE_ARTIFACT, "--inputs", inputs)
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "x.npz" in err and "no array for model input" in err and "not_an_input" in err, err


def test_closed_stdout_pipe_is_quiet(tmp_path):
    """`dtmm inspect m.tflite | head -0`: the reader is gone before dtmm writes."""
    proc = subprocess.Popen([sys.executable, "-m", "dtmm_tvm.cli.main", "inspect", str(FIXTURES / "everything.tflite")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait() == 141, err
    assert err == "", err
