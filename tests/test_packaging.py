"""A regular (non-editable) install works: the wheel carries the project template and the
bundled model, and the installed ``dtmm`` compiles and runs a model from outside the source tree.

The wheel is built from a copy of the sources (the repository stays clean) and installed with
``--no-deps`` into a fresh venv. Its dependencies (TVM, numpy, ...) are made visible through a
``.pth`` file naming this venv's site-packages as a plain path: Python adds the directory to
``sys.path`` but does not run the ``.pth`` files inside it, so the editable install of the
source tree living there stays inactive and ``dtmm_tvm`` can only come from the wheel. That keeps
the test offline and fast (no 100 MB TVM download) while exercising exactly the wheel's files.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The installed package must not see the source tree (e.g. through PYTHONPATH).
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
SOURCES = ["dtmm_tvm", "relay_passes", "microtvm_project", "pyproject.toml", "setup.py", "README.md"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory, needs_cross_tools):
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy(path, src / name)
    shutil.copytree(ROOT / "models" / "fashion_mnist", src / "models" / "fashion_mnist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp / "dist"), str(src)], check=True, capture_output=True)
    (wheel,) = (tmp / "dist").glob("dtmm_tvm-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True)
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  env=ENV, check=True, capture_output=True, text=True).stdout.strip())
    deps = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (purelib / "_dtmm_test_deps.pth").write_text("\n".join(deps) + "\n")
    return {"venv": venv, "python": python, "purelib": purelib, "work": tmp}


@pytest.fixture(scope="module")
def needs_cross_tools():
    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm", "make") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")


def test_wheel_ships_templates_and_model_and_runs(installed):
    python, venv, work = installed["python"], installed["venv"], installed["work"]
    probe = subprocess.run([str(python), "-c", "import dtmm_tvm, dtmm_tvm.demo as d; "
                            "from dtmm_tvm.micro.project import template_dir; "
                            "print(dtmm_tvm.__file__); print(template_dir()); print(d.MODEL)"],
                           cwd=work, env=ENV, check=True, capture_output=True, text=True).stdout.split()
    for path in probe:
        assert Path(path).resolve().is_relative_to(installed["purelib"].resolve()), path
    model = Path(probe[2])
    dtmm = venv / "bin" / "dtmm"
    version = subprocess.run([str(dtmm), "--version"], env=ENV, check=True, capture_output=True, text=True).stdout
    assert version.startswith("dtmm 0.1.0 (Apache TVM ")

    subprocess.run([str(dtmm), "compile", str(model), "--target", "dtmm/cortex-m4", "-o", "m.tar"],
                   cwd=work, env=ENV, check=True, capture_output=True)
    x = np.load(model.parent / "test_subset.npz")["x_uint8"][:2].reshape(2, 28, 28, 1)
    np.save(work / "x.npy", (x.astype(np.int16) - 128).astype(np.int8))
    run = subprocess.run([str(dtmm), "run", "m.tar", "--inputs", "x.npy", "--outputs", "y.npy", "--json"],
                         cwd=work, env=ENV, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["board"] == "mps2-an386" and record["inferences"] == 2 and record["instructions"] > 10**6
    assert np.load(work / "y.npy").shape == (2, 1, 10)
