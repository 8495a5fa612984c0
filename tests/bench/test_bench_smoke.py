"""Smoke test of the benchmark harness: one small conv on Cortex-M4, all four columns.

Checks that ``python -m bench`` produces its table and JSON with positive figures and that our
builds and the naive loop are bit-exact with TFLM. No timing assertions.
"""

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "tests" / "fixtures" / "ops" / "conv_3x3_same_s1_relu.tflite"


@pytest.fixture
def needs_toolchain():
    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm", "make") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")


def test_bench_smoke(tmp_path, needs_toolchain):
    pytest.importorskip("tflite_micro")
    from bench.__main__ import main

    status = main(["--micro", str(MODEL), "--no-e2e", "--cores", "m4", "--jobs", "1",
                   "--inputs", "1", "--no-plot", "--out", str(tmp_path)])
    assert status == 0

    md = (tmp_path / "results.md").read_text()
    assert "### Cortex-M4: instructions per inference" in md
    assert "| conv_3x3_same_s1_relu |" in md
    assert "## Targets" in md and "not measured here" in md.lower()

    results = json.loads((tmp_path / "results.json").read_text())
    entry = results["micro"]["conv_3x3_same_s1_relu"]
    assert entry["macs"] > 0 and 0 < entry["kept_macs"] <= entry["macs"]
    runs = entry["runs"]["m4"]
    assert set(runs) == {"dense", "dtmm", "naive", "tvm"}
    for column, rec in runs.items():
        assert rec["ok"], (column, rec.get("error"))
        assert rec["instructions"] > 0
        assert rec["instr_per_mac"] > 0 and rec["instr_per_kept_mac"] > 0
        assert rec["flash"]["model_code"] > 0 and rec["flash"]["total"] > 0
        assert rec["flash"]["model_constants"] > 0
        assert rec["ram"]["total"] > 0 and rec["ram"]["stack_high_water"] > 0
    for column in ("dense", "dtmm", "naive"):
        assert runs[column]["exact"], column
    # TVM's float requantization may be off by one LSB, never more on this layer.
    assert runs["tvm"]["max_abs_diff"] <= 1
    # The fixture is filterlet-pruned (40 %); DTMM (--optimize speed) takes a filterlet format only
    # where it is predicted faster, so it is never bigger, nor slower than dense beyond the
    # prediction's tolerance (the kept-dense case builds the same kernel).
    assert runs["dtmm"]["stored_weight_bytes"] <= runs["dense"]["stored_weight_bytes"]
    if runs["dtmm"]["layer_formats"] == ["dense"]:
        assert runs["dtmm"]["instructions"] == runs["dense"]["instructions"]
