"""``python -m bench.unstructured``: the unstructured-pruning baseline's kernel against dense and
the filterlet formats (issue 9).

For a few conv shapes and element sparsities, the SAME randomly element-pruned int8 weights are
compiled as one-layer artifacts in every format: dense (``dtmm_conv_block_s8``), the filterlet
formats (``filterlet_csr``, ``filterlet_bitmask``: every filterlet with a non-zero weight kept,
so they multiply the zeros inside kept filterlets) and ``unstructured_csr`` (``dtmm_conv_csr_s8``:
only the non-zero weights). Each artifact runs on QEMU (Cortex-M4 ``mps2-an386``, Cortex-M55
``mps3-an547``); instructions per inference from ``-icount`` (instructions, not cycles), bytes
are the stored weights (values + index) of the format, outputs checked against the numpy
reference (itself tested against TFLM). Writes ``bench/results/unstructured/results.{json,md}``.

    python -m bench.unstructured            # 4 shapes x 3 sparsities x 2 cores (~80 QEMU runs)
    python -m bench.unstructured --quick    # 1 shape, 2 sparsities
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "unstructured"
CORES = {"m4": ("dtmm/cortex-m4", "mps2-an386"), "m55": ("dtmm/cortex-m55", "mps3-an547")}
#: (H, W, Cin, Cout, K, stride)
SHAPES = [(16, 16, 3, 16, 3, 1), (16, 16, 16, 32, 3, 1), (8, 8, 64, 64, 3, 1), (8, 8, 32, 64, 1, 1)]
SPARSITIES = (0.7, 0.9, 0.95)
FILTERLET = ("filterlet_csr", "filterlet_bitmask")


def _weights(shape, sparsity, seed):
    from dtmm_tvm.costmodel import measure
    from dtmm_tvm.costmodel.features import ConvShape
    from dtmm_tvm.quant.conv import same_padding

    h, w, cin, cout, k, s = shape
    conv = ConvShape(h, w, cin, cout, k, k, (s, s), same_padding((h, w), (k, k), (s, s)))
    weight, bias, mult, shift = measure.element_sparse_weights(conv, sparsity, seed)
    return measure.conv_params(conv), weight, bias, mult, shift


def _build(params, fmt, weight, bias, mult, shift, target):
    from dtmm_tvm.costmodel import measure
    from dtmm_tvm.ops.conv2d import conv2d_int8
    from dtmm_tvm.ops.conv2d_filterlet import conv2d_filterlet_int8
    from dtmm_tvm.ops.conv2d_unstructured import conv2d_unstructured_int8
    from dtmm_tvm.sparsity import pack_filterlets_as

    with target:
        if fmt == "dense":
            func, consts, nbytes = conv2d_int8(params), [weight, bias, mult, shift], int(weight.size)
        else:
            packed = pack_filterlets_as(weight, fmt)
            if fmt == "unstructured_csr":
                func = conv2d_unstructured_int8(params, packed.nonzero_weights)
            else:
                func = conv2d_filterlet_int8(params, packed.kept_filterlets, fmt=fmt)
            consts, nbytes = [packed.values, *packed.index_arrays, bias, mult, shift], packed.nbytes
        return measure._one_layer(func, params.input_shape, consts, params.output_shape, "conv"), nbytes


def _run(job, tmp):
    from dtmm_tvm.costmodel import measure
    from dtmm_tvm.micro import run_artifact
    from dtmm_tvm.quant import conv as qc
    from dtmm_tvm.target import resolve_target

    core, shape, sparsity, fmt, seed = job
    tag, board = CORES[core]
    params, weight, bias, mult, shift = _weights(shape, sparsity, seed)
    mod, nbytes = _build(params, fmt, weight, bias, mult, shift, resolve_target(tag))
    path = Path(tmp) / f"{core}-{'x'.join(map(str, shape))}-{sparsity}-{fmt}.tar"
    measure.write_module(mod, path, tag)
    x = np.random.default_rng(seed).integers(-128, 128, size=(2, *params.input_shape)).astype(np.int8)
    result = run_artifact(path, board, x, build_dir=tmp, timeout_s=600)
    expected = np.stack([qc.conv2d(x[i], weight, bias, mult, shift, params) for i in range(2)])
    return dict(core=core, shape=list(shape), element_sparsity=sparsity, format=fmt,
                filterlet_sparsity=round(float(1 - np.any(weight != 0, axis=3).mean()), 4),
                instructions=int(result.instructions), weight_bytes=int(nbytes),
                bit_exact=bool(np.array_equal(result.outputs.reshape(expected.shape), expected)))


def _table(rows) -> str:
    lines = ["| core | conv (HxW Cin->Cout KxK) | element sp. | filterlet sp. | dense instr | best filterlet "
             "instr | CSR instr | dense B | best filterlet B | CSR B | fastest |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    key = {}
    for r in rows:
        key[(r["core"], tuple(r["shape"]), r["element_sparsity"], r["format"])] = r
    for core in CORES:
        for shape in sorted({tuple(r["shape"]) for r in rows if r["core"] == core}, key=SHAPES.index):
            dense = next(r for r in rows if r["core"] == core and tuple(r["shape"]) == shape and r["format"] == "dense")
            for sp in sorted({r["element_sparsity"] for r in rows if r["format"] != "dense"}):
                fl = [key.get((core, shape, sp, f)) for f in FILTERLET]
                fl = [r for r in fl if r]
                csr = key.get((core, shape, sp, "unstructured_csr"))
                if not fl or not csr:
                    continue
                best = min(fl, key=lambda r: r["instructions"])
                small = min(fl, key=lambda r: r["weight_bytes"])
                cands = {"dense": dense["instructions"], best["format"]: best["instructions"],
                         "unstructured_csr": csr["instructions"]}
                h, w, cin, cout, k, _ = shape
                lines.append(
                    f"| {core} | {h}x{w} {cin}->{cout} {k}x{k} | {sp:.0%} | {csr['filterlet_sparsity']:.0%} | "
                    f"{dense['instructions']:,} | {best['instructions']:,} ({best['format'][10:]}) | "
                    f"{csr['instructions']:,} | {dense['weight_bytes']:,} | {small['weight_bytes']:,} "
                    f"({small['format'][10:]}) | {csr['weight_bytes']:,} | {min(cands, key=cands.get)} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.unstructured", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one shape, two sparsities")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cores", default="m4,m55")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    shapes = SHAPES[1:2] if args.quick else SHAPES
    sparsities = (0.7, 0.95) if args.quick else SPARSITIES
    cores = [c for c in args.cores.split(",") if c]
    jobs = []
    for core in cores:
        for i, shape in enumerate(shapes):
            jobs.append((core, shape, sparsities[0], "dense", 100 + i))  # dense: independent of the zeros
            for sp in sparsities:
                for fmt in (*FILTERLET, "unstructured_csr"):
                    jobs.append((core, shape, sp, fmt, 100 + i + int(sp * 1000)))
    started = time.time()
    rows, failed = [], 0
    from dtmm_tvm.micro.project import load_server, template_dir

    load_server(template_dir())
    with tempfile.TemporaryDirectory(prefix="dtmm-bench-csr-") as tmp, cf.ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(_run, job, tmp): job for job in jobs}
        for fut in cf.as_completed(futures):
            try:
                row = fut.result()
            except Exception as err:  # reported, the others go on
                failed += 1
                print(f"FAILED {futures[fut]}: {err}", file=sys.stderr)
                continue
            failed += not row["bit_exact"]
            rows.append(row)
            print(f"{row['core']} {row['shape']} {row['element_sparsity']} {row['format']}: "
                  f"{row['instructions']:,} instr, {row['weight_bytes']:,} B, exact={row['bit_exact']}", flush=True)
    # dense rows are measured once per shape; give them every sparsity's key
    dense_rows = [r for r in rows if r["format"] == "dense"]
    rows.sort(key=lambda r: (r["core"], SHAPES.index(tuple(r["shape"])), r["element_sparsity"], r["format"]))
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"command": "python -m bench.unstructured" + (" --quick" if args.quick else ""),
           "seconds": round(time.time() - started, 1), "rows": rows}
    (args.out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    md = ("# Unstructured (per-weight CSR) vs dense vs filterlet formats\n\n"
          f"`{doc['command']}`; one-layer artifacts, same element-pruned weights in every format, QEMU "
          "instructions per inference (-icount), stored weight bytes (values + index; + 12 B per output "
          "channel of bias/requantization in every format, not counted). Best filterlet = the faster of "
          "filterlet_csr and filterlet_bitmask (instructions) / the smaller (bytes). All outputs bit-exact: "
          f"{all(r['bit_exact'] for r in rows)}.\n\n" + _table(rows))
    (args.out / "results.md").write_text(md)
    print(md)
    del dense_rows
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
