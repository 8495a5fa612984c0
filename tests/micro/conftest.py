"""Fixtures for the micro (QEMU) tests: artifact paths and a toolchain guard."""

import json
import shutil
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FAKE_ARTIFACT = HERE / "fake_artifact"
CALIB_ARTIFACT = HERE / "calib_artifact"
BOARD_NAMES = ["mps2-an386", "mps2-an500", "mps3-an547"]
TOOLS = ["arm-none-eabi-gcc", "qemu-system-arm", "make"]


@pytest.fixture
def needs_toolchain():
    """Skip (not fail) where the cross toolchain or QEMU is not installed."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")


@pytest.fixture
def fake_artifact():
    return FAKE_ARTIFACT


@pytest.fixture
def calib_artifact():
    return CALIB_ARTIFACT


@pytest.fixture
def edited_artifact(tmp_path):
    """Copy the fake artifact and apply an edit to its metadata.json; returns the copy."""

    def make(edit=None, name="edited"):
        dst = tmp_path / name
        shutil.copytree(FAKE_ARTIFACT, dst)
        meta = json.loads((dst / "metadata.json").read_text())
        if edit is not None:
            edit(meta)
        (dst / "metadata.json").write_text(json.dumps(meta))
        return dst

    return make
