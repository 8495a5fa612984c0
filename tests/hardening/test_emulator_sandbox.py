"""Running an archive never reaches outside the emulator, and reading one is bounded.

A hostile archive's C (built into the harness like any model) picks an attack from its first
input byte: SYS_SYSTEM (a shell command), SYS_OPEN of a host path for writing, SYS_OPEN of a host
file for reading (printing what it read), a console flood, an endless loop. Nothing may escape,
the runner's memory stays bounded, and the time limit always ends QEMU.
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from dtmm_tvm.errors import DTMMError

FAKE_ARTIFACT = Path(__file__).resolve().parents[1] / "micro" / "fake_artifact"

HOSTILE_RUNNER = r"""
#include <stdint.h>
#include <string.h>
#include "tvmgen_default.h"

static int32_t sh(int32_t op, const void* arg) {
  register int32_t r0 __asm__("r0") = op;
  register const void* r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}
static uint32_t len(const char* s) { uint32_t n = 0; while (s[n]) n++; return n; }
static const char* CMD = "touch @MARKER@";
static const char* ESCAPE = "@ESCAPE@";
static const char* SECRET = "@SECRET@";
static char flood[1024];
static char buf[128];

int32_t tvmgen_default_run(struct tvmgen_default_inputs* inputs, struct tvmgen_default_outputs* outputs) {
  int8_t mode = ((int8_t*)inputs->input)[0];
  memset(outputs->output, 0, 16);
  if (mode == 1) {
    uint32_t a[2] = {(uint32_t)CMD, len(CMD)};
    sh(0x12, a);                                   /* SYS_SYSTEM */
  } else if (mode == 2) {
    uint32_t a[3] = {(uint32_t)ESCAPE, 4, len(ESCAPE)};   /* SYS_OPEN "w" */
    int32_t fd = sh(0x01, a);
    if (fd >= 0) { uint32_t w[3] = {(uint32_t)fd, (uint32_t)"pwned", 5}; sh(0x05, w); }
  } else if (mode == 3) {
    uint32_t a[3] = {(uint32_t)SECRET, 0, len(SECRET)};   /* SYS_OPEN "r" */
    int32_t fd = sh(0x01, a);
    if (fd >= 0) {
      uint32_t r[3] = {(uint32_t)fd, (uint32_t)buf, sizeof(buf) - 1};
      sh(0x06, r);
      sh(0x04, buf);                               /* SYS_WRITE0 what was read */
    } else {
      sh(0x04, "no such host file\n");
    }
  } else if (mode == 4) {
    memset(flood, 'A', sizeof(flood) - 1);
    for (;;) sh(0x04, flood);                      /* console flood */
  } else if (mode == 5) {
    for (;;) __asm__ volatile("nop");
  }
  return 0;
}
"""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    from dtmm_tvm.micro import Project
    from dtmm_tvm.micro.qemu import require_toolchain

    try:
        require_toolchain()
    except DTMMError as err:
        pytest.skip(f"missing tools: {err}")
    tmp = tmp_path_factory.mktemp("hostile")
    paths = {"MARKER": tmp / "marker", "ESCAPE": tmp / "escaped.txt", "SECRET": tmp / "secret.txt"}
    paths["SECRET"].write_text("TOP-SECRET-HOST-DATA\n")
    artifact = tmp / "artifact"
    shutil.copytree(FAKE_ARTIFACT, artifact)
    source = HOSTILE_RUNNER
    for key, path in paths.items():
        source = source.replace(f"@{key}@", str(path))
    (artifact / "codegen/host/src/default_lib2.c").write_text(source)
    project = Project(artifact, "mps2-an386", build_dir=tmp / "build")
    project.build()
    yield project, paths
    project.close()


def attack(project, mode: int, timeout_s: float = 30.0):
    x = np.zeros((1, 1, 16), np.int8)
    x[0, 0, 0] = mode
    return project.run(x, timeout_s=timeout_s)


def test_sys_system_runs_no_host_command(hostile):
    project, paths = hostile
    try:
        attack(project, 1)
    except DTMMError:
        pass  # QEMU's seccomp sandbox ends the run: that is the point
    assert not paths["MARKER"].exists()


def test_firmware_cannot_write_a_host_file(hostile):
    project, paths = hostile
    attack(project, 2)
    assert not paths["ESCAPE"].exists()


def test_firmware_cannot_read_a_host_file(hostile, capfd):
    project, paths = hostile
    project.verbose = True
    try:
        attack(project, 3)
    finally:
        project.verbose = False
    captured = capfd.readouterr()
    assert "TOP-SECRET" not in captured.out + captured.err
    assert "no such host file" in captured.err


def test_console_flood_is_cut_and_memory_stays_bounded(hostile):
    project, _ = hostile
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(DTMMError, match="printed more than"):
        attack(project, 4)
    assert time.monotonic() - started < 30
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200 * 1024


def test_time_limit_always_ends_qemu(hostile):
    project, _ = hostile
    started = time.monotonic()
    with pytest.raises(DTMMError, match="did not finish within 2 s"):
        attack(project, 5, timeout_s=2.0)
    assert time.monotonic() - started < 15


# -- reading archives ----------------------------------------------------------------------------
def _tar(path: Path, members: dict, mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _metadata() -> dict:
    return json.loads((FAKE_ARTIFACT / "metadata.json").read_text())


def test_device_is_refused_without_reading_it():
    from dtmm_tvm.codegen import read_metadata

    started = time.monotonic()
    with pytest.raises(DTMMError, match="not a regular file"):
        read_metadata("/dev/zero")
    assert time.monotonic() - started < 5


def test_compressed_bomb_is_refused(tmp_path):
    from dtmm_tvm.codegen import read_metadata
    from dtmm_tvm.codegen.archive_guard import MAX_MEMBER_BYTES

    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        meta = json.dumps(_metadata()).encode()
        info = tarfile.TarInfo("metadata.json")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
        info = tarfile.TarInfo("codegen/host/src/zeros.c")
        info.size = MAX_MEMBER_BYTES + 1

        class Zeros(io.RawIOBase):
            def readable(self):
                return True

            def readinto(self, b):
                b[:] = bytes(len(b))
                return len(b)

        tar.addfile(info, io.BufferedReader(Zeros()))
    assert path.stat().st_size < 200_000
    with pytest.raises(DTMMError, match="declares"):
        read_metadata(path)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.pop("inputs"), "'inputs'"),
    (lambda m: m.update(inputs=[]), "'inputs'"),
    (lambda m: m["inputs"][0].pop("shape"), "'shape'"),
    (lambda m: m["inputs"][0].update(bytes=17), "'bytes'"),
    (lambda m: m["inputs"][0].update(c_name="x; system(1)"), "C identifier"),
    (lambda m: m["outputs"][0].update(dtype="complex"), "'dtype'"),
    (lambda m: m.update(target=7), "'target'"),
    (lambda m: m.update(arena="big"), "'arena'"),
])
def test_tampered_metadata_gives_one_clear_error(tmp_path, edit, message):
    from dtmm_tvm.codegen import read_metadata

    meta = _metadata()
    edit(meta)
    path = _tar(tmp_path / "a.tar", {"metadata.json": json.dumps(meta).encode()})
    with pytest.raises(DTMMError, match=message):
        read_metadata(path)


def test_deeply_nested_metadata_is_a_clear_error(tmp_path):
    from dtmm_tvm.codegen import read_metadata

    path = _tar(tmp_path / "a.tar", {"metadata.json": b"[" * 100_000 + b"]" * 100_000})
    with pytest.raises(DTMMError, match="not valid JSON"):
        read_metadata(path)


def test_links_and_escaping_members_are_refused(tmp_path):
    from dtmm_tvm.codegen import read_metadata

    path = tmp_path / "link.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("metadata.json")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(DTMMError, match="not a regular file or directory"):
        read_metadata(path)
    path = _tar(tmp_path / "dots.tar", {"../metadata.json": b"{}"})
    with pytest.raises(DTMMError, match="outside"):
        read_metadata(path)
