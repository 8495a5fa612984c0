"""End-to-end tests of the QEMU harness with hand-written artifacts."""

import json
import os
import shutil
import tarfile
import textwrap

import numpy as np
import pytest

from dtmm_tvm.errors import DTMMError, ModelError, ResourceError, ToolchainError
from dtmm_tvm.micro import BOARDS, Project, check_fits, run_artifact
from dtmm_tvm.micro.project import template_dir

BOARD_NAMES = sorted(BOARDS)
TOOLS = ["arm-none-eabi-gcc", "qemu-system-arm", "make"]


def reference(x):
    """What the fake model computes: sat_int8(x * 3 - 7)."""
    return np.clip(x.astype(np.int32) * 3 - 7, -128, 127).astype(np.int8)


def fake_inputs(n=6, seed=0):
    x = np.random.default_rng(seed).integers(-128, 128, (n, 1, 16)).astype(np.int8)
    x[0, 0, :4] = [-128, 127, 0, 45]  # saturation on both sides and an exact value
    return x


@pytest.mark.parametrize("board", BOARD_NAMES)
def test_fake_model_outputs_exact(needs_toolchain, fake_artifact, board):
    x = fake_inputs()
    res = run_artifact(fake_artifact, board, x)
    assert res.outputs.dtype == np.int8 and res.outputs.shape == (6, 1, 16)
    np.testing.assert_array_equal(res.outputs, reference(x))
    rec = json.loads(res.to_json())
    assert rec["board"] == board and rec["inferences"] == 6
    assert rec["instructions"] == max(rec["instructions_per_inference"]) > 100
    assert set(rec["flash"]) == {"text", "rodata", "data", "model_code", "model_constants"}
    assert set(rec["ram"]) == {"data", "bss", "arena", "stack_high_water"}
    assert rec["flash_bytes"] == rec["flash"]["text"] + rec["flash"]["rodata"] + \
        rec["flash"]["data"]
    assert rec["ram_bytes"] == rec["ram"]["data"] + rec["ram"]["bss"] + \
        rec["ram"]["stack_high_water"]
    assert rec["ram"]["arena"] == 32
    assert rec["flash"]["model_constants"] >= 4  # fake_params (+ nothing else const)
    assert 0 < rec["ram"]["stack_high_water"] < res.stack_reserved
    assert rec["ram"]["bss"] >= 32 + 32  # arena + the harness's I/O buffers


def test_counts_stable_across_runs(needs_toolchain, fake_artifact):
    x = fake_inputs(4, seed=1)
    with Project(fake_artifact, "mps2-an386") as proj:
        first = proj.run(x)
        second = proj.run(np.concatenate([x, x]))
    assert first.instructions_per_inference == second.instructions_per_inference[:4]
    assert second.instructions_per_inference[:4] == second.instructions_per_inference[4:]
    assert first.empty_call_instructions == second.empty_call_instructions


def test_counts_scale_with_work(needs_toolchain, fake_artifact):
    """FAKE_SPIN adds exactly 2 instructions per iteration (subs + bne) plus its setup."""
    x = fake_inputs(3, seed=2)
    base = run_artifact(fake_artifact, "mps2-an386", x)
    spun = run_artifact(fake_artifact, "mps2-an386", x, extra_cflags="-DFAKE_SPIN=5000")
    np.testing.assert_array_equal(base.outputs, spun.outputs)
    for b, s in zip(base.instructions_per_inference, spun.instructions_per_inference):
        assert abs((s - b) - 2 * 5000) <= 3, (b, s)


@pytest.mark.parametrize("board", BOARD_NAMES)
def test_timer_calibration(needs_toolchain, calib_artifact, board):
    """An asm loop of 2*K+3 instructions minus the 2-instruction empty call: exactly 2*K+1."""
    zeros = np.zeros((2, 4), np.int8)
    for loops in (1000, 100000):
        res = run_artifact(calib_artifact, board, zeros, extra_cflags=f"-DCALIB_LOOPS={loops}")
        assert res.instructions_per_inference == [2 * loops + 1] * 2, (board, loops)
        # nRF51's timer read is a capture task write plus a register read (more than MPS2's load).
        assert 3 <= res.empty_call_instructions <= (12 if board == "microbit" else 8)


def test_multiple_inputs_and_outputs(needs_toolchain, tmp_path):
    """Two inputs (int8, int16) and two outputs (int8, int32), named in metadata order."""
    art = tmp_path / "two"
    (art / "codegen/host/src").mkdir(parents=True)
    (art / "codegen/host/include").mkdir(parents=True)
    (art / "codegen/host/include/tvmgen_default.h").write_text(textwrap.dedent("""\
        #include <stdint.h>
        #define TVMGEN_DEFAULT_A_SIZE 8
        #define TVMGEN_DEFAULT_B_SIZE 16
        #define TVMGEN_DEFAULT_SUM_SIZE 8
        #define TVMGEN_DEFAULT_PROD_SIZE 32
        struct tvmgen_default_inputs { void* a; void* b; };
        struct tvmgen_default_outputs { void* sum; void* prod; };
        int32_t tvmgen_default_run(struct tvmgen_default_inputs* inputs,
                                   struct tvmgen_default_outputs* outputs);
        """))
    (art / "codegen/host/src/default_lib2.c").write_text(textwrap.dedent("""\
        #include "tvmgen_default.h"
        int32_t tvmgen_default_run(struct tvmgen_default_inputs* in,
                                   struct tvmgen_default_outputs* out) {
          const int8_t* a = in->a; const int16_t* b = in->b;
          int8_t* s = out->sum; int32_t* p = out->prod;
          for (int i = 0; i < 8; i++) {
            int32_t v = a[i] + b[i];
            s[i] = (int8_t)(v > 127 ? 127 : v < -128 ? -128 : v);
            p[i] = (int32_t)a[i] * b[i];
          }
          return 0;
        }
        """))
    t = lambda name, dtype, nbytes: {"name": name, "c_name": name, "shape": [8],  # noqa: E731
                                     "dtype": dtype, "bytes": nbytes, "quantization": None}
    (art / "metadata.json").write_text(json.dumps({
        "schema": "dtmm-mlf/1", "inputs": [t("a", "int8", 8), t("b", "int16", 16)],
        "outputs": [t("sum", "int8", 8), t("prod", "int32", 32)],
        "arena": {"bytes": 0, "buffers": []}, "constants_bytes": 0,
        "entry": "tvmgen_default_run"}))
    rng = np.random.default_rng(3)
    a = rng.integers(-128, 128, (3, 8)).astype(np.int8)
    b = rng.integers(-30000, 30000, (3, 8)).astype(np.int16)
    res = run_artifact(art, "mps2-an386", {"b": b, "a": a})
    s, p = res.outputs
    assert res.output_names == ["sum", "prod"]
    np.testing.assert_array_equal(s, np.clip(a.astype(np.int32) + b, -128, 127))
    np.testing.assert_array_equal(p, a.astype(np.int32) * b)
    assert p.dtype == np.int32


def test_tar_artifact_and_kept_build_dir(needs_toolchain, fake_artifact, tmp_path):
    tar_path = tmp_path / "model.tar"
    with tarfile.open(tar_path, "w") as tar:
        for item in fake_artifact.iterdir():
            tar.add(item, arcname=item.name)
    x = fake_inputs(2)
    res = run_artifact(tar_path, "mps2-an386", x, build_dir=tmp_path / "builds")
    np.testing.assert_array_equal(res.outputs, reference(x))
    assert res.project_dir and (tmp_path / "builds") in \
        __import__("pathlib").Path(res.project_dir).parents
    # The template is never written to.
    assert not (template_dir() / "project.json").exists()
    assert not (template_dir() / "build").exists()


def test_model_error_status(needs_toolchain, fake_artifact):
    with pytest.raises(ModelError, match=r"returned -3.*mps2-an386|mps2-an386.*returned -3"):
        run_artifact(fake_artifact, "mps2-an386", fake_inputs(1), extra_cflags="-DFAKE_STATUS=-3")


@pytest.mark.parametrize("board", ["mps2-an386", "mps3-an547"])
def test_stack_high_water_and_overflow(needs_toolchain, fake_artifact, board):
    x = fake_inputs(1)
    base = run_artifact(fake_artifact, board, x)
    deep = run_artifact(fake_artifact, board, x, extra_cflags="-DFAKE_STACK=8192")
    # The scratch array plus the harness frames below main (a few hundred bytes at most).
    assert base.ram["stack_high_water"] < 512
    assert 8192 < deep.ram["stack_high_water"] <= 8192 + 512
    # AN386 detects the overflow by the painted pattern, AN547 (v8-M) by MSPLIM.
    with pytest.raises(ResourceError, match=f"stack overflowed.*{board}|{board}.*stack overflowed"):
        run_artifact(fake_artifact, board, x, extra_cflags="-DFAKE_STACK=8192",
                     stack_bytes=4096)


def test_resource_error_before_build(edited_artifact):
    art = edited_artifact(lambda m: m["arena"].update(bytes=8 * 1024 * 1024))
    with pytest.raises(ResourceError, match=r"RAM of board mps2-an386: needs 8454176 bytes.*"
                                            r"4194304 available"):
        run_artifact(art, "mps2-an386", fake_inputs(1))
    # 600 KiB fits the 4 MiB of AN386 but not the 512 KiB DTCM of AN547.
    meta = json.loads((art / "metadata.json").read_text())
    meta["arena"]["bytes"] = 600 * 1024
    check_fits(meta, BOARDS["mps2-an386"])
    with pytest.raises(ResourceError, match="mps3-an547"):
        check_fits(meta, BOARDS["mps3-an547"])
    meta["arena"]["bytes"] = 0
    meta["constants_bytes"] = 1 << 20
    with pytest.raises(ResourceError, match=r"flash of board mps3-an547.*1048576 bytes"):
        check_fits(meta, BOARDS["mps3-an547"])


def test_resource_error_from_linker(needs_toolchain, edited_artifact):
    """Metadata that understates the constants is still caught, by the linker."""
    art = edited_artifact()
    # The kernel reads fake_params[0..1]; the padding makes the constants 1.2 MB.
    (art / "codegen/host/src/default_lib1.c").write_text(
        "#include <stdint.h>\nconst int16_t fake_params[600 * 1024] = {3, -7};\n")
    with pytest.raises(ResourceError, match="flash .*mps3-an547"):
        run_artifact(art, "mps3-an547", fake_inputs(1))


def test_toolchain_missing(monkeypatch, tmp_path, fake_artifact):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ToolchainError, match=r"arm-none-eabi-gcc.*apt-get install.*"
                                             r"gcc-arm-none-eabi"):
        run_artifact(fake_artifact, "mps2-an386", fake_inputs(1))


def test_qemu_missing(needs_toolchain, monkeypatch, tmp_path, fake_artifact):
    """Everything on PATH except QEMU: the build works, the run names the missing package."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    qemu = shutil.which("qemu-system-arm")
    for d in dict.fromkeys(os.environ["PATH"].split(os.pathsep)):
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            target = os.path.join(d, name)
            if not (bindir / name).exists() and os.path.realpath(target) != \
                    os.path.realpath(qemu):
                (bindir / name).symlink_to(target)
    monkeypatch.setenv("PATH", str(bindir))
    with Project(fake_artifact, "mps2-an386") as proj:
        proj.build()
        with pytest.raises(ToolchainError, match=r"qemu-system-arm.*apt-get install"):
            proj.run(fake_inputs(1))


def test_bad_inputs_and_board(fake_artifact):
    with pytest.raises(DTMMError, match="unknown board 'stm32'.*mps2-an386"):
        run_artifact(fake_artifact, "stm32", fake_inputs(1))
    with pytest.raises(DTMMError, match=r"must be \(N, 1, 16\) int8"):
        Project(fake_artifact, "mps2-an386")._pack_inputs(np.zeros((2, 16), np.int8))
    with pytest.raises(ModelError, match="does not exist"):
        run_artifact(fake_artifact / "nope.tar", "mps2-an386", fake_inputs(1))
