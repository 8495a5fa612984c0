"""DTMM against filter (CHIP), unstructured and pattern (PatDNN) pruning, on the same compiler and
boards (issue 9): ``python -m bench.pruning`` (from the repository root).

Every (model, method, budget) is a prune job and every (pruned model, board) a measure job, each a
Ray task (:func:`dtmm_tvm.sweep.runner.run_jobs`: a local Ray with this machine's cores, or
``--ray auto|ADDRESS``); jobs are keyed by their inputs, so a re-run skips finished ones and
resumes an interrupted run. Results stream into ``OUT/results.jsonl``; then ``OUT/results.md``
(tables, targets), ``OUT/summary.json`` and the plots are written from it. ``--report-only``
rewrites the report from the JSON lines.

Protocol (defaults): base models trained ``models.BASE_EPOCHS`` epochs on the first
``models.BASE_IMAGES`` training images (cached in ``--cache``; their dense int8 accuracy is the
``dense`` row); every method prunes under a flash budget of 80 / 60 / 40 / 33 / 25 / 15 %
of the dense int8 model's predicted flash, importance on 2,000 validation images, then the same
fine-tuning for every method: ``--epochs`` epochs on the first ``--train-images`` training
images, masks raised along ``--schedule`` and enforced after every step, Adam at ``--lr`` with
cosine decay, distillation from the unpruned model (``--distill``); full-int8 export; accuracy on
the 10,000 test images. The defaults are the recipe of the pruner's VGG target
(``bench.prune_targets``), on fewer images and epochs so that the grid fits a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# A local Ray starts its workers at niceness +15 over the driver's (19 under `nice -n 10`, nearly
# no CPU on a shared machine); the jobs run at the niceness the experiment was started with.
os.environ.setdefault("RAY_worker_niceness", "0")

METHODS = ("dtmm", "filter", "unstructured", "pattern")
FRACTIONS = (0.8, 0.6, 0.4, 0.33, 0.25, 0.15)
TARGETS = ("dtmm/cortex-m4", "dtmm/cortex-m55")
OUT = ROOT / "bench" / "results" / "pruning"


def code_version() -> str:
    """The git tree of ``dtmm_tvm/`` (a compiler change re-measures), or 'unknown'."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD:dtmm_tvm"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip() + ("+dirty" if subprocess.run(
                                  ["git", "diff", "--quiet", "HEAD", "--", "dtmm_tvm"], cwd=ROOT).returncode else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pruning", description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="vgg,resnet,dscnn")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--fractions", default=",".join(str(f) for f in FRACTIONS),
                    help="flash budgets as fractions of the dense model")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs per job")
    ap.add_argument("--train-images", type=int, default=16000, help="training images used for fine-tuning")
    ap.add_argument("--lr", type=float, default=5e-3, help="fine-tuning's initial learning rate (Adam)")
    ap.add_argument("--distill", type=float, default=0.7,
                    help="weight of the unpruned model's softened outputs in the fine-tuning loss (0: labels only)")
    ap.add_argument("--schedule", choices=("oneshot", "gradual"), default="gradual",
                    help="masks from the start, or raised over the first two thirds of the epochs")
    ap.add_argument("--max-filter-ratio", type=float, default=None,
                    help="DTMM: the largest share of a layer's filters its search may remove (default: the "
                         "pruner's, 0.9)")
    ap.add_argument("--instructions-fraction", type=float, default=None,
                    help="an M4 instructions budget as well, as a fraction of the dense model's predicted "
                         "instructions (default: flash budget only)")
    ap.add_argument("--base-epochs", type=int, default=None)
    ap.add_argument("--base-images", type=int, default=None,
                    help="training images of the base models (default: the first 30,000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=None,
                    help="concurrent jobs of the local Ray (default: this machine's cores)")
    ap.add_argument("--ray", default=None, metavar="auto|ADDRESS", help="Ray cluster (default: a local Ray)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--cache", type=Path, default=None, help="base models (default OUT/.cache)")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args(argv)

    from dtmm_tvm.errors import DTMMError
    from dtmm_tvm.pruning.methods import METHODS as KNOWN
    from dtmm_tvm.sweep.runner import SweepError, executor, read_results, run_jobs

    from . import models as M
    from .report import write_report

    out = args.out
    results = out / "results.jsonl"
    if args.report_only:
        write_report(read_results(results), out)
        return 0
    models = [m for m in args.models.split(",") if m]
    methods = [m for m in args.methods.split(",") if m]
    try:
        for m in models:
            if m not in M.MODELS:
                raise SweepError(f"unknown model '{m}' (choose from {', '.join(M.MODELS)})")
        for m in methods:
            if m not in KNOWN:
                raise SweepError(f"unknown method '{m}' (choose from {', '.join(KNOWN)})")
        fractions = [float(f) for f in args.fractions.split(",") if f]
        if any(not 0 < f < 1 for f in fractions):
            raise SweepError("--fractions must lie in (0, 1)")
        if args.instructions_fraction is not None and not 0 < args.instructions_fraction < 1:
            raise SweepError(f"--instructions-fraction {args.instructions_fraction}: must lie in (0, 1)")
        if args.max_filter_ratio is not None and not 0 <= args.max_filter_ratio < 1:
            raise SweepError(f"--max-filter-ratio {args.max_filter_ratio}: must be at least 0 and below 1")
        if not 0 < args.train_images <= M.TRAIN_IMAGES:
            raise SweepError(f"--train-images {args.train_images}: must lie in 1..{M.TRAIN_IMAGES:,} (the training split)")
        if args.base_images is not None and not 0 < args.base_images <= M.TRAIN_IMAGES:
            raise SweepError(f"--base-images {args.base_images}: must lie in 1..{M.TRAIN_IMAGES:,} (the training split)")
    except ValueError:
        print("python -m bench.pruning: error: --fractions: comma-separated numbers", file=sys.stderr)
        return 2
    except SweepError as err:
        print(f"python -m bench.pruning: error: {err}", file=sys.stderr)
        return 2
    cache = args.cache or (out / ".cache")
    base_epochs = args.base_epochs or M.BASE_EPOCHS
    base_images = args.base_images or M.BASE_IMAGES
    started = time.time()
    try:
        if args.ray is None:
            from dtmm_tvm.sweep.runner import RayExecutor

            ex = RayExecutor(None, num_cpus=args.jobs or os.cpu_count())
        else:
            ex = executor(args.ray, use_ray=True)
    except DTMMError as err:
        print(f"python -m bench.pruning: error: {err}", file=sys.stderr)
        return 2
    from dtmm_tvm.costmodel import CONV_FORMATS

    def show(rec):
        i = rec["inputs"]
        what = " ".join(str(i.get(k)) for k in ("model", "method", "fraction", "target") if k in i)
        tail = rec.get("error", "") if rec["status"] != "ok" else f"{rec.get('seconds')} s"
        print(f"[{time.time() - started:7.0f} s] {rec['status']:6s} {what} {tail}", flush=True)

    try:
        # Base models first (one job per model: trained once, cached for the prune jobs).
        base_jobs = [{"model": m, "method": "dense", "fraction": None, "seed": args.seed, "epochs": 0,
                      "train_images": args.train_images, "cache": str(cache.resolve()), "base_epochs": base_epochs,
                      "base_images": base_images, "base_recipe": M.RECIPE,
                      "cost_formats": list(CONV_FORMATS), "out_dir": str((out / "tflite").resolve())}
                     for m in models]
        version = code_version()
        summaries = []
        # Model by model and budget by budget (prune with every method, then measure on every
        # board): a run cut short still leaves whole budgets measured.
        for b in base_jobs:
            summaries.append(run_jobs("bench.pruning.jobs:prune_job", [b], results, executor_=ex, progress=show))
            tuning = {"epochs": args.epochs, "lr": args.lr, "distill": args.distill, "schedule": args.schedule}
            if args.max_filter_ratio is not None:  # (these two in the job's inputs only when set: earlier jobs keep their keys)
                tuning["max_filter_ratio"] = args.max_filter_ratio
            if args.instructions_fraction is not None:
                tuning["instructions_fraction"] = args.instructions_fraction
            for batch in [[b]] + [[dict(b, method=meth, fraction=f, **tuning) for meth in methods]
                                  for f in fractions]:
                if batch != [b]:
                    summaries.append(run_jobs("bench.pruning.jobs:prune_job", batch, results, executor_=ex,
                                              progress=show))
                pruned = [r for r in read_results(results) if r.get("status") == "ok"
                          and r["fn"].endswith("prune_job") and r["inputs"] in batch
                          and "tflite" in r["result"]]   # not an unmet budget
                mjobs = [{"tflite": r["result"]["tflite"], "tflite_sha256": r["result"]["tflite_sha256"], "target": t,
                          "code_version": version} for t in args.targets.split(",") for r in pruned]
                summaries.append(run_jobs("bench.pruning.jobs:measure_job", mjobs, results, executor_=ex,
                                          progress=show))
            write_report(read_results(results), out, code_version=version)
    finally:
        ex.close()
    failed = [f for s in summaries for f in s["failed"]]
    print(f"jobs: {sum(s['ran'] for s in summaries)} ran ({len(failed)} failed), "
          f"{sum(s['skipped'] for s in summaries)} already done; {time.time() - started:.0f} s", flush=True)
    write_report(read_results(results), out, code_version=version)
    print(f"wrote {out / 'results.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
