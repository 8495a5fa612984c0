"""``dtmm prune MODEL.keras --data fashion-mnist --target dtmm/cortex-m4 --flash-kb F --sram-kb S
-o OUT.tflite [--compile OUT.tar]``: choose per-layer filter and filterlet pruning under the
budgets (the compiler's cost model), fine-tune with masks enforced, export full int8, check the
sparsity and the budgets on the compiled artifact. The model file is only read; nothing is
written unless every step succeeded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import DTMMError, OutputExistsError
from ..target import TARGET_TAGS


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("prune", help="prune a trained Keras model for a board's budgets (needs [train])")
    p.add_argument("model", nargs="?", help="trained Keras model (.keras); read only")
    p.add_argument("--data", default=None, help="fashion-mnist, digits, or FILE.npz (x_train, y_train, x_test, "
                                                 "y_test[, x_val, y_val])")
    p.add_argument("--target", default="dtmm/cortex-m4", help=f"one of {', '.join(TARGET_TAGS)}")
    p.add_argument("--flash-kb", type=float, default=None, help="flash budget for the model's stored weights, "
                                                                "index and requantization constants (KiB)")
    p.add_argument("--sram-kb", type=float, default=None, help="SRAM budget for the activation arena (KiB)")
    p.add_argument("--instructions", type=int, default=None,
                   help="latency budget (instructions per inference): minimise flash under it instead")
    p.add_argument("-o", "--output", default=None, help="the pruned full-int8 .tflite to write")
    p.add_argument("--compile", dest="compile_output", default=None,
                   help="also write the compiled artifact (.tar), run the test set on the emulated board and "
                        "report on-board accuracy")
    p.add_argument("--board-images", type=int, default=None, help="with --compile: test images run on the board "
                                                                   "(default: all)")
    p.add_argument("--importance", choices=["taylor", "l1", "l2"], default="taylor")
    p.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (default 3)")
    p.add_argument("--schedule", choices=["oneshot", "gradual"], default="oneshot")
    p.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate (Adam, cosine decay)")
    p.add_argument("--distill", type=float, default=0.0,
                   help="weight (0..1) of the unpruned model's softened outputs in the fine-tuning loss "
                        "(knowledge distillation; default 0: labels only)")
    p.add_argument("--guard", type=float, default=0.9,
                   help="accuracy guard: the importance quantile below which units may be pruned (default 0.9)")
    p.add_argument("--max-filter-ratio", type=float, default=0.9,
                   help="the largest share (0..1) of any layer's filters the search may remove (default 0.9)")
    p.add_argument("--speed-weight", type=float, default=0.1,
                   help="weight of predicted instructions against the accuracy term (default 0.1: prune about "
                        "as far as the budgets need; 1: the paper's objective, as fast as the guard allows)")
    p.add_argument("--sensitivity-images", type=int, default=1000,
                   help="the search's accuracy term: each layer pruned alone at 25/50/75/90%%, its validation loss "
                        "increase measured on this many images (default 1000; 0: the share of importance "
                        "removed, not measured)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", choices=["dtmm", "filter", "unstructured", "pattern"], default="dtmm",
                   help="dtmm (filters + filterlets) or a baseline: filter, unstructured, pattern (PatDNN)")
    p.add_argument("--filter-criterion", choices=["chip", "l1"], default="chip",
                   help="--method filter: rank filters by CHIP channel independence or L1 norm")
    p.add_argument("--patterns", type=int, default=8, help="--method pattern: size of the pattern set")
    p.add_argument("--sweep", default=None, metavar="SWEEP.yaml",
                   help="run every (model, method, budget, target) of a sweep file as a Ray job")
    p.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                   help="with --sweep: the Ray cluster (default: a local Ray with this machine's cores)")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--force", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args) -> int:
    if args.sweep:
        return run_sweep_cmd(args)
    if args.ray:
        raise DTMMError("--ray needs --sweep")
    if not args.model or not args.data or not args.output:
        raise DTMMError("give MODEL, --data and -o OUTPUT (or --sweep SWEEP.yaml)")
    from ..pruning.api import prune, write_outputs
    from ..pruning.search import Budget
    from ..progress import progress_bar

    for out in (args.output, args.compile_output):
        if out and Path(out).exists() and not args.force:
            raise OutputExistsError(f"{out}: exists; pass --force to replace it")
    if Path(args.output).resolve() == Path(args.model).resolve():
        raise OutputExistsError(f"{args.output}: is the input model; choose another output")
    budget = Budget.from_kb(args.flash_kb, args.sram_kb, args.instructions)
    bars = {}

    def progress(event, info):
        if args.quiet:
            return
        if event == "graph":
            for u in info["unknown"]:
                print(f"not understood, left as is: {u}", file=sys.stderr)
        elif event == "search":
            if info["step"] == 1 or "search" not in bars:  # a calibration round searches again
                bars["search"] = progress_bar(info["total"], "search")
            bar = bars["search"]
            bar.update(1)
            c = info["cost"]
            bar.set_postfix_str(f"{c.instructions / 1e6:.2f} M instr, {c.flash_bytes / 1024:.1f} KB, "
                                f"arena {c.sram_bytes / 1024:.1f} KB")
            if info["step"] == info["total"]:
                bar.close()
        elif event == "epoch":
            bar = bars.get("epoch") or bars.setdefault("epoch", progress_bar(info["total"], "fine-tune"))
            bar.update(1)
            bar.set_postfix_str(f"loss {info['loss']:.4f}, val acc {info['val_accuracy']:.4f}")
            if info["epoch"] == info["total"]:
                bar.close()
        elif event == "calibrate":
            verdict = "; ".join(info["missed"]) + ": searching again" if info["missed"] else "meets the budgets"
            print(f"compiled plan (round {info['round']}): {verdict}", file=sys.stderr, flush=True)
        else:
            print(f"{event} ...", file=sys.stderr, flush=True)

    result = prune(args.model, args.data, budget, args.target, importance=args.importance, epochs=args.epochs,
                   schedule=args.schedule, lr=args.lr, distill=args.distill, guard=args.guard, seed=args.seed,
                   max_filter_ratio=args.max_filter_ratio,
                   objective_weight=args.speed_weight, compile_output=args.compile_output, run_on_board=bool(args.compile_output),
                   board_limit=args.board_images, progress=progress, method=args.method,
                   filter_criterion=args.filter_criterion, n_patterns=args.patterns,
                   sensitivity_images=args.sensitivity_images)
    write_outputs(result, args.output, force=args.force)
    report = result.report
    report["output"] = str(args.output)
    if args.json:
        print(json.dumps(report, indent=1, default=float))
    else:
        print_report(report)
    return 0


def run_sweep_cmd(args) -> int:
    from ..pruning.sweep import run_sweep

    def progress(rec):
        if args.quiet:
            return
        i = rec["inputs"]
        what = f"{Path(i['model']).name} {i['method']} {i['budget']} {i['target']}"
        if rec["status"] == "ok":
            c = rec["result"].get("compiled") or {}
            print(f"done   {rec['key']} {what}: int8 acc {rec['result']['accuracy']['int8_pruned_tflm']:.4f}, "
                  f"flash {c.get('constants_bytes')} B, {c.get('instructions')} instr", file=sys.stderr, flush=True)
        else:
            print(f"FAILED {rec['key']} {what}: {rec['error']}", file=sys.stderr, flush=True)

    summary = run_sweep(args.sweep, args.ray, progress)
    print(f"sweep: {summary['jobs']} jobs, {summary['skipped']} already done, {summary['ok']} ran ok, "
          f"{len(summary['failed'])} failed; results in {summary['output']}")
    return 1 if summary["failed"] else 0


def print_report(report: dict) -> None:
    cols = ["layer", "kind", "filters", "format", "filterlet_sparsity", "bytes", "dense_bytes",
            "predicted_instructions"]
    heads = ["layer", "kind", "filters kept", "format", "filterlet sp.", "bytes", "dense bytes", "pred. instr"]
    measured = any("measured_instructions" in r for r in report["layers"])
    if measured:
        heads.append("measured instr")
    rows = []
    for r in report["layers"]:
        rows.append([r["layer"], r["kind"], f"{r['filters']}/{r['filters_total']}" if r.get("filters_total") else
                     str(r.get("filters") if r.get("filters") is not None else "-"), r["format"] or "-",
                     f"{r.get('filterlet_sparsity', 0.0):.2f}", str(r["bytes"]),
                     str(r["dense_bytes"]), str(r["predicted_instructions"])])
        if measured:
            rows[-1].append(str(r.get("measured_instructions") if r.get("measured_instructions") is not None else "-"))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(heads)]
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    p, d = report["predicted"]["pruned"], report["predicted"]["dense"]
    print(f"predicted: {p['instructions']} instructions ({p['instructions'] / d['instructions']:.2f}x dense), "
          f"flash {p['flash_bytes']} B ({p['flash_bytes'] / d['flash_bytes']:.2f}x), arena {p['sram_bytes']} B")
    c = report.get("compiled")
    if c:
        line = f"compiled: flash (weights+index) {c['constants_bytes']} B, arena {c['arena_bytes']} B"
        if "instructions" in c:
            line += f", measured {c['instructions']} instructions"
        if "profile_total_instructions" in c:
            line += f" (profiled run: {c['profile_total_instructions']})"
        print(line)
    a = report["accuracy"]
    acc = [f"float dense {a['float_dense']:.4f}", f"float pruned {a['float_pruned']:.4f}"]
    if a.get("int8_dense_tflm") is not None:
        acc.append(f"int8 dense (TFLM) {a['int8_dense_tflm']:.4f}")
    acc.append(f"int8 pruned (TFLM) {a['int8_pruned_tflm']:.4f}")
    if c and "board_accuracy" in c:
        acc.append(f"on board {c['board_accuracy']:.4f} ({c['board_images']} images, "
                   f"bit-exact vs TFLM: {'yes' if c['bit_exact_vs_tflm'] else 'NO'})")
    print("accuracy: " + ", ".join(acc))
    for u in report["not_understood"]:
        print(f"not understood (left as is): {u}")
    print(f"wrote {report['output']}" + (f" and {c['artifact']}" if c and c.get("artifact") else ""))
