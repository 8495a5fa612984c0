"""Shared fixtures of the tuning tests."""

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "models"
TOOLS = ["arm-none-eabi-gcc", "qemu-system-arm", "make"]


@pytest.fixture
def needs_toolchain():
    """Skip (not fail) where the cross toolchain or QEMU is not installed."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")
