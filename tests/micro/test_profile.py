"""Per-operator profile on the target: a timer read around every operator call of the runner."""

import json
from pathlib import Path

import numpy as np

from dtmm_tvm.cli.main import main as dtmm
from dtmm_tvm.compiler import compile_model
from dtmm_tvm.micro import run_artifact
from dtmm_tvm.micro.profile import format_profile, profile_rows

MODEL = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "conv_basic.tflite"


def test_layers_sum_to_the_whole_model(needs_toolchain, tmp_path, capsys):
    archive = tmp_path / "m.tar"
    meta = compile_model(MODEL, archive)
    x = np.random.default_rng(4).integers(-128, 128, (2, *meta["inputs"][0]["shape"])).astype(np.int8)
    plain = run_artifact(archive, "mps2-an386", x)
    profiled = run_artifact(archive, "mps2-an386", x, profile=True)
    # The timer marks change nothing in what the model computes.
    np.testing.assert_array_equal(profiled.outputs, plain.outputs)
    assert plain.op_instructions is None
    assert len(profiled.op_instructions) == 2 and all(len(ops) == len(meta["runner_steps"])
                                                      for ops in profiled.op_instructions)
    for i, ops in enumerate(profiled.op_instructions):
        assert all(n > 0 for n in ops)
        # Sum of the layers within 1% of the whole-model count, both of the build without marks
        # and of the profiled build itself.
        assert abs(sum(ops) - plain.instructions_per_inference[i]) <= 0.01 * plain.instructions_per_inference[i]
        assert abs(sum(ops) - profiled.instructions_per_inference[i]) <= 0.01 * profiled.instructions_per_inference[i]

    profile = profile_rows(meta, profiled)
    rows = profile["rows"]
    assert [r["function"] for r in rows] == [s["function"] for s in meta["runner_steps"]]
    conv = next(r for r in rows if r["format"] and r["format"].startswith("filterlet"))
    assert conv["op"] == "conv2d" and conv["filterlet_sparsity"] > 0.5 and conv["index_bytes"] > 0
    assert abs(sum(r["percent"] for r in rows) - 100.0 * profile["layers_instructions"] /
               profile["total_instructions"]) < 1e-6
    placed = [r for r in rows if r["arena_offset"] is not None]
    assert placed and all(r["arena_offset"] + r["arena_bytes"] <= meta["arena"]["bytes"] for r in placed)
    assert rows[-1]["output_to"] == meta["outputs"][0]["c_name"]  # written in place
    assert "filterlet" in format_profile(profile)

    # The CLI: a table, and the profile as JSON for 'dtmm report'.
    np.save(tmp_path / "x.npy", x)
    assert dtmm(["run", str(archive), "--inputs", str(tmp_path / "x.npy"), "--profile",
                 "--profile-json", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert "instructions" in out and "conv2d_1" in out and "layers " in out
    saved = json.loads((tmp_path / "p.json").read_text())
    assert saved["rows"][0]["function"] == rows[0]["function"]


def test_report_renders_in_chromium(needs_toolchain, tmp_path):
    """dtmm report on a DTMM build, its dense twin and a measured profile, rendered by headless
    Chromium: every plot's colour is on the screenshot and the numbers are in the page."""
    import shutil
    import subprocess

    import pytest

    from dtmm_tvm.report import COLORS

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("missing tools: chromium (apt-get install --no-install-recommends chromium)")
    from PIL import Image

    archive, dense = tmp_path / "m.tar", tmp_path / "dense.tar"
    meta = compile_model(MODEL, archive)
    compile_model(MODEL, dense, mode="dense")
    x = np.random.default_rng(5).integers(-128, 128, (1, *meta["inputs"][0]["shape"])).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    assert dtmm(["run", str(archive), "--inputs", str(tmp_path / "x.npy"), "--profile-json",
                 str(tmp_path / "p.json")]) == 0
    html = tmp_path / "report.html"
    assert dtmm(["report", str(archive), "--compare", str(dense), "--profile", str(tmp_path / "p.json"),
                 "-o", str(html)]) == 0
    assert dtmm(["report", str(archive), "-o", str(html)]) == 2  # never overwritten without --force
    text = html.read_text()
    assert "<script" not in text and "http" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    profile = json.loads((tmp_path / "p.json").read_text())
    png = tmp_path / "report.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={png}", "--window-size=980,2200", html.as_uri()],
                   check=True, capture_output=True, timeout=120)
    pixels = Image.open(png).convert("RGB")
    counts = {}
    for count, rgb in pixels.getcolors(maxcolors=1 << 20):
        counts[rgb] = count

    def area(hex_colour):
        rgb = tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
        return sum(n for c, n in counts.items() if max(abs(a - b) for a, b in zip(c, rgb)) <= 6)

    # Each plot's bars are on the screen (a legend swatch alone is 120 pixels). The index share
    # of this small model's flash is under a pixel wide: its number is checked in the page below.
    for plot in ("sparsity", "dtmm", "dense", "instructions"):
        assert area(COLORS[plot]) > 1000, plot
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", html.as_uri()],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    assert f"{profile['total_instructions']:,}" in dom
    assert f"{meta['constants_bytes']:,}" in dom and f"{meta['arena']['bytes']:,}" in dom
    assert "Arena memory timeline" in dom and "conv2d_1" in dom
    index_bytes = sum(layer.get("index_bytes") or 0 for layer in meta["layers"])
    assert index_bytes > 0 and f"<td>{index_bytes:,}</td>" in dom
