"""``dtmm tune`` end to end on the emulated Cortex-M4: records, applying them, outputs unchanged."""

import json
from dataclasses import replace

import numpy as np

from dtmm_tvm.cli.main import main
from dtmm_tvm.codegen import read_metadata
from dtmm_tvm.micro import run_artifact
from dtmm_tvm.reference import run_tflm
from dtmm_tvm.schedules import SCHEMA, TuningRecords, schedule_from_json
from dtmm_tvm.tuning import tune_model
from dtmm_tvm.tuning import tuner as tuner_mod

from .conftest import FIXTURES

BOARD = "mps2-an386"


def test_tune_compile_run_matches_tflm_and_is_not_slower(tmp_path, capsys, needs_toolchain):
    model = FIXTURES / "ds_cnn.tflite"  # conv, depthwise, pointwise and fully connected layers
    records_path = tmp_path / "records.json"
    status = main(["tune", str(model), "--target", "dtmm/cortex-m4", "--board", BOARD, "--trials", "2",
                   "-o", str(records_path)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "[1/" in captured.err and "M instr" in captured.err  # progress on stderr

    data = json.loads(records_path.read_text())
    assert data["schema"] == SCHEMA and data["target"] == "dtmm/cortex-m4" and data["board"] == BOARD
    records = TuningRecords.load(records_path)  # validates
    ops = {e["op"] for e in records.layers.values()}
    assert {"depthwise_conv2d", "fully_connected"} <= ops and ops & {"conv2d", "conv2d_filterlet"}
    for key, entry in records.layers.items():
        assert 1 <= len(entry["candidates"]) <= 2
        assert entry["candidates"][0]["schedule"] == entry["default"]["schedule"]
        assert all(c["error"] is None for c in entry["candidates"]), entry
        assert entry["best"]["instructions"] == min(c["instructions"] for c in entry["candidates"])
        assert entry["best"]["instructions"] <= entry["default"]["instructions"]
        schedule_from_json(entry["best"]["schedule"])

    tuned, untuned = tmp_path / "tuned.tar", tmp_path / "untuned.tar"
    assert main(["compile", str(model), "-o", str(untuned)]) == 0
    assert main(["compile", str(model), "-o", str(tuned), "--tuning-records", str(records_path)]) == 0
    meta = read_metadata(tuned)
    assert meta["tuning"]["records"] == "records.json"
    assert len(meta["tuning"]["tuned_layers"]) == sum(len(e["layers"]) for e in records.layers.values())
    assert all("schedule" in layer for layer in meta["layers"] if layer["name"] in meta["tuning"]["tuned_layers"])
    assert "tuning" not in read_metadata(untuned)

    shape = meta["inputs"][0]["shape"]
    x = np.random.default_rng(7).integers(-128, 128, (2, *shape), dtype=np.int8)
    expected = np.asarray(run_tflm(model.read_bytes(), x))
    got_tuned = run_artifact(tuned, BOARD, x)
    got_untuned = run_artifact(untuned, BOARD, x)
    assert np.array_equal(np.asarray(got_tuned.outputs).reshape(expected.shape), expected)
    assert np.array_equal(np.asarray(got_untuned.outputs).reshape(expected.shape), expected)
    assert got_tuned.instructions <= got_untuned.instructions


def test_a_candidate_with_different_outputs_is_rejected(monkeypatch, needs_toolchain):
    """A (deliberately) broken kernel: its outputs differ from the default's, so it is recorded
    with an error and never chosen, even though it is measured."""
    real = tuner_mod.build_candidate_func
    broken = []

    def build(layer, schedule, target):
        if schedule == layer_defaults.get(layer.key):
            return real(layer, schedule, target)
        broken.append(layer.key)
        # Same signature and constants, wrong arithmetic: the output zero point is off by one.
        bad = replace(layer, params=replace(layer.params, output_zero_point=layer.params.output_zero_point + 1))
        return real(bad, schedule, target)

    layer_defaults = {}
    real_select = tuner_mod.select_candidates

    def select(space, trials, seed, key):
        layer_defaults[key] = space[0]
        return real_select(space, trials, seed, key)

    monkeypatch.setattr(tuner_mod, "build_candidate_func", build)
    monkeypatch.setattr(tuner_mod, "select_candidates", select)
    records = tune_model(FIXTURES / "fully_connected.tflite", target="dtmm/cortex-m4", trials=3, progress=False)
    assert broken
    for entry in records.layers.values():
        default, others = entry["candidates"][0], entry["candidates"][1:]
        assert default["error"] is None
        assert others and all("outputs differ" in c["error"] for c in others), others
        assert entry["best"]["schedule"] == entry["default"]["schedule"]


def test_tune_a_filter_compacted_conv(tmp_path, capsys, needs_toolchain):
    """DS-CNN at 90% filterlet sparsity: its 1x1 convs keep 6 of 64 filters and compile to the
    filter-compacted conv, which is tuned like the others (the schedules of the dense conv of its
    kept filters), and the tuned build stays bit-exact."""
    from pathlib import Path

    model = Path(__file__).resolve().parents[2] / "bench" / "models" / "ds_cnn_s90.tflite"
    records_path = tmp_path / "records.json"
    assert main(["tune", str(model), "--target", "dtmm/cortex-m4", "--board", BOARD, "--trials", "2",
                 "-o", str(records_path)]) == 0
    records = TuningRecords.load(records_path)
    compact = [e for e in records.layers.values() if e["op"] == "conv2d_compact"]
    assert compact and all(len(e["layers"]) == 4 for e in compact)
    assert all(c["error"] is None for e in compact for c in e["candidates"])
    tuned = tmp_path / "tuned.tar"
    assert main(["compile", str(model), "-o", str(tuned), "--tuning-records", str(records_path)]) == 0
    meta = read_metadata(tuned)
    assert {l["format"] for l in meta["layers"] if l["name"] in meta["tuning"]["tuned_layers"]} >= {"filter_compact"}
    x = np.random.default_rng(3).integers(-128, 128, (2, *meta["inputs"][0]["shape"]), dtype=np.int8)
    expected = np.asarray(run_tflm(model.read_bytes(), x))
    got = run_artifact(tuned, BOARD, x)
    assert np.array_equal(np.asarray(got.outputs).reshape(expected.shape), expected)
    capsys.readouterr()
