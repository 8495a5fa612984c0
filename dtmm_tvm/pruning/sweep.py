"""``dtmm prune --sweep SWEEP.yaml``: every (model, method, budget, target) as one job.

The sweep file (YAML)::

    data: fashion-mnist            # as --data
    models: [vgg.keras, resnet.keras]
    methods: [dtmm, filter, unstructured, pattern]     # default [dtmm]
    budgets:                       # each: flash_kb, sram_kb, instructions, flash_fraction,
      - {flash_fraction: 0.5}      #       instructions_fraction (fractions of the dense model)
      - {flash_kb: 40, sram_kb: 64}
    targets: [dtmm/cortex-m4, dtmm/cortex-m55]         # default [dtmm/cortex-m4]
    epochs: 1                      # fine-tuning epochs (default 1)
    board_images: 50               # test images run on the board per job (default 20)
    options: {lr: 0.001, filter_criterion: chip}       # more keyword arguments of prune()
    output: sweep.jsonl            # results (default: next to the sweep file, .jsonl)

Jobs run through :func:`dtmm_tvm.sweep.runner.run_jobs` (Ray tasks), keyed by a hash of their
inputs including the model file's sha256; each writes its pruned ``.tflite`` next to the results
(``<output>.d/<key>.tflite``) and records its report's figures.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..sweep.runner import SweepError, job_key

JOB_FN = "dtmm_tvm.pruning.sweep:prune_job"
BUDGET_KEYS = ("flash_kb", "sram_kb", "instructions", "flash_fraction", "instructions_fraction")
TOP_KEYS = {"data", "models", "methods", "budgets", "targets", "epochs", "board_images", "options", "output"}
PRUNE_OPTIONS = {"lr", "batch", "importance", "schedule", "guard", "seed", "filter_criterion", "n_patterns",
                 "importance_weight", "objective_weight", "int8_accuracy_images", "sensitivity_images"}


def load_sweep(path) -> tuple[list, Path]:
    """``(jobs, results path)`` of a sweep file; :class:`SweepError` (one line) for bad input."""
    import yaml

    from ..target import TARGET_TAGS
    from .methods import METHODS

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SweepError(f"{path}: no such file") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise SweepError(f"{path}: malformed YAML{where}: {getattr(err, 'problem', None) or err}") from None
    if not isinstance(doc, dict):
        raise SweepError(f"{path}: a sweep is a mapping with data, models, budgets (and methods, targets, ...)")
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise SweepError(f"{path}: unknown key '{sorted(unknown)[0]}' (known: {', '.join(sorted(TOP_KEYS))})")
    for key in ("data", "models", "budgets"):
        if key not in doc:
            raise SweepError(f"{path}: '{key}' is missing")

    def as_list(key, default=None):
        v = doc.get(key, default)
        v = [v] if isinstance(v, (str, dict)) else v
        if not isinstance(v, list) or not v:
            raise SweepError(f"{path}: '{key}' must be a non-empty list")
        return v

    models = [str(m) for m in as_list("models")]
    for m in models:
        mp = (path.parent / m) if not Path(m).is_absolute() else Path(m)
        if not mp.exists():
            raise SweepError(f"{path}: model '{m}' not found")
    methods = [str(m) for m in as_list("methods", ["dtmm"])]
    for m in methods:
        if m not in METHODS:
            raise SweepError(f"{path}: unknown method '{m}' (choose from {', '.join(METHODS)})")
    targets = [str(t) for t in as_list("targets", ["dtmm/cortex-m4"])]
    for t in targets:
        tag = t if t.startswith("dtmm/") else f"dtmm/{t}"
        if tag not in TARGET_TAGS:
            raise SweepError(f"{path}: unknown target '{t}' (choose from {', '.join(TARGET_TAGS)})")
    budgets = as_list("budgets")
    for b in budgets:
        if not isinstance(b, dict) or not b or set(b) - set(BUDGET_KEYS):
            raise SweepError(f"{path}: each budget is a mapping of {', '.join(BUDGET_KEYS)}; got {b!r}")
        for k, v in b.items():
            if not isinstance(v, (int, float)) or v <= 0:
                raise SweepError(f"{path}: budget {k} must be a positive number, got {v!r}")
    options = doc.get("options") or {}
    if not isinstance(options, dict) or set(options) - PRUNE_OPTIONS:
        raise SweepError(f"{path}: options may be {', '.join(sorted(PRUNE_OPTIONS))}")
    epochs, images = doc.get("epochs", 1), doc.get("board_images", 20)
    for name, v in (("epochs", epochs), ("board_images", images)):
        if not isinstance(v, int) or v < 0:
            raise SweepError(f"{path}: '{name}' must be a non-negative integer")
    output = Path(doc.get("output") or path.with_suffix(".jsonl").name)
    output = output if output.is_absolute() else path.parent / output
    jobs = []
    for m in models:
        mp = ((path.parent / m) if not Path(m).is_absolute() else Path(m)).resolve()
        digest = hashlib.sha256(mp.read_bytes()).hexdigest()
        for method in methods:
            for b in budgets:
                for t in targets:
                    jobs.append({"model": str(mp), "model_sha256": digest, "data": str(doc["data"]),
                                 "method": method, "budget": dict(sorted(b.items())), "target": t,
                                 "epochs": epochs, "board_images": images, "options": dict(sorted(options.items())),
                                 "out_dir": str(output.with_suffix(".d").resolve())})
    return jobs, output


def prune_job(model, model_sha256, data, method, budget, target, epochs, board_images, options, out_dir) -> dict:
    """One sweep job (runs in a Ray worker): prune, compile, run on the board; the figures."""
    from .api import prune
    from .search import Budget

    b = Budget.from_kb(budget.get("flash_kb"), budget.get("sram_kb"), budget.get("instructions"))
    b.flash_fraction = budget.get("flash_fraction")
    b.instructions_fraction = budget.get("instructions_fraction")
    res = prune(model, data, b, target, method=method, epochs=epochs, run_on_board=board_images > 0,
                board_limit=board_images or None, eval_dense_int8=False, **options)
    key = job_key(JOB_FN, {"model": model, "model_sha256": model_sha256, "data": data, "method": method,
                           "budget": budget, "target": target, "epochs": epochs, "board_images": board_images,
                           "options": options, "out_dir": out_dir})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tfl = out / f"{key}.tflite"
    tfl.write_bytes(res.tflite)
    r = res.report
    return {"tflite": str(tfl), "accuracy": r["accuracy"], "compiled": r.get("compiled"),
            "predicted": r["predicted"], "budget_checked": r.get("budget_checked", r["budget"]),
            "plan": r["plan"], "seconds": r.get("seconds")}


def run_sweep(path, ray: str | None = None, progress=None) -> dict:
    from ..sweep.runner import run_jobs

    jobs, output = load_sweep(path)
    summary = run_jobs(JOB_FN, jobs, output, ray=ray, use_ray=True, progress=progress)
    summary["output"] = str(output)
    summary["jobs"] = len(jobs)
    return summary
