"""Build hook: ship the project templates and the bundled model inside the wheel.

The repository keeps ONE copy of each (``microtvm_project/``, ``models/fashion_mnist/``) at the
top level, where the docs and the templates' own README point. A regular (non-editable) build
copies them into the built package as ``dtmm_tvm/_bundled/...``, which
:mod:`dtmm_tvm.resources` finds when the source tree is not there. Everything else is in
pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: source (relative to the repository) -> destination inside the package, and the files to skip.
BUNDLED = {
    "microtvm_project": "dtmm_tvm/_bundled/microtvm_project",
    "models/fashion_mnist": "dtmm_tvm/_bundled/models/fashion_mnist",
}
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "train.py")


class BuildWithBundledData(build_py):
    """build_py that also copies the templates and the bundled model into the build."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads them from the source tree
        for src, dst in BUNDLED.items():
            target = Path(self.build_lib) / dst
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(ROOT / src, target, ignore=SKIP)


setup(cmdclass={"build_py": BuildWithBundledData})
