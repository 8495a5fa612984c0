"""A Zephyr build of the generated application, run on QEMU, bit-exact with TFLM.

Runs where a Zephyr tree is set up (``ZEPHYR_BASE``, ``west`` on PATH, a west workspace; modules
by ``west update`` or ``ZEPHYR_MODULES``; see the README's Zephyr section); elsewhere it is skipped
with that reason (not a missing-tool skip: CI has no Zephyr tree by design).
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from dtmm_tvm.compiler import compile_model
from dtmm_tvm.micro.project_api import ProjectAPIClient
from dtmm_tvm.reference import run_tflm_outputs
from dtmm_tvm.resources import templates_dir

MODEL = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "conv_basic.tflite"


def _qemu_console(elf: Path, want: str, timeout_s: float = 120.0) -> str:
    """Boot the Zephyr image on QEMU's lm3s6965evb (Zephyr's qemu_cortex_m3) until ``want`` has
    printed a whole line; Zephyr idles forever afterwards, so QEMU is then stopped."""
    proc = subprocess.Popen(["qemu-system-arm", "-M", "lm3s6965evb", "-nographic", "-monitor", "none",
                             "-serial", "stdio", "-kernel", str(elf)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    os.set_blocking(proc.stdout.fileno(), False)
    text, deadline = b"", time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            text += proc.stdout.read() or b""
            if want.encode() in text and text.split(want.encode(), 1)[1].count(b"\n"):
                break
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    return text.decode("utf-8", "replace")


def test_zephyr_qemu_cortex_m3_build_runs_bit_exact(tmp_path):
    if not os.environ.get("ZEPHYR_BASE"):
        pytest.skip("no Zephyr tree (ZEPHYR_BASE unset); see README 'Zephyr'")
    if not shutil.which("west") or not shutil.which("qemu-system-arm"):
        pytest.skip("no Zephyr tree: west or qemu-system-arm is not on PATH although ZEPHYR_BASE is set")
    archive = tmp_path / "m3.tar"
    metadata = compile_model(MODEL, archive, target="dtmm/cortex-m3")
    spec = metadata["inputs"][0]
    x = np.random.default_rng(5).integers(-128, 128, (1, *spec["shape"])).astype(np.int8)
    (tmp_path / "in.bin").write_bytes(x.tobytes())
    project = tmp_path / "app"
    with ProjectAPIClient.launch(templates_dir() / "zephyr") as client:
        client.generate_project(archive, project, {"board": "qemu_cortex_m3",
                                                   "input_bin": str(tmp_path / "in.bin")})
    with ProjectAPIClient.launch(project) as client:
        client.build({})
    console = _qemu_console(project / "build" / "zephyr" / "zephyr.elf", "DTMM output 0:")
    assert "DTMM status 0" in console, console
    line = console.split("DTMM output 0:", 1)[1].splitlines()[0]
    got = np.array([int(v) for v in line.split()], np.int8)
    expected = run_tflm_outputs(MODEL.read_bytes(), x)[0].reshape(-1)
    np.testing.assert_array_equal(got, expected)


def test_generation_embeds_the_input_and_refuses_a_core_without_the_archive_isa(tmp_path, edited_artifact):
    """Runs everywhere (no Zephyr tree needed): what the template writes for the build above."""
    from dtmm_tvm.micro.project import load_server

    server = load_server(templates_dir() / "zephyr")
    data = bytes(range(16))
    (tmp_path / "in.bin").write_bytes(data)
    portable = edited_artifact(lambda m: m.update(isa="c", target="dtmm/portable"), name="portable")
    server.Handler().generate_project(portable, tmp_path / "ok", {"board": "qemu_cortex_m3",
                                                                  "input_bin": str(tmp_path / "in.bin")})
    main = (tmp_path / "ok" / "src" / "main.c").read_text()
    assert "static uint8_t in0[16] __aligned(16) = {" + ", ".join(map(str, data)) + "};" in main
    assert 'printk("DTMM output 0:")' in main and "__has_include(<zephyr/kernel.h>)" in main
    (tmp_path / "short.bin").write_bytes(data[:5])
    with pytest.raises(server.ProjectError, match="5 bytes, the model's inputs take 16"):
        server.Handler().generate_project(portable, tmp_path / "short", {"board": "qemu_cortex_m3",
                                                                         "input_bin": str(tmp_path / "short.bin")})
    dsp = edited_artifact(lambda m: m.update(isa="dsp"), name="dsp")
    with pytest.raises(server.ProjectError, match="dtmm/cortex-m4 .dsp kernels.; qemu_cortex_m3 .* has no DSP"):
        server.Handler().generate_project(dsp, tmp_path / "m4", {"board": "qemu_cortex_m3"})
    assert not (tmp_path / "short").exists() and not (tmp_path / "m4").exists()  # nothing half-written
    with pytest.raises(server.ProjectError, match=r"mps2_an521 .* has no DSP in Zephyr's build .-mcpu=cortex-m33\+nodsp."):
        server.Handler().generate_project(dsp, tmp_path / "an521", {"board": "mps2_an521"})
    server.Handler().generate_project(dsp, tmp_path / "nrf", {"board": "nrf5340dk_nrf5340_cpuapp"})
