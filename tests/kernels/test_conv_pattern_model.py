"""The pattern-pruning baseline end to end: a TFLite int8 model with PatDNN-style pattern-pruned
3x3 convs (tests/fixtures/pattern/make_pattern_model.py) compiles with the pattern format and is
bit-exact with TFLM on the host (portable C) and on QEMU (Cortex-M4 DSP, Cortex-M55 MVE); a conv
whose weights exceed the pattern limits never gets the format."""

import ctypes
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from dtmm_tvm.compiler import compile_model
from dtmm_tvm.reference import run_tflm

MODEL = Path(__file__).resolve().parents[1] / "fixtures" / "pattern" / "pattern_convs.tflite"


def _conv_formats(meta):
    return [layer.get("format", "dense") for layer in meta["layers"] if layer.get("op") == "conv2d"]


def _inputs(meta, count=2):
    x = np.random.default_rng(11).integers(-128, 128, size=(count, *meta["inputs"][0]["shape"])).astype(np.int8)
    x[0] = -128
    return x


def _compile(tmp_path, target, monkeypatch, **kw):
    import relay_passes.filterlet_sparse_conv as fsc

    monkeypatch.setattr(fsc, "FORMATS_OVERRIDE", ("pattern",))
    out = tmp_path / f"{target.replace('/', '_')}.tar"
    return out, compile_model(MODEL, out, target=target, mode="dtmm", **kw)


def _check_formats(meta):
    layers = [layer for layer in meta["layers"] if layer.get("op") == "conv2d"]
    assert _conv_formats(meta) == ["pattern", "pattern", "dense"], _conv_formats(meta)
    a, b, c = layers
    assert (a["patterns"], b["patterns"]) == (8, 6)
    for layer in (a, b):
        assert layer["stored_weight_bytes"] == layer["format_bytes"]["pattern"] < layer["format_bytes"]["dense"]
        assert layer["index_bytes"] == 2 * layer["kept_kernels"] + 2 * layer["output_shape"][3] + 4 * layer["patterns"]
    # 24 distinct 4-tap patterns: over the limit, so not even a candidate
    assert "pattern" not in c.get("format_bytes", {}) and "pattern" not in c.get("format_choice", {}).get("bytes", {})


def test_pattern_model_on_the_host_is_bit_exact(tmp_path, monkeypatch):
    if shutil.which("gcc") is None:
        pytest.skip("host gcc not installed")
    archive, meta = _compile(tmp_path, "dtmm/portable", monkeypatch, optimize="size")
    _check_formats(meta)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    host = tmp_path / "x" / "codegen" / "host"
    lib = host / "libmodel.so"
    subprocess.run(["gcc", "-std=c99", "-O1", "-Wall", "-Werror", "-shared", "-fPIC", "-I", str(host / "include"),
                    *map(str, sorted((host / "src").glob("*.c"))), "-o", str(lib), "-lm"], check=True)
    model = ctypes.CDLL(str(lib))
    spec_in, spec_out = meta["inputs"][0], meta["outputs"][0]
    struct_in = type("In", (ctypes.Structure,), {"_fields_": [(spec_in["c_name"], ctypes.c_void_p)]})
    struct_out = type("Out", (ctypes.Structure,), {"_fields_": [(spec_out["c_name"], ctypes.c_void_p)]})
    x = _inputs(meta, 3)
    got = []
    for sample in x:
        sample = np.ascontiguousarray(sample)
        out = np.zeros(spec_out["shape"], np.int8)
        assert model.tvmgen_default_run(ctypes.byref(struct_in(sample.ctypes.data)),
                                        ctypes.byref(struct_out(out.ctypes.data))) == 0
        got.append(out)
    np.testing.assert_array_equal(np.stack(got), run_tflm(MODEL.read_bytes(), x))


@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                    reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("target,board", [("dtmm/cortex-m4", "mps2-an386"), ("dtmm/cortex-m55", "mps3-an547")])
def test_pattern_model_on_qemu_is_bit_exact(tmp_path, monkeypatch, target, board):
    from dtmm_tvm.micro import run_artifact

    # optimize="size": the pattern format on both pattern layers whatever the predicted speed
    # (the speed decision is tested in tests/passes/test_format_choice_pattern.py)
    archive, meta = _compile(tmp_path, target, monkeypatch, optimize="size")
    _check_formats(meta)
    x = _inputs(meta)
    got = run_artifact(archive, board, x)
    expected = run_tflm(MODEL.read_bytes(), x)
    np.testing.assert_array_equal(got.outputs.reshape(expected.shape), expected)


def test_inspect_shows_the_pattern_format(tmp_path, monkeypatch, capsys):
    from dtmm_tvm.cli.main import main

    assert main(["inspect", str(MODEL), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["patterns"] for r in rows] == [8, 6, None]
    assert "limit 16" in rows[2]["pattern_reason"]
