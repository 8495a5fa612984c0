"""``python -m bench``: the microbenchmarks and end-to-end benchmarks of issue 3.

Regenerates ``bench/results/results.{md,json,png}``. Every column is built by the same project
template with the same gcc flags and run on QEMU; instruction counts come from ``-icount``
(instructions, not cycles), flash and RAM from the ELF; outputs are checked against TFLM.

    python -m bench                      # everything, Cortex-M4, M7 and M55 (~10 min on 2 cores)
    python -m bench --quick              # a subset: paper 3x3 at 0 and 90 %, depthwise, FC, Fashion
    python -m bench --cores m4,m55       # only some cores
    python -m bench --micro my.tflite --no-e2e --out /tmp/b   # any one-op int8 model
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing as mp
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "bench" / "models"
RESULTS = ROOT / "bench" / "results"
FASHION = ROOT / "models" / "fashion_mnist" / "fashion_cnn_filterlet_int8.tflite"

MICRO = ["paper_3x3_s00", "paper_3x3_s50", "paper_3x3_s75", "paper_3x3_s90",
         "conv_1x1", "dw_3x3", "conv_5x5", "fc_256_64"]
MICRO_QUICK = ["paper_3x3_s00", "paper_3x3_s90", "dw_3x3", "fc_256_64"]
E2E = {"fashion_cnn_filterlet_int8": FASHION, "resnet8": MODELS / "resnet8.tflite"}
E2E_QUICK = ["fashion_cnn_filterlet_int8"]
DESCRIPTIONS = {
    "fashion_cnn_filterlet_int8": "the bundled filterlet-pruned Fashion-MNIST CNN "
                                  "(models/fashion_mnist, the README demo)",
}


def _parse(argv):
    from .columns import COLUMNS, CORES

    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a subset of the models")
    p.add_argument("--cores", default="m4,m7,m55", help=f"comma list of {','.join(CORES)}")
    p.add_argument("--columns", default=",".join(COLUMNS),
                   help="microbenchmark columns (default: all of %(default)s)")
    p.add_argument("--micro", nargs="+", metavar="TFLITE",
                   help="microbenchmark these one-op models instead of bench/models/*")
    p.add_argument("--e2e", nargs="+", metavar="TFLITE",
                   help="end-to-end benchmark these models instead of Fashion CNN + ResNet-8")
    p.add_argument("--no-micro", action="store_true")
    p.add_argument("--no-e2e", action="store_true")
    p.add_argument("--no-ref", action="store_true",
                   help="skip the reference-style models, their per-layer breakdown and the phases")
    p.add_argument("--no-layers", action="store_true", help="skip the per-layer breakdown")
    p.add_argument("--micro-names", default=None,
                   help="comma list: only these bench/models microbenchmarks (default all)")
    p.add_argument("--ref-families", default=None,
                   help="comma list: only these reference-style model families (default all)")
    p.add_argument("--inputs", type=int, default=2, help="inputs per model (default 2; the "
                   "reported count is the maximum over them)")
    p.add_argument("--jobs", type=int, default=2, help="parallel build/run workers (default 2)")
    p.add_argument("--out", default=str(RESULTS), help="results directory (default bench/results)")
    p.add_argument("--no-plot", action="store_true", help="skip results.png")
    p.add_argument("--keep-work", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    args.cores = [c.strip().lower() for c in args.cores.split(",") if c.strip()]
    bad = [c for c in args.cores if c not in CORES]
    if bad:
        p.error(f"unknown core(s) {bad}; choose from {list(CORES)}")
    args.columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    bad = [c for c in args.columns if c not in COLUMNS]
    if bad:
        p.error(f"unknown column(s) {bad}; choose from {list(COLUMNS)}")
    return args


def _seed(name: str) -> int:
    return zlib.crc32(name.encode())


def _model_inputs(path: Path, count: int, real_fashion: bool = False) -> tuple[np.ndarray, str]:
    from dtmm_tvm.frontend.tflite_reader import read_tflite

    graph = read_tflite(path)
    t = graph.tensor(graph.inputs[0])
    if real_fashion and t.dtype == "int8" and t.scale is not None:
        from dtmm_tvm.demo import load_test_images

        x, _, source = load_test_images(count, float(t.scale[0]), int(t.zero_point[0]))
        return x.reshape((len(x),) + tuple(t.shape)), source
    rng = np.random.default_rng(_seed(path.name))
    info = np.iinfo(np.dtype(t.dtype))
    x = rng.integers(info.min, info.max + 1, size=(count, *t.shape), dtype=np.dtype(t.dtype))
    return x, f"{count} uniform random {t.dtype} inputs (seeded)"


def _layer_info(path: Path) -> dict:
    """MACs, kind and filterlet sparsity of a one-op model, read from the flatbuffer."""
    from .naive import _layer, _params

    _, op, layer = _layer(path)
    _, info = _params(layer)
    out = {"op": op.opcode, "macs": int(info["macs"]), "input_shape": info["input_shape"],
           "output_shape": info["output_shape"],
           "input_zero_point": int(layer.params.input_zero_point)}
    if op.opcode == "CONV_2D":
        w = layer.weight  # OHWI
        kept = np.any(w != 0, axis=3)
        out["filterlet_sparsity"] = round(float(1 - kept.mean()), 4)
        out["kernel"] = info["kernel"]
        _, oh, ow, _ = layer.params.output_shape
        out["kept_macs_weights"] = int(kept.sum()) * w.shape[3] * oh * ow
    return out


_TFLM_ARENA = """
import sys
from tflite_micro.python.tflite_micro import runtime
runtime.Interpreter.from_bytes(open(sys.argv[1], "rb").read(), arena_size=4 << 20).print_allocations()
"""


def _tflm_arena(path: Path) -> dict | None:
    """TFLM's own arena for the model, from its RecordingMicroAllocator on the host (64-bit
    host: pointer-sized bookkeeping is larger than on a Cortex-M, the activation part is not)."""
    import re

    try:
        res = subprocess.run([sys.executable, "-c", _TFLM_ARENA, str(path)], capture_output=True,
                             text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = {}
    for key in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {key} (\d+) bytes", res.stdout + res.stderr)
        if m:
            out[key] = int(m.group(1))
    return out or None


def _git_commit() -> str:
    """HEAD, with "+ uncommitted changes" when tracked code outside bench/results differs from it."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)bench/results"], capture_output=True, text=True, check=True).stdout.strip()
        return f"{head} + uncommitted changes" if dirty else head
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _manifest() -> dict:
    try:
        data = json.loads((MODELS / "manifest.json").read_text())
        return {m["name"]: m for m in data.get("models", [])}
    except (OSError, ValueError, KeyError):
        return {}


def main(argv=None) -> int:
    args = _parse(argv)
    from dtmm_tvm.reference import run_tflm

    from .columns import CORES
    from .harness import Job, run_job
    from .reference import REFERENCE, evaluate_targets
    from .report import write_markdown, write_plot

    start = time.monotonic()
    manifest = _manifest()
    if args.micro:
        micro = {Path(m).stem: Path(m) for m in args.micro}
    else:
        names = MICRO_QUICK if args.quick else MICRO
        if args.micro_names:
            names = [n.strip() for n in args.micro_names.split(",") if n.strip()]
        micro = {n: MODELS / f"{n}.tflite" for n in names}
    if args.e2e:
        e2e = {Path(m).stem: Path(m) for m in args.e2e}
    else:
        e2e = {n: p for n, p in E2E.items() if not args.quick or n in E2E_QUICK}
    if args.no_micro:
        micro = {}
    if args.no_e2e:
        e2e = {}
    missing = [str(p) for p in list(micro.values()) + list(e2e.values()) if not p.exists()]
    if missing:
        print(f"bench: missing model files {missing}; generate bench/models with "
              "bench/models/make_bench_models.py", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="dtmm-bench-"))
    results: dict = {
        "schema": "dtmm-bench/1",
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git_commit": _git_commit(),
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cores": args.cores,
        "columns": args.columns,
        "boards": {c: {"board": CORES[c][0], "target": CORES[c][1]} for c in args.cores},
        "micro": {}, "e2e": {},
    }
    try:
        from dtmm_tvm.micro import get_board

        for c in args.cores:
            results["boards"][c]["cflags"] = " ".join(get_board(CORES[c][0]).cflags) + " -O2"
    except Exception:  # informational only
        pass

    jobs: list[Job] = []
    for name, path in micro.items():
        x, source = _model_inputs(path, args.inputs)
        info = _layer_info(path)
        results["micro"][name] = {"model": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT)
                                  else str(path), "description": manifest.get(name, {}).get(
                                      "description", name), "inputs": source, **info,
                                  "runs": {c: {} for c in args.cores}, "_x": x}
        for core in args.cores:
            for col in args.columns:
                jobs.append(Job("micro", name, str(path), col, core, str(work), x))
    for name, path in e2e.items():
        x, source = _model_inputs(path, max(args.inputs, 4), real_fashion=(path == FASHION))
        results["e2e"][name] = {"model": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT)
                                else str(path), "description": manifest.get(name, {}).get(
                                    "description", DESCRIPTIONS.get(name, name)), "inputs": source,
                                "tflm_host_arena": _tflm_arena(path),
                                "runs": {c: {} for c in args.cores}, "_x": x}
        for core in args.cores:
            for mode in ("dense", "dtmm"):
                jobs.append(Job("e2e", name, str(path), mode, core, str(work), x))
    # Reference-style models (issue 11): whole models, per-phase builds, per-layer breakdown.
    from .refmodels import FAMILIES, FAMILIES_QUICK, LAYER_CORES, LAYER_FAMILIES, layer_breakdown, phase_jobs, \
        phases_of, ref_jobs

    ref_of, phase_of, ref_x, layer_work = {}, {}, {}, []
    if not args.no_ref and not args.micro and not args.e2e:
        fams = FAMILIES_QUICK if args.quick else list(FAMILIES)
        if args.ref_families:
            fams = [f.strip() for f in args.ref_families.split(",") if f.strip() in FAMILIES]
        results["ref"] = {"models": {f: {str(sp): {} for sp in FAMILIES[f]} for f in fams}, "layers": {},
                          "phases": {}}

        def inputs_of(path):
            x = _model_inputs(path, args.inputs)[0]
            ref_x[path.stem] = (path, x)
            return x

        for fam, sp, job in ref_jobs(fams, args.cores, MODELS, str(work), inputs_of):
            jobs.append(job)
            ref_of[job.key] = (fam, sp)
        if not args.quick:
            for name, phase, job in phase_jobs(args.cores, MODELS, str(work), inputs_of):
                jobs.append(job)
                phase_of[job.key] = (name, phase)
        if not args.no_layers and not args.quick:
            layer_work = [(f, c) for f in LAYER_FAMILIES if f in fams for c in LAYER_CORES if c in args.cores]
    jobs.sort(key=lambda j: -j.cost)
    print(f"bench: {len(jobs)} builds/runs + {len(layer_work)} per-layer breakdowns on {args.jobs} workers "
          f"({len(micro)} micro models x {len(args.columns)} columns, {len(e2e)} end-to-end "
          f"models x 2 builds; cores {','.join(args.cores)})", file=sys.stderr, flush=True)

    # TFLM reference outputs (host), computed while the workers build.
    refs = {}
    ctx = mp.get_context("spawn")  # no fork after TVM has started threads
    done = 0
    with cf.ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=ctx) as pool:
        futures = {pool.submit(run_job, j): j for j in jobs}
        layer_futures = {pool.submit(layer_breakdown, str(MODELS / f"{FAMILIES[f][90]}.tflite"), c, str(work)):
                         (f, c) for f, c in layer_work}
        for stem, (path, x) in ref_x.items():
            refs[("ref", stem)] = run_tflm(path.read_bytes(), x)
        for kind in ("micro", "e2e"):
            for name, entry in results[kind].items():
                path = Path(entry["model"]) if Path(entry["model"]).is_absolute() else ROOT / entry["model"]
                refs[(kind, name)] = run_tflm(path.read_bytes(), entry["_x"])
        for fut in cf.as_completed(futures):
            job = futures[fut]
            rec = fut.result()
            done += 1
            if job.kind == "phase":
                name, phase = phase_of[job.key]
                rec.pop("outputs", None)  # a phase-less build computes garbage by design
                results["ref"].setdefault("_phase_runs", {}).setdefault(f"{name}|{job.core}", {})[phase] = rec
                print(f"[{done}/{len(jobs)}] {job.name} {job.core}: "
                      + (f"{rec['instructions']:,} instr" if rec["ok"] else "FAILED: " + rec["error"]),
                      file=sys.stderr, flush=True)
                continue
            if job.kind == "ref":
                fam, sp = ref_of[job.key]
                if rec["ok"]:
                    ref = refs[("ref", job.name)]
                    out = rec.pop("outputs")
                    rec["exact"] = bool(out.size == ref.size and np.array_equal(out.reshape(ref.shape), ref))
                results["ref"]["models"][fam][str(sp)][job.core] = rec
                print(f"[{done}/{len(jobs)}] {job.name} {job.core} {job.column}: "
                      + (f"{rec['instructions']:,} instr, {'bit-exact' if rec['exact'] else 'NOT bit-exact'}"
                         if rec["ok"] else "FAILED: " + rec["error"]), file=sys.stderr, flush=True)
                continue
            entry = results[job.kind][job.name]
            if rec["ok"]:
                ref = refs[(job.kind, job.name)]
                out = rec.pop("outputs")
                if out.size == ref.size:
                    diff = np.abs(out.reshape(ref.shape).astype(np.int64) - ref.astype(np.int64))
                    rec["exact"] = bool(diff.max() == 0)
                    rec["max_abs_diff"] = int(diff.max())
                    rec["values_differing"] = int((diff != 0).sum())
                else:
                    rec["exact"], rec["max_abs_diff"] = False, None
                macs = entry.get("macs") or rec["macs"]
                rec["instr_per_mac"] = rec["instructions"] / macs if macs else None
                msg = (f"{rec['instructions']:,} instr, "
                       f"{'bit-exact' if rec['exact'] else 'max diff ' + str(rec['max_abs_diff'])}"
                       f" (build {rec['build_s']} s, run {rec['run_s']} s)")
            else:
                msg = "FAILED: " + rec["error"]
            entry["runs"][job.core][job.column] = rec
            print(f"[{done}/{len(jobs)}] {job.name} {job.core} {job.column}: {msg}",
                  file=sys.stderr, flush=True)

        for fut in cf.as_completed(layer_futures):
            fam, core = layer_futures[fut]
            results["ref"]["layers"][f"{fam}|{core}"] = rec = fut.result()
            print(f"per-layer {fam} {core}: " + ("ok" if rec["ok"] else "FAILED: " + rec["error"]),
                  file=sys.stderr, flush=True)
    if "ref" in results:
        for key, runs in sorted(results["ref"].pop("_phase_runs", {}).items()):
            results["ref"]["phases"][key] = phases_of(runs)

    # kept MACs: what the DTMM build executes (per core identical); fall back to the weights.
    for name, entry in results["micro"].items():
        kept = None
        for core in args.cores:
            rec = entry["runs"][core].get("dtmm")
            if rec and rec.get("ok"):
                kept = rec["kept_macs"]
                break
        entry["kept_macs"] = kept if kept is not None else entry.get("kept_macs_weights", entry["macs"])
        for core in args.cores:
            for rec in entry["runs"][core].values():
                if rec.get("ok") and entry["kept_macs"]:
                    rec["instr_per_kept_mac"] = rec["instructions"] / entry["kept_macs"]
    for kind in ("micro", "e2e"):
        for entry in results[kind].values():
            entry.pop("_x", None)
    results["reference"] = [dict(zip(("what", "core", "value", "unit", "source"), r)) for r in REFERENCE]
    results["targets"] = evaluate_targets(results)
    results["wall_s"] = round(time.monotonic() - start, 1)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=_jsonable) + "\n")
    write_markdown(results, out / "results.md")
    plot = None if args.no_plot else write_plot(results, out / "results.png")
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"bench: work directory kept: {work}", file=sys.stderr)
    print((out / "results.md").read_text())
    print(f"bench: wrote {out / 'results.md'}, {out / 'results.json'}"
          + (f", {plot}" if plot else " (no plot)") + f" in {results['wall_s']} s", file=sys.stderr)
    failed = [(k, n, c, col) for k in ("micro", "e2e") for n, e in results[k].items()
              for c, runs in e["runs"].items() for col, r in runs.items() if not r.get("ok")]
    for fam, by_sp in results.get("ref", {}).get("models", {}).items():
        failed += [("ref", fam, c, sp) for sp, runs in by_sp.items() for c, r in runs.items()
                   if not r.get("ok") or not r.get("exact")]
    failed += [("layers", k) for k, r in results.get("ref", {}).get("layers", {}).items() if not r.get("ok")]
    if failed:
        print(f"bench: {len(failed)} build/run(s) failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


if __name__ == "__main__":
    sys.exit(main())
