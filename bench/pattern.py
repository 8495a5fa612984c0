"""Pattern pruning (PatDNN-style) vs filterlet pruning (DTMM) vs dense on 3x3 convs, same compiler.

    python -m bench.pattern [--cores m4,m55] [--jobs 2] [--out bench/results]

Per layer shape, one single-layer artifact per build (the compiler's own kernel builders and
default schedules, :mod:`dtmm_tvm.costmodel.measure`), run on QEMU (``-icount``: instructions,
max over 2 random inputs):

* ``dense``: the dense micro-kernel;
* ``filterlet``: filterlet-pruned weights in the paper's CSR format, at the SAME number of kept
  (non-zero) weights as the pattern layer: filterlet sparsity = 1 - kept weights / all weights;
* ``pattern``: PatDNN-style weights (every kept (out, in) kernel non-zero on one of 8 four-tap
  patterns, the centre kept; ``connectivity`` of the kernels pruned whole), pattern kernel
  ``dtmm_conv_pattern_s8``.

Bytes are the stored weights plus index (pattern table included), without the per-channel
bias / multiplier / shift every build has. Writes ``pattern.md`` and ``pattern.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

#: (H, W, Cin, Cout, connectivity-pruned fraction of kernels); the first is the DTMM paper's conv
SHAPES = [(16, 16, 64, 64, 0.0), (16, 16, 64, 64, 0.5), (14, 14, 16, 32, 0.5), (7, 7, 32, 64, 0.5),
          (16, 16, 32, 32, 0.3)]
PATTERNS = 8
CORES = {"m4": ("dtmm/cortex-m4", "mps2-an386"), "m55": ("dtmm/cortex-m55", "mps3-an547")}


def _builds(h, w, cin, cout, connectivity):
    """(name, fmt, sparsity, stored bytes) of the three builds of one shape."""
    from dtmm_tvm.costmodel.features import ConvShape
    from dtmm_tvm.costmodel.measure import MEASURE_PATTERNS_3X3, conv_params, conv_weights, random_pattern_weights
    from dtmm_tvm.quant.conv import same_padding
    from dtmm_tvm.sparsity import pack_filterlets_as
    from dtmm_tvm.sparsity.pattern import pack_patterns

    shape = ConvShape(h, w, cin, cout, 3, 3, (1, 1), same_padding((h, w), (3, 3), (1, 1)))
    seed = 17
    params = conv_params(shape)
    # the pattern layer exactly as build_conv_module makes it (same seed), for its kept weights
    pw = random_pattern_weights(params.weight_shape, MEASURE_PATTERNS_3X3[:PATTERNS], connectivity,
                                np.random.default_rng(seed + 7919))
    kept_weights = int(np.count_nonzero(pw))
    total = pw.size
    filterlet_sparsity = 1.0 - kept_weights / total
    fw = conv_weights(shape, filterlet_sparsity, seed)[0]
    return shape, seed, kept_weights, total, [
        ("dense", "dense", 0.0, total),
        ("filterlet", "filterlet_csr", filterlet_sparsity, pack_filterlets_as(fw, "filterlet_csr").nbytes),
        ("pattern", "pattern", connectivity, pack_patterns(pw).nbytes),
    ]


def run(cores, jobs: int, out_dir: Path) -> int:
    from dtmm_tvm.costmodel import measure
    from dtmm_tvm.micro.project import load_server, template_dir
    from dtmm_tvm.target import resolve_target

    load_server(template_dir())
    rows, failures = [], 0
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="dtmm-bench-pattern-") as tmp, ThreadPoolExecutor(jobs) as pool:
        futures = []
        for i, (h, w, cin, cout, conn) in enumerate(SHAPES):
            shape, seed, kept_weights, total, builds = _builds(h, w, cin, cout, conn)
            for core in cores:
                tag, board = CORES[core]
                for name, fmt, sparsity, nbytes in builds:
                    path = Path(tmp) / f"{i}-{core}-{name}.tar"
                    with resolve_target(tag):
                        mod, ishape, _ = measure.build_conv_module(shape, fmt, sparsity, seed=seed, patterns=PATTERNS)
                    measure.write_module(mod, path, tag)
                    row = dict(shape=f"{h}x{w}x{cin}->{cout}", connectivity=conn, kept_weights=kept_weights,
                               total_weights=total, core=core, build=name, sparsity=round(sparsity, 4),
                               weight_bytes=int(nbytes))
                    futures.append((row, pool.submit(measure.run_module, path, board, ishape, tmp, i)))
        for row, fut in futures:
            try:
                row["instructions"] = int(fut.result())
            except Exception as err:  # reported in the table, the other builds still run
                row["error"] = str(err).splitlines()[0][:200]
                failures += 1
            rows.append(row)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "pattern.json").write_text(json.dumps({"seconds": round(time.time() - started, 1), "rows": rows},
                                                     indent=1) + "\n")
    (out_dir / "pattern.md").write_text(_table(rows, cores))
    print(_table(rows, cores))
    return 1 if failures else 0


def _table(rows, cores) -> str:
    by = {(r["shape"], r["connectivity"], r["core"], r["build"]): r for r in rows}
    lines = ["# Pattern pruning vs filterlet pruning vs dense (3x3 convs, same compiler, QEMU -icount)", "",
             "Regenerate: `python -m bench.pattern` (see bench/pattern.py). Filterlet = DTMM's CSR format at the",
             "same kept weights as the pattern layer (8 four-tap patterns, centre kept, `conn` of the kernels",
             "connectivity-pruned). Instructions per inference (millions); bytes = stored weights + index.", ""]
    head = "| layer | conn | kept weights | " + " | ".join(
        f"{c} dense | {c} filterlet | {c} pattern | {c} filterlet / pattern" for c in cores) + \
        " | bytes dense | bytes filterlet | bytes pattern |"
    lines += [head, "|" + "---|" * (3 + 4 * len(cores) + 3)]
    seen = []
    for r in rows:
        key = (r["shape"], r["connectivity"])
        if key not in seen:
            seen.append(key)
    for shape, conn in seen:
        first = by[(shape, conn, cores[0], "dense")]
        cells = [shape, f"{conn:.0%}", f"{first['kept_weights'] / first['total_weights']:.1%}"]
        for core in cores:
            vals = [by[(shape, conn, core, b)].get("instructions") for b in ("dense", "filterlet", "pattern")]
            cells += [f"{v / 1e6:.3f}" if v else "failed" for v in vals]
            cells.append(f"{vals[1] / vals[2]:.2f}" if vals[1] and vals[2] else "-")
        cells += [str(by[(shape, conn, cores[0], b)]["weight_bytes"]) for b in ("dense", "filterlet", "pattern")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pattern", description=__doc__.splitlines()[0])
    parser.add_argument("--cores", default="m4,m55")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    cores = [c.strip() for c in args.cores.split(",") if c.strip()]
    bad = [c for c in cores if c not in CORES]
    if bad:
        print(f"unknown cores {bad}; known: {sorted(CORES)}", file=sys.stderr)
        return 2
    return run(cores, args.jobs, Path(args.out))


if __name__ == "__main__":
    sys.exit(main())
