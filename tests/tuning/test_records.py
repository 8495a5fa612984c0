"""Tuning records without a board: keys, schema, validation, and the builders' lookup hook."""

import json
from dataclasses import replace

import pytest
import tvm

from dtmm_tvm.cli.main import main
from dtmm_tvm.schedules.conv import ConvSchedule
from dtmm_tvm.ops.fully_connected import fully_connected_int8
from dtmm_tvm.schedules.fully_connected import FullyConnectedSchedule
from dtmm_tvm.quant.conv import Conv2DParams, FullyConnectedParams
from dtmm_tvm.target import resolve_target
from dtmm_tvm.schedules import (
    SCHEMA,
    TuningRecords,
    TuningRecordsError,
    apply_records,
    layer_key,
    lookup_schedule,
    schedule_from_json,
    schedule_to_json,
)

from .conftest import FIXTURES

CONV = Conv2DParams(input_shape=(1, 8, 8, 4), weight_shape=(8, 3, 3, 4), padding=(1, 1, 1, 1))
FC = FullyConnectedParams(input_shape=(1, 64), weight_shape=(10, 64), input_zero_point=-3)


def _records(target="dtmm/cortex-m4", layers=None):
    return TuningRecords(target, "mps2-an386", layers or {})


def _entry(op, params, best, default, **extra):
    from dtmm_tvm.schedules.records import params_json

    return {"op": op, "layers": [f"{op}_0"], "params": params_json(params), "space_size": 3,
            "default": {"schedule": schedule_to_json(default), "instructions": 100},
            "best": {"schedule": schedule_to_json(best), "instructions": 90},
            "candidates": [], **({"extra": extra} if extra else {})}


def test_layer_key_is_stable_and_distinguishes_params():
    key = layer_key("conv2d", CONV)
    assert key == layer_key("conv2d", replace(CONV))
    assert key.startswith("conv2d/") and len(key) == len("conv2d/") + 16
    assert key != layer_key("conv2d", replace(CONV, output_zero_point=1))
    assert key != layer_key("conv2d_filterlet", CONV)
    assert layer_key("conv2d_filterlet", CONV, kept_filterlets=3) != layer_key("conv2d_filterlet", CONV, kept_filterlets=4)
    # A parsed dtmm.params dict (lists) gives the same key as the dataclass (tuples).
    assert key == layer_key("conv2d", json.loads(json.dumps(CONV.__dict__)))


def test_schedule_json_round_trip():
    s = ConvSchedule(pixels_per_block=8, channels_per_block=4, unroll_taps=True)
    assert schedule_from_json(json.loads(json.dumps(schedule_to_json(s)))) == s
    with pytest.raises(TuningRecordsError, match="unknown schedule type"):
        schedule_from_json({"type": "Nope", "fields": {}})
    with pytest.raises(TuningRecordsError, match="pixels_per_block=3"):
        schedule_from_json({"type": "ConvSchedule", "fields": {"pixels_per_block": 3}})


def test_builders_consult_records_only_inside_apply_records_and_for_their_target():
    best = FullyConnectedSchedule(rows_per_block=1)
    records = _records(layers={layer_key("fully_connected", FC): _entry("fully_connected", FC, best,
                                                                         FullyConnectedSchedule(4))})
    m4, m55 = resolve_target("dtmm/cortex-m4"), resolve_target("dtmm/cortex-m55")
    with m4:
        assert "rows_per_block=4" in str(fully_connected_int8(FC).attrs["dtmm.schedule"])
        with apply_records(records) as ctx:
            assert lookup_schedule("fully_connected", FC) == best
            assert str(fully_connected_int8(FC).attrs["dtmm.schedule"]) == "rows_per_block=1"
            # An explicit schedule always wins; another layer gets its default.
            assert "rows_per_block=2" in str(fully_connected_int8(FC, schedule=FullyConnectedSchedule(2))
                                             .attrs["dtmm.schedule"])
            assert lookup_schedule("fully_connected", replace(FC, output_zero_point=5)) is None
            with apply_records(None):
                assert lookup_schedule("fully_connected", FC) is None
        assert list(ctx.hits) == [layer_key("fully_connected", FC)]
    with m55, apply_records(records):
        assert lookup_schedule("fully_connected", FC) is None  # records are for the M4
    with tvm.target.Target("llvm"), apply_records(records):
        assert lookup_schedule("fully_connected", FC) is None


def _write(tmp_path, data, name="records.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.mark.parametrize("content, message", [
    ("{not json", r"not valid JSON"),
    ([1, 2], r"not a tuning records file"),
    ({"schema": "other/9", "target": "dtmm/cortex-m4", "board": "b", "layers": {}}, r"unsupported schema"),
    ({"schema": SCHEMA, "board": "b", "layers": {}}, r"'target'"),
    ({"schema": SCHEMA, "target": "dtmm/cortex-m4", "board": "b",
      "layers": {"conv2d/00": {"op": "conv2d", "best": {"schedule": {"type": "ConvSchedule",
                                                                     "fields": {"pixels_per_block": 5}},
                                                        "instructions": 1}}}}, r"conv2d/00: best: invalid ConvSchedule"),
    ({"schema": SCHEMA, "target": "dtmm/cortex-m4", "board": "b",
      "layers": {"conv2d/00": {"op": "conv2d", "best": {"schedule": schedule_to_json(FullyConnectedSchedule()),
                                                        "instructions": 1}}}}, r"op conv2d takes a ConvSchedule"),
])
def test_bad_records_files_are_one_clear_error(tmp_path, capsys, content, message):
    path = _write(tmp_path, content)
    with pytest.raises(TuningRecordsError, match=message):
        TuningRecords.load(path)
    out = tmp_path / "out.tar"
    status = main(["compile", str(FIXTURES / "fully_connected.tflite"), "-o", str(out), "--tuning-records", str(path)])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err and err.count("\n") == 1
    assert str(path) in err
    assert not out.exists()


def test_missing_records_file_and_target_mismatch(tmp_path, capsys):
    out = tmp_path / "out.tar"
    status = main(["compile", str(FIXTURES / "fully_connected.tflite"), "-o", str(out),
                   "--tuning-records", str(tmp_path / "nope.json")])
    err = capsys.readouterr().err
    assert status == 2 and "nope.json: no such tuning records file" in err
    path = tmp_path / "m55.json"
    _records("dtmm/cortex-m55").save(path)
    status = main(["compile", str(FIXTURES / "fully_connected.tflite"), "-o", str(out), "--target", "dtmm/cortex-m4",
                   "--tuning-records", str(path)])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert "m55.json" in err and "dtmm/cortex-m55" in err and "dtmm/cortex-m4" in err
    assert not out.exists()


def test_tune_rejects_a_board_of_another_core(tmp_path, capsys):
    status = main(["tune", str(FIXTURES / "fully_connected.tflite"), "--target", "dtmm/cortex-m4",
                   "--board", "mps3-an547", "-o", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert status == 2 and "mps3-an547" in err and "cortex-m4" in err
    assert not (tmp_path / "r.json").exists()
