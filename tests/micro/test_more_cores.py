"""Targets beyond M4/M7/M55: Cortex-M0+ (ARMv6-M, portable C), M3 (portable C), M33 (DSP) and M85
(MVE). Each compiles one small model for its tag and runs it bit-exact with TFLM on its QEMU board
(QEMU 7.2 has no M0+ and no M85: the micro:bit's Cortex-M0 runs the same ARMv6-M code, the
AN547's Cortex-M55 the same Armv8.1-M + MVE code)."""

import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from dtmm_tvm.cli.tvmc_compat import map_target
from dtmm_tvm.compiler import compile_model
from dtmm_tvm.micro import run_artifact
from dtmm_tvm.reference import run_tflm_outputs
from dtmm_tvm.target import DEFAULT_BOARD

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"

# tag -> (board, kernel ISA, model): one model per board, the smallest that exercises the path.
CASES = {
    # depthwise, ADD, max pool, mean, softmax: the portable kernels under ARMv6-M (no unaligned
    # word access, no hardware divide), in 16 KiB of RAM.
    "dtmm/cortex-m0plus": ("microbit", "c", "everything"),
    "dtmm/cortex-m3": ("mps2-an385", "c", "depthwise"),
    "dtmm/cortex-m33": ("mps2-an505", "dsp", "conv_basic"),
    "dtmm/cortex-m85": ("mps3-an547", "mve", "conv_basic"),
}


def test_tags_and_tvmc_spellings():
    for tag, (board, isa, _) in CASES.items():
        assert map_target(f"c -mcpu={tag.split('/')[1]}") == tag
        assert DEFAULT_BOARD[tag] == board


@pytest.mark.parametrize("tag", list(CASES))
def test_small_model_bit_exact_on_board(needs_toolchain, tmp_path, tag):
    board, isa, model = CASES[tag]
    path = MODELS / f"{model}.tflite"
    archive = tmp_path / "m.tar"
    metadata = compile_model(path, archive, target=tag)
    assert metadata["target"] == tag and metadata["isa"] == isa
    spec = metadata["inputs"][0]
    x = np.random.default_rng(3).integers(-128, 128, (2, *spec["shape"])).astype(np.int8)
    result = run_artifact(archive, board, x)
    expected = run_tflm_outputs(path.read_bytes(), x)[0]
    np.testing.assert_array_equal(result.outputs, expected.reshape(result.outputs.shape))
    assert result.board == board and len(result.instructions_per_inference) == 2
    if tag == "dtmm/cortex-m85":
        _builds_with_m85_flags(archive, tmp_path)


def _builds_with_m85_flags(archive, tmp_path):
    """The M85 archive's C compiles for an M85 with what this gcc offers: -mcpu=cortex-m85
    (gcc >= 13) or else the Armv8.1-M mainline + MVE flags documented in the README."""
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    probe = subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m85", "-E", "-x", "c", "/dev/null"],
                           capture_output=True)
    cpu = (["-mcpu=cortex-m85"] if probe.returncode == 0
           else ["-march=armv8.1-m.main+mve.fp+fp.dp", "-mtune=cortex-m55"])
    flags = cpu + ["-mthumb", "-mfloat-abi=hard", "-O2", "-c", "-I", str(tmp_path / "x" / "codegen/host/include")]
    for src in sorted((tmp_path / "x" / "codegen/host/src").glob("*.c")):
        out = tmp_path / (src.stem + ".o")
        proc = subprocess.run(["arm-none-eabi-gcc", *flags, str(src), "-o", str(out)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert shutil.which("arm-none-eabi-gcc")
