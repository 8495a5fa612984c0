"""Progress goes to stderr only: with it on, ``--json`` stdout is still exactly one JSON document.

``dtmm compile --json`` with ``DTMM_PROGRESS=1`` (plain lines, stderr not a terminal) and ``dtmm run
--json`` over several inputs with stderr on a pseudo-terminal (the tqdm bar); without either, the
short commands print nothing on stderr (tests/cli/test_bad_input_core.py checks the one-line error).
"""

import fcntl
import json
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "tests" / "fixtures" / "ops" / "conv_1x1_relu.tflite"


def _dtmm(args, env_extra=None, stderr=subprocess.PIPE):
    env = {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "dtmm_tvm.cli.main", *args], stdout=subprocess.PIPE,
                          stderr=stderr, text=True, cwd=ROOT, env=env)


def test_compile_and_run_json_stay_pure_with_progress_on(tmp_path):
    archive = tmp_path / "m.tar"
    result = _dtmm(["compile", str(MODEL), "-o", str(archive), "--json"], {"DTMM_PROGRESS": "1"})
    assert result.returncode == 0, result.stderr
    metadata = json.loads(result.stdout)  # the whole of stdout is the JSON document
    assert metadata["target"] == "dtmm/cortex-m4"
    lines = result.stderr.splitlines()
    for i, stage in enumerate(["import", "passes", "codegen", "archive"], 1):
        assert any(line.startswith(f"compile: {stage} [{i}/4]") for line in lines), result.stderr

    if not all(shutil.which(t) for t in ("arm-none-eabi-gcc", "qemu-system-arm", "make")):
        pytest.skip("missing tools: arm-none-eabi-gcc, qemu-system-arm or make (for dtmm run)")
    spec = metadata["inputs"][0]
    inputs = tmp_path / "in.npy"
    np.save(inputs, np.random.default_rng(0).integers(-128, 128, (3, *spec["shape"])).astype(np.int8))
    # stderr on a terminal: the tqdm bar; stdout a pipe.
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a real terminal's size
    chunks = []
    reader = threading.Thread(target=_drain, args=(master, chunks))
    reader.start()
    try:
        result = _dtmm(["run", str(archive), "--inputs", str(inputs), "--json"], stderr=slave)
    finally:
        os.close(slave)
        reader.join(timeout=30)
        os.close(master)
    terminal = b"".join(chunks).decode("utf-8", "replace")
    assert result.returncode == 0, terminal
    record = json.loads(result.stdout)
    assert record["inferences"] == 3
    assert "run: build" in terminal and "run: run" in terminal and "2/2" in terminal, terminal


def _drain(fd, chunks):
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:  # the slave side closed
            return
        if not data:
            return
        chunks.append(data)
