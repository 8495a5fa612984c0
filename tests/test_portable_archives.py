"""Archives record the kernel ISA they were specialized for; their C takes that path or refuses
to build (#error naming the archive's target); `dtmm run` refuses a board without that ISA;
`dtmm/portable` archives build with the host gcc and run anywhere, bit-exact with TFLM."""

import ctypes
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from dtmm_tvm.cli.main import main
from dtmm_tvm.cli.run import check_board_isa
from dtmm_tvm.compiler import compile_model
from dtmm_tvm.errors import DTMMError
from dtmm_tvm.micro import get_board, run_artifact
from dtmm_tvm.reference import run_tflm

MODEL = Path(__file__).parent / "fixtures" / "ops" / "layout_conv_square.tflite"  # depthwise, conv, filterlet conv, FC


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    root = tmp_path_factory.mktemp("isa")
    built = {}

    def get(target: str) -> Path:
        if target not in built:
            out = root / f"{target.replace('/', '_')}.tar"
            compile_model(MODEL, out, target=target, mode="dtmm")
            built[target] = out
        return built[target]

    return get


def _extract(archive: Path, directory: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(directory, filter="data")
    return directory / "codegen" / "host"


def _compile_errors(compiler: list, host: Path) -> str:
    errors = []
    for source in sorted((host / "src").glob("*.c")):
        proc = subprocess.run([*compiler, "-c", "-I", str(host / "include"), str(source), "-o", "/dev/null"],
                              capture_output=True, text=True)
        errors.append(proc.stderr if proc.returncode else "")
    return errors


@pytest.mark.parametrize("target, isa", [("dtmm/cortex-m4", "dsp"), ("dtmm/cortex-m55", "mve"), ("dtmm/portable", "c")])
def test_archive_records_its_isa(archives, tmp_path, target, isa):
    meta = json.loads(tarfile.open(archives(target)).extractfile("metadata.json").read())
    assert meta["target"] == target and meta["isa"] == isa
    host = _extract(archives(target), tmp_path)
    header = (host / "include" / "dtmm_isa.h").read_text()
    assert f'#define DTMM_ARCHIVE_TARGET "{target}"' in header
    for generated in ("default_lib0.c", "default_lib1.c", "default_lib2.c"):
        assert '#include "dtmm_isa.h"' in (host / "src" / generated).read_text()


@pytest.mark.parametrize(
    "target, compiler, missing",
    [
        ("dtmm/cortex-m55", ["gcc", "-std=c99"], "need integer MVE"),
        ("dtmm/cortex-m55", ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
         "need integer MVE"),
        ("dtmm/cortex-m4", ["gcc", "-std=c99"], "need the DSP extension"),
    ],
)
def test_archive_refuses_a_compiler_without_its_isa(archives, tmp_path, target, compiler, missing):
    if shutil.which(compiler[0]) is None:
        pytest.skip(f"{compiler[0]} not installed")
    errors = _compile_errors(compiler, _extract(archives(target), tmp_path))
    assert all(errors), "every generated and kernel C file must refuse"
    for error in errors:
        assert f"#error \"dtmm: this archive was compiled for {target}, whose kernels {missing}" in error, error


def _run_on_host(host: Path, meta: dict, x: np.ndarray) -> np.ndarray:
    """Build the archive with host gcc into a shared library; call tvmgen_default_run per input."""
    lib = host / "libmodel.so"
    subprocess.run(["gcc", "-std=c99", "-O1", "-Wall", "-Werror", "-shared", "-fPIC", "-I", str(host / "include"),
                    *map(str, sorted((host / "src").glob("*.c"))), "-o", str(lib), "-lm"], check=True,
                   capture_output=True)
    model = ctypes.CDLL(str(lib))
    spec_in, spec_out = meta["inputs"][0], meta["outputs"][0]
    struct_in = type("In", (ctypes.Structure,), {"_fields_": [(spec_in["c_name"], ctypes.c_void_p)]})
    struct_out = type("Out", (ctypes.Structure,), {"_fields_": [(spec_out["c_name"], ctypes.c_void_p)]})
    outputs = []
    for sample in x:
        sample = np.ascontiguousarray(sample, dtype=spec_in["dtype"])
        out = np.zeros(spec_out["shape"], spec_out["dtype"])
        assert model.tvmgen_default_run(ctypes.byref(struct_in(sample.ctypes.data)),
                                        ctypes.byref(struct_out(out.ctypes.data))) == 0
        outputs.append(out)
    return np.stack(outputs)


def _inputs(meta: dict, count: int = 4) -> np.ndarray:
    x = np.random.default_rng(3).integers(-128, 128, size=(count, *meta["inputs"][0]["shape"])).astype(np.int8)
    x[0], x[1] = -128, 127
    return x


def test_portable_archive_builds_and_runs_on_the_host(archives, tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("host gcc not installed")
    archive = archives("dtmm/portable")
    meta = json.loads(tarfile.open(archive).extractfile("metadata.json").read())
    x = _inputs(meta)
    np.testing.assert_array_equal(_run_on_host(_extract(archive, tmp_path), meta, x), run_tflm(MODEL.read_bytes(), x))


@pytest.mark.parametrize("target", ["dtmm/portable", "dtmm/cortex-m4"])
def test_portable_and_dsp_archives_run_on_the_m55(archives, target):
    """A portable archive runs on any core; a DSP archive on the M55 takes its DSP path."""
    meta = json.loads(tarfile.open(archives(target)).extractfile("metadata.json").read())
    x = _inputs(meta, 3)
    result = run_artifact(str(archives(target)), "mps3-an547", x)
    np.testing.assert_array_equal(result.outputs.reshape((3, *meta["outputs"][0]["shape"])), run_tflm(MODEL.read_bytes(), x))


def test_run_refuses_a_board_without_the_archive_isa(archives, tmp_path, capsys):
    meta = json.loads(tarfile.open(archives("dtmm/cortex-m55")).extractfile("metadata.json").read())
    inputs = tmp_path / "x.npy"
    np.save(inputs, _inputs(meta, 2))
    status = main(["run", str(archives("dtmm/cortex-m55")), "--board", "mps2-an386", "--inputs", str(inputs)])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert "compiled for dtmm/cortex-m55" in err and "mps2-an386 (cortex-m4)" in err and "MVE" in err


@pytest.mark.parametrize(
    "target, isa, board, accepted",
    [
        ("dtmm/cortex-m4", "dsp", "mps2-an500", True),     # M4 DSP archive on an M7
        ("dtmm/cortex-m4", "dsp", "mps3-an547", True),     # DSP archive on an M55: DSP path
        ("dtmm/portable", "c", "mps2-an386", True),
        ("dtmm/cortex-m55", "mve", "mps2-an500", False),
        ("dtmm/cortex-m55", None, "mps2-an386", False),    # an archive from before "isa": its target's
    ],
)
def test_board_isa_rules(target, isa, board, accepted):
    meta = {"target": target, **({"isa": isa} if isa else {})}
    if accepted:
        check_board_isa("a.tar", meta, get_board(board))
    else:
        with pytest.raises(DTMMError, match=r"a\.tar: compiled for dtmm/cortex-m55"):
            check_board_isa("a.tar", meta, get_board(board))
