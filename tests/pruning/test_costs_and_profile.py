"""The search prices the non-conv operators (pooling, global average, softmax, add) through the
cost model, and the prune report carries each layer's measured instructions from the profile."""

import numpy as np
import pytest

from dtmm_tvm import costmodel
from dtmm_tvm.pruning import Layer, PruneGraph
from dtmm_tvm.pruning.api import attach_measured
from dtmm_tvm.pruning.search import CostEvaluator, Plan

TARGET = "dtmm/cortex-m4"


def _graph():
    L = Layer
    return PruneGraph([
        L("in", "input", [], (16, 16, 3)),
        L("c1", "conv", ["in"], (16, 16, 8), (3, 3, 3, 8), padding="same"),
        L("c2", "conv", ["c1"], (16, 16, 8), (3, 3, 8, 8), padding="same"),
        L("add", "add", ["c1", "c2"], (16, 16, 8)),
        L("pool", "passthrough", ["add"], (8, 8, 8), class_name="MaxPooling2D", pool_size=(2, 2), strides=(2, 2)),
        L("gap", "passthrough", ["pool"], (8,), class_name="GlobalAveragePooling2D"),
        L("fc", "dense", ["gap"], (10,), (8, 10), activation="softmax"),
    ], outputs=["fc"])


def _evaluator(graph):
    rng = np.random.default_rng(0)
    fl = {l.name: rng.random((l.channels, 3, 3)) + 0.1 for l in graph.convs()}
    f = {g.id: rng.random(g.channels) + 0.1 for g in graph.groups() if g.prunable}
    return CostEvaluator(graph, TARGET, fl, f)


def test_search_prices_pool_mean_softmax_and_add():
    ev = _evaluator(_graph())
    cost = ev.evaluate(Plan(), detail=True)
    layers = cost.layers
    assert layers["add"]["instructions"] == costmodel.predict_add(16 * 16 * 8, TARGET)
    assert layers["pool"]["instructions"] == costmodel.predict_pool("max_pool2d", (8, 8), 8, (2, 2), TARGET)
    assert layers["gap"]["instructions"] == costmodel.predict_mean(8, 8, 8, TARGET)
    assert layers["fc/softmax"]["instructions"] == costmodel.predict_softmax(10, 1, TARGET)
    assert all(layers[n]["instructions"] > 0 for n in ("add", "pool", "gap", "fc/softmax"))
    assert cost.instructions == sum(d["instructions"] for d in layers.values())
    # Filters removed from the residual group shrink the add, the pool and the mean with them.
    group = ev.graph.group_of("c1")
    half = ev.evaluate(Plan(filter_ratio={group.id: 0.5}), detail=True).layers
    assert half["add"]["instructions"] == costmodel.predict_add(16 * 16 * 4, TARGET)
    assert half["gap"]["instructions"] < layers["gap"]["instructions"]


def test_measured_instructions_join_the_report_rows_by_name_then_order():
    rows = [{"layer": "c1", "kind": "conv"}, {"layer": "c2", "kind": "conv"}, {"layer": "pool", "kind": "max_pool2d"},
            {"layer": "fc", "kind": "dense"}, {"layer": "fc/softmax", "kind": "softmax"},
            {"layer": "gone", "kind": "mean"}]
    profile = [
        {"op": "conv2d", "model_layer": "model_1/c2_1/convolution", "instructions": 200},
        {"op": "conv2d", "model_layer": "model_1/c1_1/convolution", "instructions": 100},
        {"op": "max_pool2d", "model_layer": None, "instructions": 30},
        {"op": "fully_connected", "model_layer": "model_1/fc_1/MatMul", "instructions": 40},
        {"op": "softmax", "model_layer": "model_1/fc_1/Softmax", "instructions": 50},
    ]
    attach_measured(rows, profile)
    assert [r["measured_instructions"] for r in rows] == [100, 200, 30, 40, 50, None]


def test_prune_table_shows_predicted_and_measured_columns(capsys):
    from dtmm_tvm.cli.prune import print_report

    layers = [{"layer": "c1", "kind": "conv", "filters": 6, "filters_total": 8, "format": "filterlet_u8",
               "filterlet_sparsity": 0.5, "bytes": 300, "dense_bytes": 600, "predicted_instructions": 1000,
               "measured_instructions": 980},
              {"layer": "pool", "kind": "max_pool2d", "filters": None, "filters_total": None, "format": None,
               "filterlet_sparsity": 0.0, "bytes": 0, "dense_bytes": 0, "predicted_instructions": 50,
               "measured_instructions": None}]
    report = {"layers": layers, "predicted": {"pruned": {"instructions": 1050, "flash_bytes": 300, "sram_bytes": 64},
                                              "dense": {"instructions": 2000, "flash_bytes": 600}},
              "compiled": {"constants_bytes": 300, "arena_bytes": 64, "instructions": 1100,
                           "profile_total_instructions": 1150},
              "accuracy": {"float_dense": 0.9, "float_pruned": 0.89, "int8_pruned_tflm": 0.88},
              "not_understood": [], "output": "x.tflite"}
    print_report(report)
    lines = capsys.readouterr().out.splitlines()
    assert "pred. instr" in lines[0] and "measured instr" in lines[0]
    assert lines[1].split()[-2:] == ["1000", "980"]
    assert lines[2].split()[-2:] == ["50", "-"]
    assert "measured 1100 instructions (profiled run: 1150)" in "\n".join(lines)


def test_a_plan_whose_artifact_misses_the_budget_is_searched_again_with_the_budget_scaled():
    """The cost model under-predicts this "board" by 15%: the first plan's artifact misses the
    instruction budget, the second search (budget x predicted / measured) meets it."""
    from dtmm_tvm.pruning.artifact import search_on_the_artifact
    from dtmm_tvm.pruning.search import Budget, BudgetError, anneal

    ev = _evaluator(_graph())
    dense = ev.evaluate(Plan())
    checked = Budget(instructions=int(0.7 * dense.instructions))

    def search(budget):
        return anneal(ev, budget, t_min=20.0, moves=20, objective_weight=0.0)

    def measure(plan):
        cost = ev.evaluate(plan)
        return {"constants_bytes": cost.flash_bytes, "arena_bytes": cost.sram_bytes,
                "instructions": int(cost.instructions * 1.15)}

    first = search(checked)
    assert measure(first.plan)["instructions"] > checked.instructions  # the premise: the first plan misses
    result, log = search_on_the_artifact(first, measure, checked, search, rounds=3)
    assert [bool(r["missed"]) for r in log] == [True, False]
    assert measure(result.plan)["instructions"] <= checked.instructions
    assert log[1]["search_budget"]["instructions"] < checked.instructions
    # Out of rounds: the last plan comes back as it is, its miss logged (the final check refuses it).
    result, log = search_on_the_artifact(first, measure, checked, search, rounds=1)
    assert result is first and len(log) == 1 and log[0]["missed"]
    # A scaled budget no plan can meet: one error naming the miss and the smallest figures.
    with pytest.raises(BudgetError, match=rf"compiled plan missed its budget \(\d+ instructions > budget "
                                          rf"{checked.instructions}\).*the model needs \d+ instructions"):
        search_on_the_artifact(first, lambda p: dict(measure(p), instructions=10**7), checked, search, 3)


def test_max_filter_ratio_keeps_that_share_of_every_layer():
    from dtmm_tvm.pruning.search import Budget, anneal

    ev = _evaluator(_graph())
    budget = Budget(instructions=int(0.6 * ev.evaluate(Plan()).instructions))
    for most in (0.9, 0.5):
        result = anneal(ev, budget, t_min=20.0, moves=20, max_filter_ratio=most)
        assert result.caps.filter_ratio and all(r <= most for r in result.caps.filter_ratio.values())
        assert all(r <= most for r in result.plan.filter_ratio.values())


def test_budget_fractions_resolve_on_dense_figures_measured_once():
    """The final check reuses the dense model's figures the calibration measured: given them, the
    measurer resolves the fractions without compiling anything (this 'model' would not compile)."""
    from dtmm_tvm.pruning.artifact import ArtifactMeasurer
    from dtmm_tvm.pruning.search import Budget

    measurer = ArtifactMeasurer("dtmm/cortex-m4", np.zeros((1, 4), np.float32), b"not a model", (0.5, 0.25),
                                dense={"dense_constants_bytes": 1000, "dense_instructions": 8000})
    budget = measurer.checked_budget(Budget(flash_bytes=600, instructions=3000))
    assert (budget.flash_bytes, budget.instructions) == (500, 2000)
