"""Tensor names from a model file never reach the C compiler, file names or comments unsanitised,
and tensors are told apart by position, not by name.

The same int8 model is compiled with plain names and with hostile ones (path traversal, quotes,
shell substitution, a comment terminator, C keywords and macros, non-ASCII, NUL, newlines, a 10 kB
name, and every tensor sharing one name, which used to compile to a model that returns its
input); every archive's C builds on the host with ``-Wall -Werror`` and gives the same outputs,
equal to TFLM's; one hostile archive also runs on QEMU.
"""

from __future__ import annotations

import ctypes
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fuzz"))
import mutators  # noqa: E402

from dtmm_tvm.compiler import compile_model  # noqa: E402
from dtmm_tvm.reference.tflm import run_tflm  # noqa: E402

SEED_MODEL = HERE.parents[0] / "fixtures" / "ops" / "conv_fc_bias_relu.tflite"
HOSTILE = ["../../x", "a\"b'c\\", "$(touch /tmp/dtmm-pwned)", "*/ _Static_assert(0, \"injected\"); /*",
           "int", "NULL", "output", "input", "r\u00e9seau\u2603", "nul\x00byte", "new\nline\r", "x" * 10_000,
           "", "A", "a", "__LINE__", "#define x", "tvmgen_default_run", "return", "main"]
CC = shutil.which("gcc") or shutil.which("cc")


def renamed(raw: bytes, names) -> bytes:
    model = mutators.unpack_tflite(raw)
    for i, tensor in enumerate(model.subgraphs[0].tensors):
        tensor.name = names(i).encode("utf-8")
    return mutators.pack_tflite(model)


VARIANTS = {
    "plain": lambda i: f"tensor_{i}",
    "hostile": lambda i: HOSTILE[i % len(HOSTILE)],
    "all_one_name": lambda i: "x",
    "all_output": lambda i: "output",
    "long": lambda i: f"{i}" + "y" * 10_000,
}


def host_run(archive: Path, work: Path, xs: np.ndarray):
    """Build the archive's C on the host (-Wall -Werror) and run inferences through ctypes."""
    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    meta = json.loads(members["metadata.json"])
    src, inc = work / "src", work / "include"
    src.mkdir(parents=True)
    inc.mkdir()
    for name, data in members.items():
        if name.startswith("codegen/host/src/"):
            (src / Path(name).name).write_bytes(data)
        elif name.startswith("codegen/host/include/"):
            (inc / Path(name).name).write_bytes(data)
    # Every name in the header is a generated identifier; nothing the model said is code.
    header = (inc / "tvmgen_default.h").read_text()
    assert "_Static_assert" not in header and "touch" not in header.replace("touch_tmp", "")
    lib = work / "libmodel.so"
    proc = subprocess.run([CC, "-std=gnu11", "-O1", "-Wall", "-Werror", "-Wno-unused-function", "-shared",
                           "-fPIC", "-I", str(inc), *map(str, sorted(src.glob("*.c"))), "-o", str(lib)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    so = ctypes.CDLL(str(lib))

    def struct(entries):
        return type("S", (ctypes.Structure,), {"_fields_": [(e["c_name"], ctypes.c_void_p) for e in entries]})

    results = []
    for x in xs:
        out = np.zeros(meta["outputs"][0]["shape"], dtype=meta["outputs"][0]["dtype"])
        xin = np.ascontiguousarray(x.reshape(meta["inputs"][0]["shape"]))
        ins = struct(meta["inputs"])(xin.ctypes.data)
        outs = struct(meta["outputs"])(out.ctypes.data)
        assert so.tvmgen_default_run(ctypes.byref(ins), ctypes.byref(outs)) == 0
        results.append(out)
    return np.stack(results), meta


@pytest.mark.skipif(CC is None, reason="no host C compiler (missing tools)")
def test_hostile_names_compile_and_match_plain_names(tmp_path):
    raw = SEED_MODEL.read_bytes()
    rng = np.random.default_rng(0)
    plain_meta = None
    results = {}
    for variant, names in VARIANTS.items():
        model = tmp_path / f"{variant}.tflite"
        model.write_bytes(renamed(raw, names))
        archive = tmp_path / f"{variant}.tar"
        compile_model(model, archive, target="dtmm/portable")  # built and run on the host
        with tarfile.open(archive) as tar:  # no member name comes from the model
            # The build fragments are named after the module (--module-name), never the model.
            assert all(m.name.startswith(("metadata.json", "codegen", "tvmgen_default.")) and ".." not in m.name
                       for m in tar.getmembers()), [m.name for m in tar.getmembers()]
        if variant == "plain":
            meta = json.loads(tarfile.open(archive).extractfile("metadata.json").read())
            x = rng.integers(-128, 128, size=[4] + meta["inputs"][0]["shape"], dtype=np.int8)
        results[variant], meta = host_run(archive, tmp_path / variant, x)
        if variant == "plain":
            plain_meta = meta
            expected = np.stack([run_tflm(raw, x[k]) for k in range(len(x))]).reshape(results[variant].shape)
            assert np.array_equal(results[variant], expected)
        else:
            # The original names are kept (as data) in metadata.json, by position.
            assert meta["inputs"][0]["name"] != plain_meta["inputs"][0]["name"] or variant == "plain"
    for variant, out in results.items():
        assert np.array_equal(out, results["plain"]), variant
    assert not Path("/tmp/dtmm-pwned").exists()


def test_hostile_model_runs_on_qemu(tmp_path, request):
    from dtmm_tvm.micro import run_artifact
    from dtmm_tvm.micro.qemu import require_toolchain

    try:
        require_toolchain()
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"missing tools: {err}")
    raw = SEED_MODEL.read_bytes()
    model = tmp_path / "hostile.tflite"
    model.write_bytes(renamed(raw, VARIANTS["hostile"]))
    archive = tmp_path / "hostile.tar"
    meta = compile_model(model, archive)
    x = np.random.default_rng(1).integers(-128, 128, size=[2] + meta["inputs"][0]["shape"], dtype=np.int8)
    result = run_artifact(archive, "mps2-an386", x)
    expected = np.stack([run_tflm(raw, x[k]) for k in range(len(x))])
    assert np.array_equal(result.outputs.reshape(expected.shape), expected)
