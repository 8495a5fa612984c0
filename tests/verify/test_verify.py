"""``dtmm compile --verify`` and ``dtmm run --check``: they pass on correct code, and they can fail.

The failing cases inject a deliberate lowering bug in-process (the ADD's output zero point off by
3 in its requantization parameters) and check that the compile fails with exit status 2, writes
nothing and names the ADD as the first differing operator.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from dtmm_tvm.cli.main import main as dtmm

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RESNET_ISH = FIXTURES / "models" / "resnet_ish.tflite"  # CONV x3, ADD (operator 3), ..., FC, SOFTMAX
SINE = FIXTURES / "zoo" / "sine_mlp_int8.tflite"


def _dtmm(capsys, *argv):
    status = dtmm([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def broken_add(monkeypatch):
    """A lowering bug: every ADD's output offset is 3 too high (the C still builds and runs)."""
    import dtmm_tvm.quant.add as add

    correct = add.add_params

    def wrong(*args, **kwargs):
        params = correct(*args, **kwargs)
        return dataclasses.replace(params, output_offset=params.output_offset + 3)

    monkeypatch.setattr(add, "add_params", wrong)


def test_verify_passes_and_writes_the_archive(tmp_path, capsys):
    out = tmp_path / "sine.tar"
    status, stdout, stderr = _dtmm(capsys, "compile", SINE, "--target", "dtmm/cortex-m4", "-o", out, "--verify",
                                   "--verify-count", "5")
    assert status == 0, stderr
    assert "5 input(s), 1 output(s) bit-exact with TFLM" in stdout and out.is_file()


def test_verify_fails_naming_the_op_of_an_injected_lowering_bug(tmp_path, capsys, broken_add):
    out = tmp_path / "resnet.tar"
    status, stdout, stderr = _dtmm(capsys, "compile", RESNET_ISH, "-o", out, "--verify", "--verify-count", "3")
    assert status == 2 and not out.exists()
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "--verify failed" in lines[0] and "differs from TFLM" in lines[0]
    assert "first differing op: operator 3 ADD" in lines[0]
    assert "nearest kernel output add_" in lines[0]


def test_verify_inputs_from_a_file(tmp_path, capsys):
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.arange(-120, 120, 40, dtype=np.int8).reshape(6, 1))  # (N, 1): batch axis added
    out = tmp_path / "sine.tar"
    status, stdout, stderr = _dtmm(capsys, "compile", SINE, "-o", out, "--verify-inputs", inputs)
    assert status == 0, stderr
    assert "6 input(s)" in stdout


def test_verify_without_the_reference_says_so(tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m.startswith("tflite_micro")] + ["tflite_micro"]:
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    out = tmp_path / "sine.tar"
    status, stdout, stderr = _dtmm(capsys, "compile", SINE, "-o", out, "--verify")
    assert status == 2 and not out.exists()
    assert "cannot verify: TensorFlow Lite Micro" in stderr and "not installed" in stderr


def test_check_outputs_compares_and_can_fail(tmp_path):
    from dtmm_tvm.reference import run_tflm
    from dtmm_tvm.verify import VerificationError, check_outputs

    import hashlib

    raw = SINE.read_bytes()
    metadata = {"model": {"source": SINE.name, "sha256": hashlib.sha256(raw).hexdigest()},
                "outputs": [{"name": "y"}]}
    x = np.arange(-128, 128, 32, dtype=np.int8).reshape(8, 1, 1)
    y = run_tflm(raw, x)
    assert check_outputs(SINE, metadata, [x], [y]).ok
    wrong = y.copy()
    wrong[3, 0, 0] += 1
    with pytest.raises(VerificationError, match=r"output 'y' on 1/8 inputs \(1/8 values, max \|diff\| 1 LSB\)"):
        check_outputs(SINE, metadata, [x], [wrong])
    with pytest.raises(VerificationError, match="not the model this archive was compiled from"):
        check_outputs(RESNET_ISH, metadata, [x], [y])


def test_run_check_on_the_board(tmp_path, capsys):
    archive = tmp_path / "sine.tar"
    assert _dtmm(capsys, "compile", SINE, "-o", archive)[0] == 0
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.arange(-128, 128, 64, dtype=np.int8).reshape(4, 1))
    status, stdout, stderr = _dtmm(capsys, "run", archive, "--inputs", inputs, "--check", SINE)
    assert status == 0, stderr
    assert "outputs of 4 input(s) equal TFLM's" in stdout
    status, stdout, stderr = _dtmm(capsys, "run", archive, "--inputs", inputs, "--check", RESNET_ISH)
    assert status == 2 and "not the model this archive was compiled from" in stderr


def test_verify_an_onnx_model_against_onnxruntime(tmp_path):
    from dtmm_tvm.verify import verify_model

    report = verify_model(FIXTURES / "models" / "onnx_conv_float.onnx", count=3, workdir=tmp_path)
    assert report.ok and report.reference == "ONNX Runtime" and report.inputs == 3
