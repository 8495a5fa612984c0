"""Reference-style models (issue 11): whole models dense and at 50 / 75 / 90 % filterlet sparsity,
a measured per-layer breakdown (DTMM build vs dense build), the per-phase breakdown of the
paper's conv, and the TFLM + CMSIS-NN figures quoted from the issue.

Everything here is measured like the rest of ``bench/`` (QEMU ``-icount`` instruction counts,
outputs compared with host TFLM), except the quoted rows, which say so.

- Whole models: the ``s00`` file built dense, the ``sNN`` files built with DTMM (``--optimize
  speed``: each pruned conv takes the format with the fewest predicted instructions).
- Per layer (:func:`layer_breakdown`): both builds lowered exactly as ``dtmm compile`` does, each
  conv / depthwise / fully connected call measured alone as a one-layer artifact (the tuner's
  one-layer modules, random inputs); a layer whose PrimFunc is the same in both builds is
  measured once. ``other`` = whole model minus the measured layers (pooling, ADD, softmax, ...).
- Phases (:func:`phase_jobs`): the paper conv and ResNet-8 at 75% rebuilt with one phase compiled out of the C
  kernels (``-DDTMM_BENCH_SKIP_IM2COL`` / ``_MAC`` / ``_REQUANT``, bench-only switches in
  ``dtmm_conv_{im2col,block}_s8.c``); a phase's cost is the full build minus the build without
  it (those builds' outputs are meaningless and not compared). ``other`` = per-channel setup,
  index decode, bias, call overhead (for ResNet-8 also its ADD, pooling and softmax ops).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

#: family -> {sparsity %: model file stem}; 0 is built dense, the others with DTMM.
FAMILIES = {
    "resnet8": {0: "resnet8", 50: "resnet8_s50", 75: "resnet8_s75", 90: "resnet8_s90"},
    "ds_cnn": {0: "ds_cnn_s00", 50: "ds_cnn_s50", 75: "ds_cnn_s75", 90: "ds_cnn_s90"},
    "mobilenet_v1_025": {0: "mobilenet_v1_025_s00", 90: "mobilenet_v1_025_s90"},
    "kws_1d": {0: "kws_1d_s00", 50: "kws_1d_s50", 75: "kws_1d_s75", 90: "kws_1d_s90"},
    "ad_autoencoder": {0: "ad_autoencoder"},
}
FAMILIES_QUICK = ["ds_cnn", "kws_1d"]
#: Per-layer breakdown: the 90 % variant of these families, on these cores.
LAYER_FAMILIES = ["ds_cnn", "kws_1d"]
LAYER_CORES = ["m4", "m55"]
#: Phase breakdown: the paper conv at these sparsities (dense and 90 %), on these cores.
PHASE_MODELS = ["paper_3x3_s00", "paper_3x3_s90", "resnet8_s75"]  # ResNet-8: where its M55 time goes
PHASE_CORES = ["m4", "m55"]
PHASE_FLAGS = {"im2col": "-DDTMM_BENCH_SKIP_IM2COL", "mac": "-DDTMM_BENCH_SKIP_MAC",
               "requant": "-DDTMM_BENCH_SKIP_REQUANT"}

#: Quoted from issue 11 (NOT measured here): TFLM at 90b983c2 + CMSIS-NN 4ab83cc, bare metal,
#: -O2, the same gcc, QEMU -icount, random int8 inputs, instructions per inference (millions).
QUOTED_PROTOCOL = ("TFLM 90b983c2 + CMSIS-NN 4ab83cc built bare metal at -O2 with the same gcc, run "
                   "on QEMU -icount (same protocol as bench/), random int8 inputs, outputs equal to "
                   "host TFLM; quoted from issue 11, not reproduced here (TFLM is not vendored)")
QUOTED = {
    "resnet8": {"m4": 29.86, "m55": 4.91, "what": "ResNet-8 (MLPerf Tiny IC)",
                "issue_ours": "dense M4 19.44 / M55 4.87; 75% M4 13.90 / M55 4.22"},
    "ds_cnn": {"m4": 7.70, "m55": 1.81, "what": "DS-CNN (MLPerf Tiny KWS)",
               "issue_ours": "dense M4 6.67 / M55 2.11; 90% first conv M4 7.40 / M55 2.43"},
    "mobilenet_v1_025": {"m4": 24.10, "m55": 6.56, "what": "MobileNetV1-0.25 VWW 96x96",
                         "issue_ours": "dense M4 22.33 / M55 8.21"},
    "kws_1d": {"m4": 2.23, "m55": 0.41, "what": "streaming wake-word (1-D convs)",
               "issue_ours": "dense M4 1.58 / M55 0.48"},
    "ad_autoencoder": {"m4": 0.58, "m55": 0.15, "what": "FC autoencoder (AD)",
                       "issue_ours": "dense M4 0.53 / M55 0.12"},
}
QUOTED_ARENA = {"resnet8": 55.0, "ds_cnn": 22.8, "mobilenet_v1_025": 100.7}  # KB, TFLM's


def ref_jobs(families: list, cores: list, models_dir: Path, workdir: str, inputs_of) -> list:
    """Whole-model jobs: ``(family, sparsity, Job)``."""
    from .harness import Job

    out = []
    for fam in families:
        for sp, stem in FAMILIES[fam].items():
            path = models_dir / f"{stem}.tflite"
            x = inputs_of(path)
            for core in cores:
                out.append((fam, sp, Job("ref", stem, str(path), "dense" if sp == 0 else "dtmm", core, workdir, x)))
    return out


def phase_jobs(cores: list, models_dir: Path, workdir: str, inputs_of) -> list:
    """Phase jobs: ``(model, phase, Job)`` with phase ``"full"`` or one of :data:`PHASE_FLAGS`."""
    from .harness import Job

    out = []
    for name in PHASE_MODELS:
        path = models_dir / f"{name}.tflite"
        x = inputs_of(path)
        for core in [c for c in cores if c in PHASE_CORES]:
            mode = "dense" if name.endswith("s00") else "dtmm"
            for phase, flag in [("full", "")] + list(PHASE_FLAGS.items()):
                out.append((name, phase, Job("phase", f"{name}:{phase}", str(path), mode, core, workdir, x,
                                             cflags=flag)))
    return out


def phases_of(runs: dict) -> dict | None:
    """``{im2col, mac, requant, other, full}`` instructions from the phase builds of one model/core."""
    if not all(runs.get(p, {}).get("ok") for p in ["full", *PHASE_FLAGS]):
        return None
    full = runs["full"]["instructions"]
    out = {p: full - runs[p]["instructions"] for p in PHASE_FLAGS}
    out["other"] = full - sum(out.values())
    out["full"] = full
    return out


# ---- per-layer breakdown (runs in a worker process) -------------------------------------------
def layer_breakdown(model_path: str, core: str, workdir: str) -> dict:
    """Every conv / depthwise / FC layer of ``model_path`` measured alone in the dense build and
    in the DTMM build (same names: both builds are lowered from the same import). Never raises."""
    import traceback

    try:
        return {"ok": True, "layers": _layer_breakdown(Path(model_path), core, Path(workdir))}
    except Exception as err:  # reported in the tables, the rest of the bench goes on
        return {"ok": False, "error": f"{type(err).__name__}: {str(err).strip()[:300]}",
                "traceback": traceback.format_exc()[-2000:]}


def _layer_breakdown(model_path: Path, core: str, workdir: Path) -> list:
    from dtmm_tvm.codegen import write_archive
    from dtmm_tvm.compiler import lower_model
    from dtmm_tvm.frontend.loader import load_model
    from dtmm_tvm.micro import run_artifact
    from dtmm_tvm.schedules.layers import tunable_layers
    from dtmm_tvm.target import resolve_target
    from dtmm_tvm.tuning.tuner import layer_inputs, one_layer_module

    from .columns import CORES

    board, tag = CORES[core]
    target = resolve_target(tag)
    model = load_model(model_path)
    with target:
        builds = {"dense": lower_model(model, sparse=False), "dtmm": lower_model(model, sparse=True)}
    layers = {b: {} for b in builds}
    for build, mod in builds.items():
        for layer in tunable_layers(mod):
            for name in layer.names:
                func = mod[name]
                layers[build][json.loads(str(func.attrs["dtmm.layer"]))["name"]] = layer
    measured: dict = {}

    def measure(layer) -> int:
        key = (layer.key, str(layer.layer.get("format", "dense")))
        if key not in measured:
            tmp = Path(tempfile.mkdtemp(prefix="layer-", dir=workdir))
            tar = tmp / "layer.tar"
            with target:
                write_archive(one_layer_module(layer, layer.func), tar,
                              {"target": tag, "mode": "bench-layer",
                               "model": {"name": layer.names[0], "source": None, "sha256": None}},
                              overwrite=True)
            res = run_artifact(tar, board, layer_inputs(layer, 0), build_dir=tmp, timeout_s=600)
            measured[key] = int(res.instructions)
        return measured[key]

    rows = []
    for name, dense in layers["dense"].items():
        sparse = layers["dtmm"].get(name)
        row = {"layer": name, "op": dense.op, "dense": measure(dense)}
        if sparse is not None:
            info = sparse.layer
            row.update(dtmm=measure(sparse), format=info.get("format", "dense"), dtmm_op=sparse.op,
                       filterlet_sparsity=info.get("filterlet_sparsity"))
            choice = info.get("format_choice")
            if choice:
                row["predicted"] = choice.get("predicted_instructions")
        rows.append(row)
    return rows


def write_markdown_sections(results: dict) -> list:
    """The markdown of the reference-model, per-layer, phase and quoted sections."""
    from .columns import CORE_LABEL

    ref = results.get("ref") or {}
    L: list = []
    if ref.get("models"):
        cores = results["cores"]
        L += ["## Reference-style models (issue 11)", "",
              "Whole models, instructions per inference (millions): *dense* = the `s00` model built "
              "`--dense`; *NN%* = the model pruned to NN% filterlet sparsity built with DTMM "
              "(`--optimize speed`). *TFLM+CMSIS-NN* is **quoted** from issue 11 (protocol below), not "
              "measured here; *x* = ours / quoted. Every run is compared with host TFLM.", ""]
        head = ["model", "core", "dense", "50%", "75%", "90%", "TFLM+CMSIS-NN (quoted)", "dense x", "best DTMM x",
                "vs TFLM", "formats chosen at 90%"]
        rows = []
        for fam, runs in ref["models"].items():
            for core in cores:
                def get(sp, fam=fam, core=core):
                    rec = runs.get(str(sp), {}).get(core)
                    return rec if rec and rec.get("ok") else None
                cells, exact, best = [], True, None
                for sp in (0, 50, 75, 90):
                    rec = get(sp)
                    if str(sp) not in runs:
                        cells.append("-")
                        continue
                    if rec is None:
                        cells.append("FAILED")
                        exact = False
                        continue
                    exact &= bool(rec.get("exact"))
                    cells.append(f"{rec['instructions'] / 1e6:.3f}")
                    if sp:
                        best = rec["instructions"] if best is None else min(best, rec["instructions"])
                q = QUOTED.get(fam, {}).get(core)
                d = get(0)
                r90 = get(90)
                fmts = ", ".join(f"{k.replace('filterlet_', '')}: {v}" for k, v in sorted(_count(r90.get("layer_formats_all", []) if r90
                                                                       else []).items())) or "-"
                rows.append([fam, CORE_LABEL[core], *cells, f"{q:.2f}" if q else "-",
                             f"{d['instructions'] / 1e6 / q:.2f}" if (d and q) else "-",
                             f"{best / 1e6 / q:.2f}" if (best and q) else "-",
                             "bit-exact" if exact else "NOT bit-exact", fmts])
        L += _table(head, rows) + [""]
        L += ["Quoted reference protocol: " + QUOTED_PROTOCOL + ". The issue's own figures for our "
              "compiler at the time: " + "; ".join(f"{v['what']}: {v['issue_ours']}" for v in QUOTED.values())
              + ". TFLM arenas (quoted): " + ", ".join(f"{k} {v} KB" for k, v in QUOTED_ARENA.items())
              + "; TFLM + CMSIS-NN code 72-90 KB.", ""]
    if ref.get("layers"):
        L += ["### Per-layer breakdown (90% variants, measured)", "",
              "Each conv / depthwise / FC layer measured alone (one-layer artifact, same kernels and "
              "constants as the model build). *dense* = the layer in the dense build, *DTMM* = in the "
              "DTMM build (dense where the compiler kept it dense, or filter-dropped / filterlet-sparse). "
              "*slower?* flags a layer where DTMM > dense.", ""]
        for key, rec in ref["layers"].items():
            fam, core = key.split("|")
            L += [f"**{fam}, {CORE_LABEL[core]}**", ""]
            if not rec.get("ok"):
                L += [f"FAILED: {rec.get('error')}", ""]
                continue
            rows, slower = [], 0
            for r in rec["layers"]:
                d, s = r["dense"], r.get("dtmm")
                bad = s is not None and s > d
                slower += bad
                pred = r.get("predicted") or {}
                rows.append([r["layer"], r["op"], r.get("format", "-"),
                             "-" if r.get("filterlet_sparsity") is None else f"{r['filterlet_sparsity']:.0%}",
                             f"{d:,}", "-" if s is None else f"{s:,}",
                             "-" if s is None else f"{s / d:.2f}", "YES" if bad else "no",
                             ", ".join(f"{k.replace('filterlet_', '')} {v / 1e6:.3f}" for k, v in pred.items())
                             or "-"])
            L += _table(["layer", "op", "DTMM format", "filterlet sparsity", "dense", "DTMM", "DTMM/dense",
                         "slower?", "predicted (M instr)"], rows)
            L += ["", f"Layers slower with DTMM than dense: {slower}.", ""]
    if ref.get("phases"):
        L += ["### Per-phase breakdown of the paper conv and of ResNet-8 at 75% (measured)", "",
              "Instructions per phase = full build minus the build with that phase compiled out of the "
              "kernels (bench-only `-DDTMM_BENCH_SKIP_*` switches); *other* = per-(channel, pixel "
              "group) setup, index decode, bias, calls (whole models: also ADD, pooling, softmax).", ""]
        rows = []
        for key, ph in ref["phases"].items():
            name, core = key.split("|")
            if ph is None:
                rows.append([name, CORE_LABEL[core], "FAILED", "", "", "", ""])
                continue
            rows.append([name, CORE_LABEL[core], f"{ph['full']:,}", f"{ph['im2col']:,}", f"{ph['mac']:,}",
                         f"{ph['requant']:,}", f"{ph['other']:,}"])
        L += _table(["model", "core", "total", "im2col", "MAC loops", "requantization", "other"], rows) + [""]
    return L


def _count(items) -> dict:
    out: dict = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


def _table(header: list, rows: list) -> list:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def inputs_for(path: Path, count: int, seed_of) -> np.ndarray:
    from dtmm_tvm.frontend.tflite_reader import read_tflite

    graph = read_tflite(path)
    t = graph.tensor(graph.inputs[0])
    rng = np.random.default_rng(seed_of(path.name))
    info = np.iinfo(np.dtype(t.dtype))
    return rng.integers(info.min, info.max + 1, size=(count, *t.shape), dtype=np.dtype(t.dtype))
