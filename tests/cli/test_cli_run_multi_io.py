"""Several inputs and outputs end to end: ``dtmm compile`` a two-input, two-output int8 model (and a
model with float32 input and output), ``dtmm run`` it on QEMU feeding ``--inputs a.npy,b.npy`` or
an ``.npz`` keyed by input name, and compare every output with TFLM."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from dtmm_tvm.cli.main import main
from dtmm_tvm.codegen import read_metadata
from dtmm_tvm.reference import run_tflm_outputs

OPS = Path(__file__).resolve().parents[1] / "fixtures" / "ops"


@pytest.fixture
def needs_toolchain():
    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm", "make") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")


def _compile(tmp_path, capsys, name, target):
    artifact = tmp_path / f"{name}.tar"
    assert main(["compile", str(OPS / f"{name}.tflite"), "--target", target, "-o", str(artifact)]) == 0
    capsys.readouterr()
    return artifact, read_metadata(artifact)


def _random(spec, count, rng):
    shape = [count] + spec["shape"]
    if spec["dtype"] == "int8":
        return rng.integers(-128, 128, size=shape).astype(np.int8)
    return rng.uniform(-3, 3, size=shape).astype(np.float32)


@pytest.mark.parametrize("target, board, feed", [("dtmm/cortex-m4", "mps2-an386", "npy"),
                                                 ("dtmm/cortex-m55", "mps3-an547", "npz")])
def test_two_inputs_two_outputs_bit_exact_on_qemu(tmp_path, capsys, needs_toolchain, target, board, feed):
    artifact, meta = _compile(tmp_path, capsys, "more_combined", target)
    assert len(meta["inputs"]) == 2 and len(meta["outputs"]) == 2
    rng = np.random.default_rng(5)
    xs = [_random(spec, 3, rng) for spec in meta["inputs"]]
    if feed == "npy":
        paths = [tmp_path / f"in{i}.npy" for i in range(2)]
        for path, x in zip(paths, xs):
            np.save(path, x)
        inputs = ",".join(map(str, paths))
        outs = [tmp_path / "o0.npy", tmp_path / "o1.npy"]
        out_arg = ",".join(map(str, outs))
    else:
        inputs = tmp_path / "in.npz"
        np.savez(inputs, **{spec["name"]: x for spec, x in zip(meta["inputs"], xs)})
        out_arg = tmp_path / "out.npz"
    assert main(["run", str(artifact), "--board", board, "--inputs", str(inputs), "--outputs", str(out_arg)]) == 0
    if feed == "npy":
        got = [np.load(p) for p in outs]
    else:
        with np.load(out_arg) as archive:
            got = [archive[spec["name"]] for spec in meta["outputs"]]
    expected = run_tflm_outputs((OPS / "more_combined.tflite").read_bytes(), xs)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g.reshape(e.shape), e)


def test_float_input_and_output_on_qemu(tmp_path, capsys, needs_toolchain):
    artifact, meta = _compile(tmp_path, capsys, "more_float_io", "dtmm/cortex-m4")
    assert meta["inputs"][0]["dtype"] == meta["outputs"][0]["dtype"] == "float32"
    x = _random(meta["inputs"][0], 2, np.random.default_rng(6))
    inputs, outputs = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(inputs, x)
    assert main(["run", str(artifact), "--inputs", str(inputs), "--outputs", str(outputs)]) == 0
    (expected,) = run_tflm_outputs((OPS / "more_float_io.tflite").read_bytes(), x)
    np.testing.assert_array_equal(np.load(outputs), expected)


def test_inputs_must_match_the_model(tmp_path, capsys):
    artifact, meta = _compile(tmp_path, capsys, "more_combined", "dtmm/cortex-m4")
    one = tmp_path / "one.npy"
    np.save(one, _random(meta["inputs"][0], 1, np.random.default_rng(0)))
    status = main(["run", str(artifact), "--inputs", str(one)])
    err = capsys.readouterr().err
    assert status == 2 and "1 file(s) for 2 model input(s)" in err and err.count("\n") == 1
    archive = tmp_path / "in.npz"
    np.savez(archive, wrong=np.zeros(3, np.int8))
    status = main(["run", str(artifact), "--inputs", str(archive)])
    err = capsys.readouterr().err
    assert status == 2 and "no array for model input" in err and meta["inputs"][0]["name"] in err
    status = main(["run", str(artifact), "--inputs", f"{one},{one}", "--outputs", str(tmp_path / "only_one.npy")])
    assert status == 2 and "1 file(s) for 2 model output(s)" in capsys.readouterr().err
