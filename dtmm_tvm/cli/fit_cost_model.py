"""``dtmm fit-cost-model --target dtmm/cortex-m4``: measure sampled layer shapes on the target's
emulated board, fit the latency model and write the coefficients the pruner and the compiler
use (``dtmm_tvm/costmodel/coefficients/<target>.json`` unless ``-o`` is given). Re-run it after
changing a kernel: ``--remeasure GROUP,...`` measures the changed kernels' groups again and keeps
the stored counts of the others; ``--reuse-measured`` alone refits on the stored counts."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import DTMMError, OutputExistsError
from ..target import TARGET_TAGS


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("fit-cost-model", help="fit the per-layer latency model on an emulated board")
    parser.add_argument("--target", default="dtmm/cortex-m4", help=f"one of {', '.join(TARGET_TAGS)}")
    parser.add_argument("-o", "--output", default=None,
                        help="coefficients file to write (default: the one shipped in the package)")
    parser.add_argument("--conv-points", type=int, default=20, help="conv shapes measured (default 20)")
    parser.add_argument("--small-points", type=int, default=8, help="depthwise and FC shapes each (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shape sample")
    parser.add_argument("--workers", type=int, default=2, help="parallel builds and emulator runs (default 2)")
    parser.add_argument("--reuse-measured", action="store_true",
                        help="take the counts of points the current coefficients file already measured (same "
                             "shape, format, sparsity and seed) instead of running them again; only valid while "
                             "the kernels are unchanged")
    parser.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--remeasure", default=None, metavar="GROUPS",
                        help="comma-separated groups to measure again after their kernel changed (e.g. "
                             "depthwise,conv/dense,fc; the groups are those of the coefficients file: conv/<format>, "
                             "depthwise, fc, max_pool2d, avg_pool2d, mean, softmax, add); every other group keeps "
                             "the shipped file's counts (implies --reuse-measured)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from ..costmodel import fit
    from ..progress import progress_bar
    from ..target import resolve_target, target_tag

    tag = target_tag(resolve_target(args.target))
    output = Path(args.output) if args.output else fit.coefficients_path(tag)
    if args.output and output.exists() and not args.force:
        raise OutputExistsError(f"{output}: exists; pass --force to replace it")
    plan = fit.sample_plan(args.seed, args.conv_points, args.small_points)
    reuse = None
    remeasure = [g.strip() for g in args.remeasure.split(",") if g.strip()] if args.remeasure else []
    if remeasure:
        known = sorted({fit.group_of(p) for p in plan})
        bad = [g for g in remeasure if g not in known]
        if bad:
            raise DTMMError(f"--remeasure: unknown group(s) {', '.join(bad)}; known: {', '.join(known)}")
    if args.reuse_measured or remeasure:
        import json

        source = fit.coefficients_path(tag)
        if not source.exists():
            raise DTMMError(f"{source}: no stored points to reuse; run without --reuse-measured / --remeasure")
        reuse = fit.reusable_points(json.loads(source.read_text()).get("points") or [], remeasure)
    bar = progress_bar(total=len(plan), desc=f"measuring {tag}", disable=args.quiet)

    def step(point):
        bar.update(1)
        bar.set_postfix_str(f"{point['kind']}/{point['fmt']} {point['instructions']} instr")

    try:
        doc = fit.fit_target(tag, seed=args.seed, conv_points=args.conv_points, small_points=args.small_points,
                             workers=args.workers, progress=step, reuse=reuse)
    finally:
        bar.close()
    fit.write(doc, output)
    print(f"wrote {output}: {len(doc['points'])} measured layers in {doc['seconds']:.0f} s")
    print(f"{'group':24} {'measured':>10} {'predicted':>10} {'error':>7}   (held-out shapes)")
    for row in doc["heldout"]:
        print(f"{row['group']:24} {row['measured']:>10} {row['predicted']:>10} {row['error'] * 100:>6.1f}%")
    for group, e in doc["heldout_by_group"].items():
        print(f"  {group:22} {e['points']} held-out, max {e['max_abs_error'] * 100:.1f}%, "
              f"mean {e['mean_abs_error'] * 100:.1f}%")
    worst = doc["heldout_max_abs_error"]
    if worst is not None:
        print(f"held-out per-layer error: max {worst * 100:.1f}%, mean {doc['heldout_mean_abs_error'] * 100:.1f}%",
              file=sys.stdout)
    return 0
