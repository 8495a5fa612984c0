"""The baseline methods (``filter``, ``unstructured``, ``pattern``) through the pruner's own steps.

Same as ``dtmm`` (:func:`dtmm_tvm.pruning.api.prune`): the Keras model is read (never written),
batch norms folded, a budget search prices candidates through the compiler's cost model
(:mod:`dtmm_tvm.costmodel`), masks are enforced after every fine-tuning step
(:func:`dtmm_tvm.pruning.finetune.finetune`), the full-int8 export is checked against what the
method promised (:func:`dtmm_tvm.pruning.methods.check_method_export`), and the budgets are
checked on the compiled artifact (:func:`dtmm_tvm.pruning.api._compile_and_check`).

The search: one ratio per method (filter: filters removed per prunable channel group; unstructured:
weights removed per conv; pattern: (in, out) kernels removed per conv on top of the pattern
projection), the smallest whose predicted figures meet the budget (bisection; the figures are
monotone in the ratio). Each candidate's convs are priced by the compiler's own format decision
(:func:`dtmm_tvm.costmodel.format_choice.decide_conv_format`, the cost model's predictions) on the
candidate's own non-zero weights, so every format the compiler knows (filterlet, unstructured CSR,
pattern) is priced with its exact bytes. A budget that even the largest ratio misses (e.g. the
compiler has no format that stores the method's sparsity in fewer bytes) is refused with the
smallest achievable figures, as for ``dtmm``: a budget is never silently relaxed.
"""

from __future__ import annotations

import time

import numpy as np

from .methods import FILTER_CRITERIA, LayerMasks, check_method_export, chip_scores, policy
from .search import Budget, BudgetError, CostEvaluator, Plan, describe_budget_failure, feasible

#: Largest ratio each method's search may reach.
MAX_RATIO = {"filter": 0.9, "unstructured": 0.97, "pattern": 0.95}
CHIP_IMAGES = 32


def _conv_shape(evaluator, layer, cin=None, cout=None):
    from .search import _same_pad

    cm = evaluator.cm
    h, w, cin_full = evaluator._in_shape(layer.name)
    kh, kw = layer.kernel_shape[:2]
    return cm.ConvShape(h, w, cin if cin is not None else cin_full, cout if cout is not None else layer.channels,
                        kh, kw, tuple(layer.strides), _same_pad(layer, (h, w)))


def _feature_layer(graph, group):
    """The layer whose output CHIP scores for ``group``: the last carrier (after activation and
    residual add) in graph order."""
    order = {n: i for i, n in enumerate(graph.order)}
    return max(group.carriers, key=lambda n: order[n])


def filter_scores(keras_model, graph, dataset, criterion: str) -> dict:
    """``{group id: (C,)}`` filter scores of the prunable channel groups."""
    if criterion not in FILTER_CRITERIA:
        raise ValueError(f"unknown filter criterion {criterion!r}; choose one of {FILTER_CRITERIA}")
    groups = [g for g in graph.groups() if g.prunable]
    if criterion == "l1":
        from .keras_adapter import compute_importance

        return compute_importance(keras_model, graph, dataset.x_val, dataset.y_val, "l1")[1]
    import keras

    names = [_feature_layer(graph, g) for g in groups]
    probe = keras.Model(keras_model.inputs, [keras_model.get_layer(n).output for n in names])
    maps = probe.predict(dataset.x_val[:CHIP_IMAGES], verbose=0)
    maps = maps if isinstance(maps, (list, tuple)) else [maps]
    return {g.id: chip_scores(m) for g, m in zip(groups, maps)}


class MethodSearch:
    """Prices one method's candidates through the cost model (see the module docstring)."""

    def __init__(self, method, graph, target, keras_kernels: dict, filter_scores_: dict | None = None,
                 method_policy=None):
        from .importance import filterlet_importance

        self.method = method
        self.graph = graph
        self.target = target
        self.kernels = keras_kernels            # conv name -> folded HWIO kernel
        self.policy = method_policy
        fl = {l.name: filterlet_importance(self.kernels[l.name], None, "l1") for l in graph.convs()}
        self.scores = filter_scores_ or {}
        self.evaluator = CostEvaluator(graph, target, fl, self.scores or
                                       {g.id: np.ones(g.channels) for g in graph.groups() if g.prunable})
        self.dense = self.evaluator.evaluate(Plan(), detail=True)

    def masks(self, ratio: float) -> LayerMasks:
        if self.method == "filter":
            groups = [g for g in self.graph.groups() if g.prunable]
            return LayerMasks(channel_keep=self.policy.keep({g.id: self.scores[g.id] for g in groups}, ratio))
        return self.policy.masks(self.kernels, ratio)

    def price(self, ratio: float):
        """``(Cost, LayerMasks)`` of the method at ``ratio``."""
        from .search import Cost

        if self.method == "filter":
            plan = Plan(filter_ratio={g.id: ratio for g in self.graph.groups() if g.prunable})
            return self.evaluator.evaluate(plan, detail=True), self.masks(ratio)
        lm = self.masks(ratio)
        cm = self.evaluator.cm
        instr, flash = self.dense.instructions, self.dense.flash_bytes
        layers = {k: dict(v) for k, v in self.dense.layers.items()}
        for layer in self.graph.convs():
            mask = lm.element_masks[layer.name]
            shape = _conv_shape(self.evaluator, layer)
            nonzero = (np.asarray(mask) != 0).transpose(3, 0, 1, 2).astype(np.int8)   # OHWI
            fmt, nbytes, n_instr = self._compiler_choice(shape, nonzero)
            d = self.dense.layers[layer.name]
            instr += n_instr - d["instructions"]
            flash += nbytes - d["bytes"]
            layers[layer.name].update(format=fmt, bytes=int(nbytes), instructions=int(n_instr),
                                      weight_sparsity=round(float(1 - nonzero.mean()), 4))
        return Cost(int(instr), int(flash), self.dense.sram_bytes, 0.0, layers), lm

    def _compiler_choice(self, shape, weight_ohwi):
        """``(format, flash bytes, predicted instructions)`` of one conv with these non-zeros: the
        compiler's own decision (:func:`dtmm_tvm.costmodel.format_choice.decide_conv_format`, every
        format it knows), bytes = stored weights + per-channel requantization."""
        from ..costmodel.format_choice import decide_conv_format
        from ..sparsity.compact import COMPACT, kept_filters_of
        from .search import _params

        cm = self.evaluator.cm
        decision = decide_conv_format(weight_ohwi, _params(shape), self.target, "speed")
        fmt = decision.format
        # requantization records per computed filter (the compact format drops the others')
        filters = kept_filters_of(weight_ohwi).size if fmt == COMPACT else shape.cout
        nbytes = decision.bytes[fmt] + cm.REQUANT_BYTES_PER_CHANNEL * filters
        instr = decision.predicted.get(fmt)
        if instr is None:   # not considered (stays dense without a prediction)
            instr = cm.predict_conv_formats(shape, None, self.target)["dense"][0]
        return fmt, int(nbytes), int(instr)

    def search(self, budget: Budget, steps: int = 12):
        """``(ratio, Cost, LayerMasks)``: the smallest ratio meeting ``budget`` (resolved against
        the dense model's predicted figures); a budget the largest ratio cannot meet is a
        :class:`BudgetError` naming the smallest achievable figures."""
        top = MAX_RATIO[self.method]
        most, _ = self.price(top)
        if not feasible(most, budget):
            raise BudgetError(f"budget cannot be met by {self.method} pruning: at ratio {top:.2f} the model needs "
                              + describe_budget_failure(most, budget) + "; raise the budget", smallest=most,
                              budget=budget)
        lo, hi = 0.0, top
        cost0, lm0 = self.price(0.0)
        if feasible(cost0, budget):
            return 0.0, cost0, lm0
        for _ in range(steps):
            mid = 0.5 * (lo + hi)
            cost, _ = self.price(mid)
            if feasible(cost, budget):
                hi = mid
            else:
                lo = mid
        cost, lm = self.price(hi)
        return hi, cost, lm


def prune_baseline(method, keras_model, model_path, dataset, graph, unknown, budget_in: Budget, target, *,
                   filter_criterion="chip", n_patterns=8, epochs=3, schedule="oneshot", lr=1e-3, batch=64,
                   distill=0.0, temperature=4.0, seed=0, check_compiled=True, compile_output=None, run_on_board=False, board_limit=None,
                   eval_dense_int8=True, int8_accuracy_images=None, say=lambda e, i: None, started=None):
    """The ``filter`` / ``unstructured`` / ``pattern`` pruner (see the module docstring);
    returns a :class:`dtmm_tvm.pruning.api.PruneResult`."""
    from . import api
    from .finetune import ExportError, accuracy, export_int8, finetune
    from .keras_adapter import build_pruned

    started = started or time.time()
    opts = {"criterion": filter_criterion} if method == "filter" else (
        {"n_patterns": n_patterns} if method == "pattern" else {})
    pol = policy(method, **opts)
    convs = graph.convs()
    float_dense_acc = accuracy(keras_model, dataset.x_test, dataset.y_test)
    # Batch norms folded, nothing removed: the kernels the element masks are computed on.
    folded, _ = build_pruned(keras_model, graph, {}, {})
    kernels = {l.name: folded.get_layer(l.name).kernel.numpy() for l in convs}
    scores = filter_scores(keras_model, graph, dataset, filter_criterion) if method == "filter" else None
    searcher = MethodSearch(method, graph, target, kernels, scores, pol)
    budget = budget_in.resolve(searcher.dense)
    ratio, cost, lm = searcher.search(budget)
    say("search", {"step": 1, "total": 1, "cost": cost})
    # Batch norms stay through fine-tuning as in the DTMM pruner (the int8 export folds them);
    # a mask computed on the folded kernel zeroes the same weights of the unfolded one.
    if method == "filter":
        pruned, _ = build_pruned(keras_model, graph, lm.channel_keep, {}, fold_batchnorm=False)
    else:
        pruned, _ = build_pruned(keras_model, graph, {}, {}, fold_batchnorm=False)
        for name, mask in lm.element_masks.items():
            layer = pruned.get_layer(name)
            layer.kernel.assign(layer.kernel.numpy() * mask)
    float_pruned_no_ft = accuracy(pruned, dataset.x_test, dataset.y_test)

    def masks_at(fraction):
        if method == "filter":
            return {}
        if fraction >= 1.0:
            return lm.element_masks
        return searcher.masks(ratio * fraction).element_masks

    # The same fine-tuning as the DTMM pruner's, distillation from the unpruned model included.
    history = finetune(pruned, dataset, masks_at, epochs=epochs, schedule=schedule, lr=lr, batch=batch,
                       progress=lambda h: say("epoch", dict(h, total=epochs)), seed=seed,
                       teacher=keras_model if distill > 0 else None, distill=distill, temperature=temperature)
    float_pruned_acc = accuracy(pruned, dataset.x_test, dataset.y_test)
    rng = np.random.default_rng(seed)
    rep = dataset.x_train[rng.choice(len(dataset.x_train), min(200, len(dataset.x_train)), replace=False)]
    say("export", {})
    tflite = export_int8(pruned, rep)
    export_rows = _check_export(method, tflite, convs, graph, lm, n_patterns)
    int8_acc, xq_test, y_test = api._int8_accuracy(tflite, dataset.x_test, dataset.y_test, int8_accuracy_images)
    dense_tflite, dense_int8_acc = None, None
    if eval_dense_int8 or budget_in.flash_fraction is not None or budget_in.instructions_fraction is not None:
        dense_tflite = export_int8(keras_model, rep)
        if eval_dense_int8:
            dense_int8_acc = api._int8_accuracy(dense_tflite, dataset.x_test, dataset.y_test,
                                                int8_accuracy_images)[0]
    exp = {r["layer"]: r for r in export_rows}
    rows = []
    for name, d in cost.layers.items():
        row = {"layer": name, "kind": d["kind"], "filters": d.get("filters"), "filters_total": d.get("filters_total"),
               "format": d.get("format"), "bytes": d["bytes"], "dense_bytes": searcher.dense.layers[name]["bytes"],
               "predicted_instructions": d["instructions"],
               "dense_predicted_instructions": searcher.dense.layers[name]["instructions"]}
        if name in exp:
            row.update({k: v for k, v in exp[name].items() if k not in ("layer", "filters")})
        rows.append(row)
    report = {
        "model": str(model_path) if model_path else keras_model.name,
        "data": dataset.name, "target": target, "method": method,
        "importance": filter_criterion if method == "filter" else "magnitude",
        "schedule": schedule, "epochs": epochs,
        "distill": {"weight": distill, "temperature": temperature} if distill > 0 else None,
        "budget": {"flash_bytes": budget.flash_bytes, "sram_bytes": budget.sram_bytes,
                   "instructions": budget.instructions},
        "not_understood": unknown,
        "plan": {"method": method, "ratio": round(ratio, 4),
                 "patterns": {f"{k[0]}x{k[1]}": v.astype(int).tolist() for k, v in lm.patterns.items()},
                 "notes": lm.notes},
        "predicted": {"dense": api._cost_json(searcher.dense), "pruned": api._cost_json(cost)},
        "layers": rows,
        "accuracy": {"float_dense": float_dense_acc, "float_pruned_before_finetune": float_pruned_no_ft,
                     "float_pruned": float_pruned_acc, "int8_pruned_tflm": int8_acc,
                     "int8_dense_tflm": dense_int8_acc, "int8_images": len(y_test)},
        "finetune": history,
    }
    metadata = None
    if check_compiled or compile_output or run_on_board:
        fractions = (budget_in.flash_fraction, budget_in.instructions_fraction)
        try:
            metadata = api._compile_and_check(tflite, target, budget, report, compile_output, run_on_board, xq_test,
                                              y_test, board_limit, say,
                                              dense_tflite if any(f is not None for f in fractions) else None,
                                              fractions, x1=dataset.x_test[:1])
        except BudgetError as err:
            err.report = report
            raise
    report["seconds"] = round(time.time() - started, 1)
    return api.PruneResult(tflite, report, pruned, metadata, dense_tflite)


def _check_export(method, tflite, convs, graph, lm, n_patterns):
    from ..frontend.tflite_reader import read_tflite
    from .finetune import ExportError

    g = read_tflite(tflite, name="export")
    ops = [op for op in g.operators if op.opcode == "CONV_2D"]
    if len(ops) != len(convs):
        raise ExportError(f"the int8 model has {len(ops)} CONV_2D ops, the pruned Keras model {len(convs)} convs")
    rows = []
    for op, layer in zip(ops, convs):
        w = g.tensor(op.inputs[1]).data
        if w is None or w.dtype != np.int8:
            raise ExportError(f"{layer.name}: int8 constant weights expected in the export")
        kept = None
        if method == "filter":
            grp = graph.group_of(layer.name)
            keep = lm.channel_keep.get(grp.id) if grp is not None else None
            kept = int(keep.sum()) if keep is not None else layer.channels
        try:
            row = check_method_export(method, w, layer.name, lm.element_masks.get(layer.name), kept,
                                      max_patterns=n_patterns)
        except ValueError as err:
            raise ExportError(str(err)) from None
        row["filters_total"] = layer.channels
        rows.append(row)
    return rows
