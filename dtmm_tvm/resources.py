"""Where the project templates and the bundled model live: the source tree, or the copy a
regular ``pip install`` puts inside the package (``dtmm_tvm/_bundled``, made by setup.py)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_SOURCE_TREE = _PACKAGE.parent
_BUNDLED = _PACKAGE / "_bundled"


def _first(relative: str) -> Path:
    for root in (_SOURCE_TREE, _BUNDLED):
        if (root / relative).exists():
            return root / relative
    return _SOURCE_TREE / relative  # for error messages: where it should be


def templates_dir() -> Path:
    """The directory holding the project templates (``qemu_baremetal``, ...)."""
    return _first("microtvm_project")


def bundled_model_dir() -> Path:
    """The bundled Fashion-MNIST model, its unpruned twin and the test subset."""
    return _first("models/fashion_mnist")
