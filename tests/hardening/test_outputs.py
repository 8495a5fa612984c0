"""Output paths: clear errors, nothing half-written, concurrent compiles do not interfere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from dtmm_tvm.cli.main import main as dtmm
from dtmm_tvm.compiler import compile_model
from dtmm_tvm.errors import DTMMError

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "tests" / "fixtures" / "ops"
FAKE = ROOT / "tests" / "micro" / "fake_artifact"


def test_parent_that_is_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DTMMError, match="cannot write the archive there"):
        compile_model(OPS / "misc_add.tflite", blocker / "out.tar")
    assert blocker.read_text() == "x"


def test_full_file_system_leaves_nothing(tmp_path, monkeypatch):
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DTMMError, match="No space left"):
        compile_model(OPS / "misc_add.tflite", tmp_path / "out.tar")
    assert list(tmp_path.iterdir()) == []


def test_run_outputs_in_missing_directory_fails_before_running(tmp_path, capsys):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 1, 16), np.int8))
    status = dtmm(["run", str(FAKE), "--inputs", str(x), "--outputs", str(tmp_path / "nowhere" / "y.npy")])
    err = capsys.readouterr().err
    assert status == 2 and "not a writable directory" in err and len(err.strip().splitlines()) == 1


def _archive_contents(path: Path) -> dict:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_concurrent_compiles_do_not_interfere(tmp_path):
    models = [OPS / "misc_add.tflite", OPS / "misc_mean_keep.tflite"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, "-m", "dtmm_tvm.cli.main", "compile", str(m), "-o",
                               str(tmp_path / f"{m.stem}.tar")], env=env, stderr=subprocess.PIPE, text=True)
             for m in models]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    for m in models:
        alone = tmp_path / f"{m.stem}-alone.tar"
        compile_model(m, alone)
        together = _archive_contents(tmp_path / f"{m.stem}.tar")
        assert together.keys() == _archive_contents(alone).keys()
        for name, data in _archive_contents(alone).items():
            if name == "metadata.json":
                assert json.loads(data)["layers"] == json.loads(together[name])["layers"]
            else:
                assert data == together[name], name
