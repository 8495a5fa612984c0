"""``prune(model, data, budget, target)``: the whole pruner, as ``dtmm prune`` runs it.

Steps: read the Keras model (never written to) and the data, check they fit; the channel groups
and the layers not understood; importance on the validation split; simulated annealing for the
per-layer ratios under the budget (cost model); the searched plan compiled and measured on the
target, searched again with the budgets scaled by predicted / measured where the artifact missed
one; masks; the physically smaller model with filterlets zeroed; fine-tuning with masks enforced;
full-int8 export and its sparsity check; compile the int8 model and check the budgets on the
artifact's own figures. Nothing is written unless every step succeeded (then the ``.tflite`` is
written atomically).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DTMMError, OutputExistsError
from .artifact import ArtifactMeasurer, misses, quantize_input, search_on_the_artifact
from .data import DataError, Dataset, load_data
from .masks import filter_keep, filterlet_keep
from .search import Budget, BudgetError, CostEvaluator, Plan, anneal, describe_budget_failure


class PruneError(DTMMError):
    """A model the pruner cannot work on."""


@dataclass
class PruneResult:
    tflite: bytes
    report: dict
    keras_model: object = None
    artifact_metadata: dict | None = None
    dense_tflite: bytes | None = None


def _load_keras(model):
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.exists():
            raise PruneError(f"{path}: no such file")
        import keras

        try:
            return keras.models.load_model(path, compile=False), path
        except Exception as err:  # keras raises many types for a file that is not a model
            msg = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            raise PruneError(f"{path}: not a Keras model this pruner can read ({msg})") from None
    return model, None


def _kernel_masks(graph, fl_imp, channel_keep, ratios, fraction=1.0):
    """{conv: bool (Cout_kept, KH, KW)} at ``fraction`` of the plan's filterlet ratios."""
    out = {}
    for name, ratio in ratios.items():
        g = graph.group_of(name)
        keep = channel_keep.get(g.id) if g is not None else None
        imp = fl_imp[name] if keep is None else fl_imp[name][keep]
        out[name] = filterlet_keep(imp, ratio * fraction)
    return out


def _int8_accuracy(tflite_bytes: bytes, x: np.ndarray, y: np.ndarray, limit: int | None = None) -> tuple:
    """TFLM (host) top-1 accuracy and the quantized inputs."""
    from ..reference import run_tflm

    if limit:
        x, y = x[:limit], y[:limit]
    xq = quantize_input(tflite_bytes, x)
    out = run_tflm(tflite_bytes, xq)
    return float(np.mean(out.reshape(len(y), -1).argmax(axis=1) == y)), xq, y


def prune(model, data, budget: Budget | None = None, target: str = "dtmm/cortex-m4", *,
          importance: str = "taylor", epochs: int = 3, schedule: str = "oneshot", lr: float = 1e-3,
          batch: int = 64, distill: float = 0.0, temperature: float = 4.0, guard: float = 0.9,
          max_filter_ratio: float = 0.9, importance_weight: float = 1.0, objective_weight: float = 0.1,
          seed: int = 0,
          check_compiled: bool = True, compile_output=None, run_on_board: bool = False, board_limit=None,
          eval_dense_int8: bool = True, progress=None, search_kwargs: dict | None = None,
          method: str = "dtmm", filter_criterion: str = "chip", n_patterns: int = 8,
          int8_accuracy_images: int | None = None, calibration_rounds: int = 3,
          sensitivity_images: int = 1000) -> PruneResult:
    """Prune a trained Keras classifier for ``target`` under ``budget``.

    Parameters
    ----------
    model
        A Keras model or the path of a ``.keras`` file (read only).
    data
        ``"fashion-mnist"``, ``"digits"``, an ``.npz`` path or a :class:`Dataset`.
    budget
        :class:`Budget` (flash and SRAM bytes, or instructions); flash = the artifact's stored
        constants (weights, index, requantization), SRAM = its arena.
    importance
        ``"taylor"``, ``"l1"`` or ``"l2"``.
    epochs, schedule, lr, batch
        Fine-tuning: epochs (0: none), ``"oneshot"`` / ``"gradual"``, Adam's initial rate.
    distill, temperature
        Knowledge distillation from the unpruned model during fine-tuning: the weight of its
        softened outputs (at ``temperature``) in the loss; 0 (default) trains on the labels only.
    sensitivity_images
        The search's accuracy term: the measured validation-loss increase of each layer pruned
        alone at 25/50/75/90% (:func:`~dtmm_tvm.pruning.keras_adapter.layer_sensitivity`, on this
        many validation images), summed over layers. 0: the share of each layer's importance
        removed, averaged over layers (no measurement; a weaker predictor: on the VGG-style model
        it removed 75% of the second conv's filters, which alone drops accuracy to 15%).
    importance_weight, objective_weight
        Weights of the accuracy term and of the objective (instructions, or flash under a
        latency budget) in the search's energy; see :mod:`dtmm_tvm.pruning.search`. The default
        0.1 prunes about as far as the budgets need; 1.0 is the paper's objective (as fast as the
        accuracy guard allows).
    guard
        Accuracy guard quantile (see :meth:`CostEvaluator.caps`); higher allows more pruning.
    max_filter_ratio
        The largest share of any layer's filters the search may remove (default 0.9; 0.5 keeps at
        least half of every layer, leaving the rest of the budget to filterlets).
    check_compiled
        Compile the int8 model and check the budgets on the artifact (default True).
    compile_output
        Also keep that artifact here (``.tar``).
    run_on_board
        Run the test set (``board_limit`` images at most) on the emulated board, report on-board
        accuracy and measured instructions.
    progress
        ``progress(event: str, info: dict)`` callback (the CLI draws bars from it).
    method
        ``"dtmm"`` (filters + filterlets), or a baseline: ``"filter"`` (criterion
        ``filter_criterion``: ``"chip"`` or ``"l1"``), ``"unstructured"``, ``"pattern"``
        (``n_patterns`` patterns); see :mod:`dtmm_tvm.pruning.methods` and
        :mod:`dtmm_tvm.pruning.baselines`.
    int8_accuracy_images
        Evaluate the int8 model(s) with TFLM on this many test images only (default: all).
    calibration_rounds
        With ``check_compiled``: compile the searched plan before fine-tuning (fine-tuning keeps
        its masks, so the artifact's figures are the final model's) and, where the artifact misses
        a budget the cost model said it met, search again with that budget scaled by predicted /
        measured, at most this many compilations (0: no calibration; the final check still holds).
    """
    started = time.time()
    if not 0.0 <= max_filter_ratio < 1.0:
        raise PruneError(f"max_filter_ratio {max_filter_ratio}: must be at least 0 and below 1 "
                         "(the share of a layer's filters the search may remove)")
    budget = budget or Budget()
    budget_in = budget
    say = progress or (lambda event, info: None)
    from .keras_adapter import build_pruned, compute_importance, parse_model

    keras_model, model_path = _load_keras(model)
    dataset = load_data(data)
    in_shape = tuple(int(d) for d in keras_model.inputs[0].shape[1:])
    n_out = int(keras_model.outputs[0].shape[-1])
    dataset.check_fits(in_shape, n_out, model_name=str(model_path or keras_model.name))
    graph = parse_model(keras_model)
    convs = graph.convs()
    if not convs:
        raise PruneError(f"{model_path or keras_model.name}: no Conv2D layer to prune")
    unknown = [f"{l.class_name} '{l.name}' ({l.unknown_reason})" for l in graph.unknown()]
    say("graph", {"convs": len(convs), "unknown": unknown})
    from .methods import METHODS

    if method not in METHODS:
        raise PruneError(f"unknown pruning method '{method}'; choose one of {', '.join(METHODS)}")
    if method != "dtmm":
        from .baselines import prune_baseline

        return prune_baseline(method, keras_model, model_path, dataset, graph, unknown, budget, target,
                              filter_criterion=filter_criterion, n_patterns=n_patterns, epochs=epochs,
                              schedule=schedule, lr=lr, batch=batch, distill=distill, temperature=temperature,
                              seed=seed, check_compiled=check_compiled,
                              compile_output=compile_output, run_on_board=run_on_board, board_limit=board_limit,
                              eval_dense_int8=eval_dense_int8, int8_accuracy_images=int8_accuracy_images, say=say,
                              started=started)

    fl_imp, f_imp = compute_importance(keras_model, graph, dataset.x_val, dataset.y_val, importance)
    from .finetune import accuracy

    float_dense_acc = accuracy(keras_model, dataset.x_test, dataset.y_test)
    sensitivity = None
    if sensitivity_images > 0:
        from .keras_adapter import layer_sensitivity

        say("sensitivity", {})
        n = min(sensitivity_images, len(dataset.x_val))
        sensitivity = layer_sensitivity(keras_model, graph, fl_imp, f_imp, dataset.x_val[:n], dataset.y_val[:n])
    evaluator = CostEvaluator(graph, target, fl_imp, f_imp, sensitivity=sensitivity)
    kw = dict(search_kwargs or {})

    def search(b: Budget):
        return anneal(evaluator, b, importance_weight=importance_weight, objective_weight=objective_weight,
                      guard_quantile=guard, max_filter_ratio=max_filter_ratio, seed=seed,
                      progress=lambda i, n, cost: say("search", {"step": i, "total": n, "cost": cost}), **kw)

    result = search(budget)
    budget = result.budget  # fractions of the dense model resolved to bytes / instructions
    rng = np.random.default_rng(seed)
    rep = dataset.x_train[rng.choice(len(dataset.x_train), min(200, len(dataset.x_train)), replace=False)]
    from .finetune import check_export, export_int8, finetune

    fractions = (budget_in.flash_fraction, budget_in.instructions_fraction)
    dense_tflite = export_int8(keras_model, rep) if eval_dense_int8 or any(f is not None for f in fractions) else None
    calibration, dense_measured = [], None
    if check_compiled and calibration_rounds > 0:
        def plan_tflite(p: Plan) -> bytes:
            keep = {gid: filter_keep(f_imp[gid], r) for gid, r in p.filter_ratio.items()}
            model_, _ = build_pruned(keras_model, graph, keep, _kernel_masks(graph, fl_imp, keep, p.filterlet_ratio))
            return export_int8(model_, rep)

        with ArtifactMeasurer(target, dataset.x_test[:1],
                              dense_tflite if any(f is not None for f in fractions) else None, fractions) as measurer:
            checked = measurer.checked_budget(budget)
            result, calibration = search_on_the_artifact(
                result, lambda p: measurer.figures(plan_tflite(p), instructions=checked.instructions is not None),
                checked, search, calibration_rounds, say)
            dense_measured = measurer.dense
    plan = result.plan
    channel_keep = {gid: filter_keep(f_imp[gid], r) for gid, r in plan.filter_ratio.items()}
    fl_ratios = {n: r for n, r in plan.filterlet_ratio.items()}
    final_keep = _kernel_masks(graph, fl_imp, channel_keep, fl_ratios)
    # Batch norms stay through fine-tuning (the int8 export folds them): the BN-free network
    # retrained worse (VGG-style, 3 epochs: 88.6% folded, 89.8% kept).
    pruned, masks = build_pruned(keras_model, graph, channel_keep,
                                 final_keep if schedule == "oneshot" else {}, fold_batchnorm=False)
    float_pruned_no_ft = accuracy(pruned, dataset.x_test, dataset.y_test)

    def masks_at(fraction):
        keep = _kernel_masks(graph, fl_imp, channel_keep, fl_ratios, fraction)
        out = {}
        for name, k in keep.items():
            kernel = pruned.get_layer(name).kernel
            out[name] = np.broadcast_to(k.transpose(1, 2, 0)[:, :, None, :], kernel.shape).astype(np.float32)
        return out

    history = finetune(pruned, dataset, masks_at, epochs=epochs, schedule=schedule, lr=lr, batch=batch,
                       progress=lambda h: say("epoch", dict(h, total=epochs)), seed=seed,
                       teacher=keras_model if distill > 0 else None, distill=distill, temperature=temperature)
    float_pruned_acc = accuracy(pruned, dataset.x_test, dataset.y_test)
    say("export", {})
    tflite = export_int8(pruned, rep)
    conv_rows = []
    for l in convs:
        g = graph.group_of(l.name)
        keep = channel_keep.get(g.id) if g is not None else None
        kept = int(keep.sum()) if keep is not None else l.channels
        conv_rows.append((l.name, kept, l.channels, final_keep.get(l.name)))
    export_rows = check_export(tflite, conv_rows)
    int8_acc, xq_test, y_test = _int8_accuracy(tflite, dataset.x_test, dataset.y_test, int8_accuracy_images)
    dense_int8_acc = None
    if dense_tflite is not None:
        dense_int8_acc = _int8_accuracy(dense_tflite, dataset.x_test, dataset.y_test, int8_accuracy_images)[0]

    report = {
        "model": str(model_path) if model_path else keras_model.name,
        "data": dataset.name,
        "target": target,
        "method": "dtmm",
        "importance": importance,
        "schedule": schedule,
        "epochs": epochs,
        "distill": {"weight": distill, "temperature": temperature} if distill > 0 else None,
        "budget": {"flash_bytes": budget.flash_bytes, "sram_bytes": budget.sram_bytes,
                   "instructions": budget.instructions},
        "not_understood": unknown,
        "not_filter_pruned": [{"channels": g.carriers[0], "reason": g.reason} for g in graph.groups()
                              if not g.prunable and g.producers],
        "plan": plan.to_json(),
        "guard_caps": result.caps.to_json(),
        "search": {"evaluations": result.evaluations, "calibration": calibration,
                   "accuracy_term": "sensitivity" if sensitivity else "importance share"},
        "sensitivity": None if not sensitivity else {
            ("filters of " + {g.id: g for g in graph.groups()}[k[1]].carriers[0]) if k[0] == "f"
            else f"filterlets of {k[1]}":
            {"ratios": list(v[0]), "loss_increase": [round(x, 4) for x in v[1]]} for k, v in sensitivity.items()},
        "predicted": {"dense": _cost_json(result.dense), "pruned": _cost_json(result.cost)},
        "layers": _layer_rows(result, export_rows),
        "accuracy": {"float_dense": float_dense_acc, "float_pruned_before_finetune": float_pruned_no_ft,
                     "float_pruned": float_pruned_acc, "int8_pruned_tflm": int8_acc,
                     "int8_dense_tflm": dense_int8_acc},
        "finetune": history,
    }
    metadata = None
    if check_compiled or compile_output or run_on_board:
        try:
            metadata = _compile_and_check(tflite, target, budget, report, compile_output, run_on_board, xq_test,
                                          y_test, board_limit, say,
                                          dense_tflite if any(f is not None for f in fractions) else None, fractions,
                                          x1=dataset.x_test[:1], dense_measured=dense_measured)
        except BudgetError as err:
            err.report = report  # what was measured, for scripts that want to show it; nothing is written
            raise
    report["seconds"] = round(time.time() - started, 1)
    return PruneResult(tflite, report, pruned, metadata, dense_tflite)


def _cost_json(c):
    return {"instructions": c.instructions, "flash_bytes": c.flash_bytes, "sram_bytes": c.sram_bytes,
            "accuracy_term": round(c.accuracy_term, 5)}


def _layer_rows(result, export_rows):
    exp = {r["layer"]: r for r in export_rows}
    rows = []
    for name, d in result.cost.layers.items():
        dense = result.dense.layers.get(name, {})
        row = {"layer": name, "kind": d["kind"], "filters": d.get("filters"), "filters_total": d.get("filters_total"),
               "format": d.get("format"), "filterlet_sparsity": round(d.get("filterlet_sparsity", 0.0), 4),
               "bytes": d["bytes"], "dense_bytes": dense.get("bytes"),
               "predicted_instructions": d["instructions"], "dense_predicted_instructions": dense.get("instructions")}
        if name in exp:
            row["int8_filterlet_sparsity"] = round(exp[name]["filterlet_sparsity"], 4)
        rows.append(row)
    return rows


#: The prune report's layer kinds -> the compiled operator (metadata.json "op") they become.
_OP_OF_KIND = {"conv": "conv2d", "depthwise": "depthwise_conv2d", "dense": "fully_connected"}


def attach_measured(layers: list, profile_rows: list) -> None:
    """Put each compiled operator's measured instructions (``dtmm run --profile``'s rows) on the
    prune report's layer rows (``measured_instructions``). A row is matched by the Keras layer
    name in the operator's TFLite name (``model/conv1_1/...``), else by position among the
    operators of its kind (both are in graph order); a layer with no operator gets None."""
    import re

    used = set()

    def tokens(row):
        return [t for t in (row.get("model_layer") or "").split("/") if t]

    for layer in layers:
        op = _OP_OF_KIND.get(layer["kind"], layer["kind"])
        base = layer["layer"].split("/")[0]
        pattern = re.compile(re.escape(base) + r"(_\d+)?")
        cands = [i for i, r in enumerate(profile_rows) if r.get("op") == op and i not in used]
        named = [i for i in cands if any(pattern.fullmatch(t) for t in tokens(profile_rows[i]))]
        pick = named[0] if named else (cands[0] if cands else None)
        layer["measured_instructions"] = None if pick is None else int(profile_rows[pick]["instructions"])
        if pick is not None:
            used.add(pick)


def _compile_and_check(tflite, target, budget, report, compile_output, run_on_board, xq, y, limit, say,
                       dense_tflite=None, fractions=(None, None), *, x1, dense_measured=None):
    """Compile the pruned model and check the budgets on the artifact. Budgets given as fractions
    of the dense model are checked against the unpruned int8 model compiled the same way
    (``--dense`` build) and measured on the same board (:class:`ArtifactMeasurer`). ``xq``: the
    test set quantized for the pruned model; ``x1``: one float example, for the dense model;
    ``dense_measured``: the dense model's figures if the calibration measured them already."""
    from ..reference import run_tflm

    with ArtifactMeasurer(target, x1, dense_tflite, fractions, dense=dense_measured) as measurer:
        say("compile", {})
        metadata, art = measurer.compile(tflite)
        compiled = {"constants_bytes": int(metadata["constants_bytes"]),
                    "arena_bytes": int(metadata["arena"]["bytes"])}
        budget = measurer.checked_budget(budget)
        compiled.update(measurer.dense)
        if dense_tflite is not None:
            report["budget_checked"] = {"flash_bytes": budget.flash_bytes, "sram_bytes": budget.sram_bytes,
                                        "instructions": budget.instructions}
        if run_on_board or budget.instructions is not None:
            n = len(xq) if (run_on_board and not limit) else (min(len(xq), limit) if run_on_board else 1)
            say("board", {"images": n})
            res = measurer.run(art, metadata, xq[:n])
            compiled["instructions"] = int(res.instructions)
            compiled["flash_total_bytes"] = int(res.flash_bytes)
            if run_on_board:
                spec = metadata["inputs"][0]
                inputs = xq[:n].reshape((n,) + tuple(spec["shape"]))
                out = res.outputs.reshape(n, -1)
                compiled["board_accuracy"] = float(np.mean(out.argmax(axis=1) == y[:n]))
                compiled["board_images"] = n
                ref = run_tflm(tflite, inputs)
                compiled["bit_exact_vs_tflm"] = bool(np.array_equal(ref.reshape(res.outputs.shape), res.outputs))
                say("profile", {"images": 1})
                from ..micro.profile import profile_rows

                prof = profile_rows(metadata, measurer.run(art, metadata, xq[:1], profile=True))
                compiled["profile_total_instructions"] = int(prof["total_instructions"])
                attach_measured(report["layers"], prof["rows"])
        bad = misses(budget, compiled)
        report["compiled"] = compiled
        if bad:
            report["budget_missed"] = bad
            raise BudgetError("the compiled model misses its budget: " + "; ".join(bad)
                              + " (the cost model's prediction was within budget; nothing was written)")
        if compile_output is not None:
            out = Path(compile_output)
            tmp_out = out.with_name(out.name + ".tmp")
            tmp_out.write_bytes(art.read_bytes())
            report["compiled"]["artifact"] = str(out)
            report["_pending_artifact"] = (str(tmp_out), str(out))
    return metadata


def write_outputs(result: PruneResult, output, force: bool = False) -> None:
    """Write the .tflite (and move a pending artifact into place) atomically."""
    output = Path(output)
    if output.exists() and not force:
        raise OutputExistsError(f"{output}: exists; pass --force to replace it")
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_bytes(result.tflite)
    tmp.replace(output)
    pending = result.report.pop("_pending_artifact", None)
    if pending:
        os.replace(pending[0], pending[1])
