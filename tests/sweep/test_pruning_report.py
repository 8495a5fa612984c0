"""bench/pruning's issue-9 target arithmetic on hand-made rows: the equal-accuracy comparison
takes each method's smallest model within 0.5 pt of dense, and says when that model sits at the
tightest budget run (the grid, not the method, bounds it)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.pruning.report import method_label, targets  # noqa: E402


def _row(method, fraction, accuracy, flash, instr):
    return {"model": "m", "method": method, "fraction": fraction, "accuracy": accuracy, "m4_constants_bytes": flash,
            "m4_instructions": instr, "m4_layers": []}


def test_equal_accuracy_saving_and_the_grid_bound():
    rows = [_row("dense", None, 0.900, 1000, 100),
            _row("dtmm", 0.6, 0.902, 600, 70), _row("dtmm", 0.4, 0.897, 400, 60),
            _row("filter", 0.6, 0.899, 700, 50), _row("filter", 0.4, 0.890, 410, 40),
            _row("pattern", 0.6, 0.896, 620, 90)]
    (t,) = targets(rows)
    eq = t["equal_accuracy"]
    # dtmm's 0.4 model is within 0.5 pt (0.897 >= 0.895); filter's is not, so its 0.6 model counts
    assert eq["dtmm"]["flash"] == 400 and eq["dtmm"]["at_tightest_budget_run"]
    assert eq["filter"]["flash"] == 700 and not eq["filter"]["at_tightest_budget_run"]
    assert eq["unstructured"] is None
    checks = {c["target"]: c for c in t["checks"]}
    filt = checks["DTMM >= 35% smaller than filter"]
    assert filt["met"] and filt["measured"] == round(1 - 400 / 700, 4) and filt["grid_limited"] == ["dtmm"]
    pat = checks["DTMM >= 50% fewer M4 instructions than pattern"]
    assert not pat["met"] and pat["measured"] == round(1 - 60 / 90, 4) and pat["grid_limited"] == ["dtmm", "pattern"]
    flash = {e["fraction"]: e for e in t["equal_flash"]}
    assert flash[0.4]["dtmm_ge_filter"] and flash[0.6]["dtmm_ge_filter"]


def test_dtmm_runs_with_a_filter_bound_or_an_instructions_budget_are_variants_of_their_own():
    def rec(method, **inputs):
        return {"inputs": {"method": method, **inputs}, "result": {"method": method}}

    assert method_label(rec("dtmm")) == "dtmm"
    assert method_label(rec("dtmm", max_filter_ratio=0.5)) == "dtmm-f50"
    assert method_label(rec("dtmm", instructions_fraction=0.45)) == "dtmm-i45"
    assert method_label(rec("dtmm", max_filter_ratio=0.5, instructions_fraction=0.45)) == "dtmm-f50-i45"
    assert method_label(rec("filter", max_filter_ratio=0.5)) == "filter"   # DTMM's search bound only
    assert method_label(rec("filter", instructions_fraction=0.45)) == "filter-i45"
    # each DTMM variant gets its own target comparisons; another method's variant is never "filter"
    rows = [_row("dense", None, 0.900, 1000, 100), _row("dtmm", 0.4, 0.897, 400, 60),
            _row("dtmm-i45", 0.4, 0.896, 420, 40), _row("filter", 0.6, 0.899, 700, 50),
            _row("filter-i45", 0.4, 0.899, 300, 30)]
    other = [dict(r, model="n") for r in rows if r["method"] != "dtmm-i45"]   # a model without that variant
    by_variant = {t["dtmm_variant"]: t for t in targets(rows + other) if t["model"] == "m"}
    assert set(by_variant) == {"dtmm", "dtmm-i45"}
    assert [t["dtmm_variant"] for t in targets(rows + other) if t["model"] == "n"] == ["dtmm"]
    assert by_variant["dtmm-i45"]["equal_accuracy"]["dtmm"]["flash"] == 420
    assert by_variant["dtmm"]["equal_accuracy"]["filter"]["flash"] == 700


def test_two_budgets_that_gave_the_same_model_are_two_rows_sharing_its_measurement():
    # (ResNet's DTMM search at 40% and 33% chose the same plan: one .tflite, measured once)
    from bench.pruning.report import rows_of

    def prune(key, fraction):
        return {"key": key, "fn": "bench.pruning.jobs:prune_job", "status": "ok",
                "inputs": {"method": "dtmm", "fraction": fraction},
                "result": {"model": "m", "method": "dtmm", "fraction": fraction, "tflite_sha256": "s", "seconds": 1,
                           "accuracy": {"int8_accuracy": 0.8, "tflm_bit_exact": True},
                           "budget": {"flash_bytes": int(1000 * fraction)}}}

    measure = {"key": "k3", "fn": "bench.pruning.jobs:measure_job", "status": "ok",
               "inputs": {"tflite_sha256": "s", "target": "dtmm/cortex-m4"},
               "result": {"target": "dtmm/cortex-m4", "instructions": 50, "constants_bytes": 330,
                          "elf_flash_bytes": 900, "arena_bytes": 64, "bit_exact_vs_tflm": True, "layers": []}}
    rows = rows_of([prune("k1", 0.4), prune("k2", 0.33), measure])
    assert sorted(r["fraction"] for r in rows) == [0.33, 0.4]
    assert all(r["m4_instructions"] == 50 and r["budget_met_on_artifact"] for r in rows)
    # the same budget run again (another machine's cache path: another job key): its newest job
    again = prune("k4", 0.4)
    again["result"]["accuracy"] = {"int8_accuracy": 0.7, "tflm_bit_exact": True}
    rows = rows_of([prune("k1", 0.4), prune("k2", 0.33), measure, again])
    assert sorted((r["fraction"], r["accuracy"]) for r in rows) == [(0.33, 0.8), (0.4, 0.7)]


def test_bad_flags_are_one_line_exit_2_before_anything_runs(tmp_path, capsys):
    from bench.pruning.__main__ import main

    out = tmp_path / "out"
    for flags, message in ((["--instructions-fraction", "1.5"], "--instructions-fraction 1.5: must lie in (0, 1)"),
                           (["--max-filter-ratio", "1"], "--max-filter-ratio 1.0: must be at least 0 and below 1"),
                           (["--base-images", "60000"], "--base-images 60000: must lie in 1..55,000"),
                           (["--train-images", "0"], "--train-images 0: must lie in 1..55,000"),
                           (["--fractions", "0.4,1.2"], "--fractions must lie in (0, 1)"),
                           (["--models", "lenet"], "unknown model 'lenet'")):
        assert main(flags + ["--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not out.exists()   # nothing started, nothing written
