"""Bring your own firmware: two models compiled with --module-name link into one program, built
with the archives' Makefile fragments, and both run bit-exact with TFLM on QEMU."""

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from dtmm_tvm.compiler import compile_model
from dtmm_tvm.micro.project import template_dir
from dtmm_tvm.micro.qemu import require_tool
from dtmm_tvm.reference import run_tflm

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "models"
MODELS = {"a": "conv_basic.tflite", "b": "depthwise.tflite"}

# What a user writes (the README's example), for two models; {A_IN} etc. are the c_names.
MAIN_C = """\
#include <stdint.h>
#include "semihost.h"
#include "tvmgen_a.h"
#include "tvmgen_b.h"

static int8_t in_a[TVMGEN_A_{A_IN_UPPER}_SIZE], out_a[TVMGEN_A_{A_OUT_UPPER}_SIZE];
static int8_t in_b[TVMGEN_B_{B_IN_UPPER}_SIZE], out_b[TVMGEN_B_{B_OUT_UPPER}_SIZE];

static void load(const char* name, void* buf, uint32_t n) {{
  int32_t fd = dtmm_sh_open(name, DTMM_SH_MODE_RB);
  if (fd < 0 || dtmm_sh_read(fd, buf, n) != (int32_t)n) dtmm_exit(3);
  dtmm_sh_close(fd);
}}

static void store(const char* name, const void* buf, uint32_t n) {{
  int32_t fd = dtmm_sh_open(name, DTMM_SH_MODE_WB);
  if (fd < 0 || dtmm_sh_write(fd, buf, n) != 0) dtmm_exit(4);
  dtmm_sh_close(fd);
}}

int main(void) {{
  load("in_a.bin", in_a, sizeof in_a);
  load("in_b.bin", in_b, sizeof in_b);
  struct tvmgen_a_inputs ia = {{.{A_IN} = in_a}};
  struct tvmgen_a_outputs oa = {{.{A_OUT} = out_a}};
  struct tvmgen_b_inputs ib = {{.{B_IN} = in_b}};
  struct tvmgen_b_outputs ob = {{.{B_OUT} = out_b}};
  if (tvmgen_a_run(&ia, &oa) != 0 || tvmgen_b_run(&ib, &ob) != 0) return 5;
  store("out_a.bin", out_a, sizeof out_a);
  store("out_b.bin", out_b, sizeof out_b);
  return 0;
}}

void dtmm_fault(void) {{ dtmm_exit(18); }}
"""

MAKEFILE = """\
include a/tvmgen_a.mk
include b/tvmgen_b.mk
CC := arm-none-eabi-gcc
CPU := -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16
CFLAGS := $(CPU) -O2 -std=gnu11 -Iharness $(TVMGEN_A_CFLAGS) $(TVMGEN_B_CFLAGS)
SRCS := main.c harness/semihost.c $(TVMGEN_A_SRCS) $(TVMGEN_B_SRCS)
app.elf: $(SRCS) harness/startup.S
\t$(CC) $(CFLAGS) -nostartfiles --specs=nano.specs -Wl,--gc-sections -Lboards \\
\t  -T boards/mps2-an386.ld -Wl,--defsym=__stack_size=16384 $^ -lc -lgcc -o $@
"""


def test_two_models_in_one_firmware(needs_toolchain, tmp_path):
    metas = {}
    for name, model in MODELS.items():
        archive = tmp_path / f"{name}.tar"
        metas[name] = compile_model(FIXTURES / model, archive, module_name=name)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp_path / name)
    tdir = template_dir()
    shutil.copytree(tdir / "boards", tmp_path / "boards")
    (tmp_path / "harness").mkdir()
    for f in ("semihost.c", "semihost.h", "startup.S"):
        shutil.copy(tdir / "src" / f, tmp_path / "harness" / f)
    names = {}
    for key in ("a", "b"):
        for kind, tag in (("inputs", "IN"), ("outputs", "OUT")):
            c_name = metas[key][kind][0]["c_name"]
            names[f"{key.upper()}_{tag}"] = c_name
            names[f"{key.upper()}_{tag}_UPPER"] = c_name.upper()
    (tmp_path / "main.c").write_text(MAIN_C.format(**names))
    (tmp_path / "Makefile").write_text(MAKEFILE)
    build = subprocess.run(["make", "-C", str(tmp_path)], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr

    rng = np.random.default_rng(10)
    inputs = {k: rng.integers(-128, 128, tuple(metas[k]["inputs"][0]["shape"])).astype(np.int8) for k in MODELS}
    for k, x in inputs.items():
        (tmp_path / f"in_{k}.bin").write_bytes(x.tobytes())
    run = subprocess.run([require_tool("qemu-system-arm"), "-M", "mps2-an386", "-nographic", "-monitor", "none",
                          "-serial", "none", "-semihosting-config", "enable=on,target=native",
                          "-kernel", "app.elf"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    for k, model in MODELS.items():
        expected = run_tflm((FIXTURES / model).read_bytes(), inputs[k][None])
        got = np.frombuffer((tmp_path / f"out_{k}.bin").read_bytes(), np.int8)
        np.testing.assert_array_equal(got, expected.reshape(-1))
    # Both models' micro-kernels are in the one ELF, each in its module's namespace.
    symbols = subprocess.run(["arm-none-eabi-nm", str(tmp_path / "app.elf")], capture_output=True,
                             text=True).stdout
    assert "tvmgen_a_dtmm_conv_block_s8" in symbols and "tvmgen_b_dtmm_depthwise_conv_s8" in symbols
    assert json.loads((tmp_path / "a" / "metadata.json").read_text())["entry"] == "tvmgen_a_run"
