"""End to end: Relax module -> generated C -> host shared library via ctypes, compared with
numpy expectations and with tvm.compile(target="llvm") on the Relax VM; plus Cortex-M4 builds."""


import numpy as np
import pytest

import codegen_models as models
from codegen_helpers import compile_cortex_m4, compile_host_library, run_library, run_tvm_reference
from dtmm_tvm.codegen import build_aot, build_c_kernels, primfunc_to_c
from dtmm_tvm.codegen.c_source import STACK_SCRATCH_THRESHOLD_BYTES
from dtmm_tvm.errors import UnsupportedOpError


@pytest.fixture(scope="module")
def chain():
    mod, expect = models.int8_chain()
    return mod, expect, build_aot(mod)


@pytest.fixture(scope="module")
def conv():
    mod = models.int8_conv()
    return mod, build_aot(mod)


@pytest.fixture(scope="module")
def fcnn():
    mod = models.float_cnn()
    return mod, build_aot(mod)


def test_int8_chain_matches_numpy_and_tvm(chain, tmp_path):
    mod, expect, aot = chain
    lib = compile_host_library(aot, tmp_path)
    rng = np.random.default_rng(10)
    for _ in range(3):
        x = rng.integers(-128, 128, (1, models.N)).astype("int8")
        (got,) = run_library(lib, aot, [x])
        np.testing.assert_array_equal(got, expect(x))
    np.testing.assert_array_equal(got, run_tvm_reference(mod, [x])[0])


def test_int8_chain_structure(chain):
    _, _, aot = chain
    lib1 = aot.files["codegen/host/src/default_lib1.c"]
    lib2 = aot.files["codegen/host/src/default_lib2.c"]
    # c1 is used twice (two relax.const objects with equal content): stored once.
    assert lib1.count("const int8_t tvmgen_default_const_") == 1
    assert aot.constants_bytes == models.N + 4 * models.N
    assert {f["name"]: f["calls"] for f in aot.functions} == {"add_sat": 2, "scale_shift": 1, "relu_acc": 1}
    # The last kernel writes straight into the caller's output, the first reads the input.
    assert "outputs->output)" in lib2 and "memcpy" not in lib2
    assert "(int8_t*)inputs->x" in lib2
    # Three 64-byte intermediates, at most two live at once.
    assert aot.arena.bytes == 128 < aot.arena.total_buffer_bytes
    # The scalar accumulator stays a C local, not arena scratch.
    assert all(f["scratch_bytes"] == 0 for f in aot.functions)
    assert "TVMBackend" not in aot.files["codegen/host/src/default_lib0.c"]
    assert aot.layers == [{"name": "add_0", "op": "add", "function": "add_sat"}] * 2


def test_int8_conv_scratch_and_reuse(conv, tmp_path):
    mod, aot = conv
    scratch = [b for b in aot.arena.buffers if "__" in b.name]
    assert scratch, "padding / int32 intermediates must become arena scratch"
    assert all(b.first_use == b.last_use for b in scratch)
    pads = [b for b in scratch if "pad" in b.name]
    assert pads and pads[0].bytes == 10 * 10 * 4  # int8 input padded to 10x10x4
    assert aot.arena.bytes < aot.arena.total_buffer_bytes
    # The flatten is a view: no copy kernel, the second conv writes the output buffer directly.
    lib2 = aot.files["codegen/host/src/default_lib2.c"]
    assert "reshape" not in lib2 and "memcpy" not in lib2
    assert "(int8_t*)outputs->output" in lib2
    lib = compile_host_library(aot, tmp_path)
    x = np.random.default_rng(11).integers(-128, 128, (1, 8, 8, 4)).astype("int8")
    (got,) = run_library(lib, aot, [x])
    np.testing.assert_array_equal(got, run_tvm_reference(mod, [x])[0])


def test_no_stack_arrays_above_threshold(conv):
    _, aot = conv
    import re

    for m in re.finditer(r"^\s+(\w+) \w+\[(\d+)\];", aot.files["codegen/host/src/default_lib0.c"], re.M):
        elem = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "int32_t": 4, "float": 4, "int64_t": 8}[m.group(1)]
        assert int(m.group(2)) * elem <= STACK_SCRATCH_THRESHOLD_BYTES, m.group(0)


def test_float_cnn_matches_tvm(fcnn, tmp_path):
    mod, aot = fcnn
    lib = compile_host_library(aot, tmp_path)
    x = np.random.default_rng(12).standard_normal((1, 8, 8, 3)).astype("float32")
    (got,) = run_library(lib, aot, [x])
    np.testing.assert_allclose(got, run_tvm_reference(mod, [x])[0], rtol=1e-5, atol=1e-6)
    assert abs(float(got.sum()) - 1.0) < 1e-5  # softmax
    assert aot.inputs[0].c_name == "image"


def test_tuple_outputs_and_copies(tmp_path):
    mod, expect = models.tuple_outputs()
    aot = build_aot(mod)
    assert [o.c_name for o in aot.outputs] == ["output0", "output1", "output2", "output3"]
    lib2 = aot.files["codegen/host/src/default_lib2.c"]
    assert lib2.count("memcpy(") == 3  # input, constant, second view of output0
    lib = compile_host_library(aot, tmp_path)
    x = np.random.default_rng(13).integers(-128, 128, (1, models.N)).astype("int8")
    got = run_library(lib, aot, [x])
    for g, e in zip(got, expect(x)):
        np.testing.assert_array_equal(g, e)
    for g, r in zip(got, run_tvm_reference(mod, [x])):
        np.testing.assert_array_equal(g, r)


def test_cortex_m4_compiles(chain, conv, fcnn, tmp_path):
    for name, aot in [("chain", chain[2]), ("conv", conv[1]), ("fcnn", fcnn[1])]:
        compile_cortex_m4(aot, tmp_path / name)


def test_unlegalized_op_is_named():
    with pytest.raises(UnsupportedOpError, match="relax.nn.conv2d"):
        build_aot(models.unlegalized())


def test_primfunc_to_c_signature():
    code, kernel = primfunc_to_c(models.scale_shift, "scale/shift")
    assert kernel.symbol == "tvmgen_default_scale_shift"
    assert kernel.prototype == "void tvmgen_default_scale_shift(int8_t* a, int32_t* m, int8_t* c);"
    assert "#include <stdint.h>" in code and "tvm/" not in code and "TVM_DLL" not in code


def test_threshold_zero_moves_accumulator_to_scratch():
    src = build_c_kernels({"relu": models.relu_acc}, stack_threshold=0)
    (k,) = src.kernels.values()
    assert [s.bytes for s in k.scratch] == [4]
    assert k.prototype.endswith("int32_t* acc_scratch);")


def test_project_int8_kernels_compile_warning_free(tmp_path):
    """The ops room's kernels (TE/TVMScript with lets and CSE) compile with -Wall -Werror."""
    from dtmm_tvm.ops.conv2d import conv2d_int8
    from dtmm_tvm.ops.depthwise_conv2d import depthwise_conv2d_int8
    from dtmm_tvm.quant.conv import Conv2DParams
    import shutil
    import subprocess

    p = Conv2DParams(input_shape=(1, 8, 8, 4), weight_shape=(8, 3, 3, 4), padding=(1, 1, 1, 1),
                     input_zero_point=-128, output_zero_point=3)
    pd = Conv2DParams(input_shape=(1, 8, 8, 4), weight_shape=(1, 3, 3, 4), strides=(2, 2),
                      padding=(0, 0, 1, 1), depthwise=True)
    src = build_c_kernels({"conv": conv2d_int8(p), "dw": depthwise_conv2d_int8(pd)})
    path = tmp_path / "ops.c"
    path.write_text(src.code)
    for cc, flags in [("gcc", ["-O2"]), ("arm-none-eabi-gcc", ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
                                                                "-mfpu=fpv4-sp-d16", "-O2"])]:
        if shutil.which(cc) is None:
            continue
        proc = subprocess.run([cc, *flags, "-c", "-Wall", "-Werror", str(path), "-o", str(tmp_path / "o.o")],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
