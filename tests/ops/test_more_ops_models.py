"""Every ``more_*`` fixture (one op or a few, int8 and float32, several inputs and outputs) compiled
through the whole pipeline to C, built for the host and run: int8 outputs bit-exact with TFLM,
float32 outputs within float rounding of TFLM."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import tvm

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "codegen"))

from codegen_helpers import compile_host_library, run_library  # noqa: E402

from dtmm_tvm.codegen import build_aot  # noqa: E402
from dtmm_tvm.compiler import lower_model  # noqa: E402
from dtmm_tvm.frontend.loader import load_model  # noqa: E402
from dtmm_tvm.reference import run_tflm_outputs  # noqa: E402
from dtmm_tvm.target import resolve_target  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "ops"
FLOAT_MODELS = ["more_float_mix", "more_float_mix2"]
INT8_MODELS = sorted(p.stem for p in FIXTURES.glob("more_*.tflite")
                     if p.stem not in (*FLOAT_MODELS, "more_float_io", "more_unsupported_exp"))


def _inputs(spec, count, rng):
    shape = (count, *spec.shape)
    if spec.dtype == "int8":
        x = rng.integers(-128, 128, size=shape, dtype=np.int8)
        x[0] = -128
        x[1] = 127
        return x
    return rng.uniform(-4.0, 4.0, size=shape).astype(np.float32)


def compile_and_run(name, tmp_path, count=6, sparse=False):
    model = load_model(FIXTURES / f"{name}.tflite")
    with resolve_target("dtmm/cortex-m4"):
        lowered = lower_model(model, sparse=sparse)
    aot = build_aot(lowered, output_names=[s.name for s in model.outputs])
    lib = compile_host_library(aot, tmp_path)
    rng = np.random.default_rng(abs(hash(name)) % 1000)
    inputs = [_inputs(spec, count, rng) for spec in model.inputs]
    got = [run_library(lib, aot, [x[i] for x in inputs]) for i in range(count)]
    got = [np.stack(per_output) for per_output in zip(*got)]
    return model, got, run_tflm_outputs(model.raw, inputs)


@pytest.mark.parametrize("name", INT8_MODELS)
def test_int8_bit_exact_with_tflm(name, tmp_path):
    model, got, expected = compile_and_run(name, tmp_path)
    assert len(got) == len(expected) == len(model.outputs)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


def test_float_input_and_output_around_int8(tmp_path):
    model, got, expected = compile_and_run("more_float_io", tmp_path)
    assert [s.dtype for s in model.inputs + model.outputs] == ["float32", "float32"]
    np.testing.assert_array_equal(got[0], expected[0])


@pytest.mark.parametrize("name", FLOAT_MODELS)
def test_float_model_close_to_tflm(name, tmp_path):
    _, got, expected = compile_and_run(name, tmp_path)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
