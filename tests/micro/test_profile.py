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
