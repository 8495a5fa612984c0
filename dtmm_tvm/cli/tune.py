"""``dtmm tune MODEL --target dtmm/cortex-m4 --board mps2-an386 --trials N -o records.json``,
like microTVM's ``tvmc tune``: measure each conv / depthwise / fully connected layer's schedule
candidates on the emulated board and write the best per layer (apply them with
``dtmm compile --tuning-records records.json``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import OutputExistsError
from ..target import TARGET_TAGS
from . import compile as compile_cmd


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("tune", help="search per-layer kernel schedules on an emulated board")
    parser.add_argument("model", help="the .tflite or .onnx model")
    parser.add_argument("--target", default="dtmm/cortex-m4", help=f"one of {', '.join(TARGET_TAGS)}")
    parser.add_argument("--board", default=None, help="board to measure on (default: the target's board)")
    parser.add_argument("--trials", type=int, default=8,
                        help="candidates measured per layer, the default schedule included (default 8)")
    parser.add_argument("-o", "--output", required=True, help="the tuning records to write (.json)")
    parser.add_argument("--dense", action="store_true", help="tune the dense baseline (as 'dtmm compile --dense')")
    parser.add_argument("--threshold", type=compile_cmd.sparsity_threshold, default=None,
                        help="filterlet sparsity threshold, as for 'dtmm compile' (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the candidate sample and the random inputs")
    parser.add_argument("--workers", type=int, default=2, help="parallel builds and emulator runs (default 2)")
    parser.add_argument("--ray", default=None, metavar="auto|ADDRESS|local",
                        help="run the QEMU measurements as Ray tasks (the sweep runner; pip install "
                             "'dtmm-tvm[cluster]'); default: --workers threads")
    parser.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from ..tuning import tune_model

    output = Path(args.output)
    if output.exists() and not args.force:
        raise OutputExistsError(f"{output}: exists; pass --force to replace it")
    from ..progress import progress_bar
    from ..tuning.tuner import describe_candidate

    bars = []

    def progress(done, total, cand, default_instructions):
        if not bars:
            bars.append(progress_bar(total, "tune"))
        bars[0].set_postfix_str(describe_candidate(cand, default_instructions))
        bars[0].update(done - bars[0].n)

    try:
        records = tune_model(args.model, target=args.target, board=args.board, trials=args.trials,
                             mode="dense" if args.dense else "dtmm", threshold=args.threshold, seed=args.seed,
                             workers=args.workers, progress=False if args.quiet else progress, ray=args.ray)
    finally:
        for bar in bars:
            bar.close()
    records.save(output, force=True)
    print(f"wrote {output}: {records.target} on {records.board}, {len(records.layers)} layers")
    errors = 0
    total_default = total_best = 0
    for key, entry in records.layers.items():
        default = entry["default"].get("instructions")
        best = entry["best"]
        bad = [c for c in entry["candidates"] if c.get("error")]
        errors += len(bad)
        name = ", ".join(entry["layers"])
        if best is None or default is None:
            print(f"  {name} ({entry['op']}): no valid measurement ({len(bad)} errors)")
            continue
        total_default += default
        total_best += best["instructions"]
        from ..schedules import schedule_from_json, schedule_str

        print(f"  {name} ({entry['op']}): {default} -> {best['instructions']} instructions "
              f"({best['instructions'] / default:.2f}x), {schedule_str(schedule_from_json(best['schedule']))}, "
              f"{len(entry['candidates'])}/{entry['space_size']} tried"
              + (f", {len(bad)} rejected" if bad else ""))
    if total_default:
        print(f"  tuned layers: {total_default} -> {total_best} instructions ({total_best / total_default:.2f}x)")
    if errors:
        print(f"  {errors} candidate(s) rejected or failed; see 'error' in {output}")
    return 0
