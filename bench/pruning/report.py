"""The experiment's report from its JSON lines: ``results.md`` (table, issue-9 targets, per-layer
notes where a target is missed), ``summary.json`` (one row per model x method x budget) and the
plots (accuracy vs flash, accuracy vs M4 instructions, with each method's Pareto front)."""

from __future__ import annotations

import json
from pathlib import Path

from .jobs import VAL_IMAGES

COMMAND = "python -m bench.pruning   # from the repository root, with the venv's python"
MARKERS = {"dense": "k*", "dtmm": "o", "filter": "s", "unstructured": "^", "pattern": "D"}


def rows_of(records: list) -> list:
    """One row per (model, method, budget): prune figures joined with each board's measurement.
    A budget run again (another machine's paths, another protocol) counts by its newest job."""
    prune = {}
    measure = {}
    for r in records:
        if r.get("status") != "ok":
            continue
        if r["fn"].endswith("prune_job"):
            # by budget, not by .tflite: two budgets whose searches chose the same plan give the
            # same model, and are two rows sharing its measurement
            prune[(r["result"]["model"], method_label(r), r["result"]["fraction"])] = r
        elif r["fn"].endswith("measure_job"):
            key = (r["inputs"]["tflite_sha256"], r["result"]["target"])
            measure[key] = r   # the last measurement of a model on a board wins (newest code)
    rows = []
    for r in prune.values():
        if "not_achievable" in r["result"]:
            res = r["result"]
            na = res["not_achievable"]
            rows.append({"model": res["model"], "method": method_label(r), "fraction": res["fraction"],
                         "accuracy": None, "not_achievable": na, "budget_flash_bytes": na.get("budget_flash_bytes"),
                         "budget_met_on_artifact": False, "prune_seconds": res["seconds"]})
    for r in [r for r in prune.values() if "tflite_sha256" in r["result"]]:
        res = r["result"]
        sha = res["tflite_sha256"]
        row = {"model": res["model"], "method": method_label(r), "fraction": res["fraction"],
               "accuracy": res["accuracy"]["int8_accuracy"], "float_accuracy": res["accuracy"].get("float"),
               "tflm_bit_exact": res["accuracy"]["tflm_bit_exact"],
               "budget_flash_bytes": (res.get("budget") or {}).get("flash_bytes"), "plan": res.get("plan"),
               "predicted": res.get("predicted"), "prune_layers": res.get("layers"), "prune_seconds": res["seconds"]}
        for target, tag in (("dtmm/cortex-m4", "m4"), ("dtmm/cortex-m55", "m55")):
            m = measure.get((sha, target))
            if m:
                mr = m["result"]
                row[f"{tag}_instructions"] = mr["instructions"]
                row[f"{tag}_constants_bytes"] = mr["constants_bytes"]
                row[f"{tag}_elf_flash_bytes"] = mr["elf_flash_bytes"]
                row[f"{tag}_arena_bytes"] = mr["arena_bytes"]
                row[f"{tag}_bit_exact_vs_tflm"] = mr["bit_exact_vs_tflm"]
                row[f"{tag}_layers"] = mr["layers"]
        if "m4_constants_bytes" in row and row["budget_flash_bytes"]:
            row["budget_met_on_artifact"] = row["m4_constants_bytes"] <= row["budget_flash_bytes"]
        rows.append(row)
    order = {"dense": 0, "dtmm": 1, "filter": 2, "unstructured": 3, "pattern": 4}
    rows.sort(key=lambda r: (r["model"], order.get(r["method"].split("-")[0], 9), r["method"], -(r["fraction"] or 1.0)))
    return rows


def method_label(record: dict) -> str:
    """The method of a prune job; a run with a bound on DTMM's filter cuts or with an instructions
    budget is its own variant (``dtmm-f50``: at most 50% of a layer's filters removed; ``dtmm-i45``:
    at most 45% of the dense model's predicted M4 instructions as well)."""
    method = record["result"]["method"]
    bound = record["inputs"].get("max_filter_ratio")
    if method == "dtmm" and bound is not None:
        method += f"-f{round(100 * bound)}"
    instructions = record["inputs"].get("instructions_fraction")
    return method if instructions is None else f"{method}-i{round(100 * instructions)}"


def _view(rows: list, variant: str) -> list:
    """``rows`` with DTMM variant ``variant`` as "dtmm" and the other DTMM variants left out."""
    return [dict(r, method="dtmm") if r["method"] == variant else r for r in rows
            if not (r["method"].startswith("dtmm") and r["method"] != variant)]


def _fmt(v, spec=""):
    return "—" if v is None else format(v, spec)


def _pareto(points):
    """Points (x, acc) not dominated (smaller x, higher acc)."""
    pts = sorted(points, key=lambda p: (p[0], -p[1]))
    front, best = [], -1.0
    for x, a in pts:
        if a > best:
            front.append((x, a))
            best = a
    return front


def _measured(rows, model):
    return [r for r in rows if r["model"] == model and "m4_constants_bytes" in r]


def targets(rows: list) -> list:
    """The issue-9 targets per model and DTMM variant (``dtmm_variant``), measured (met or not, by how much)."""
    out = []
    variants = sorted({r["method"] for r in rows if r["method"].startswith("dtmm")}) or ["dtmm"]
    for variant in variants:
        for t in _targets(_view(rows, variant)):
            # a variant is compared on the models it was run on (the plain method on every model)
            if variant == "dtmm" or any(r["method"] == variant and r["model"] == t["model"] for r in rows):
                out.append(dict(t, dtmm_variant=variant))
    return out


def _targets(rows: list) -> list:
    out = []
    for model in sorted({r["model"] for r in rows}):
        mr = _measured(rows, model)
        dense = next((r for r in mr if r["method"] == "dense"), None)
        if dense is None:
            continue
        floor = dense["accuracy"] - 0.005
        best = {}
        for meth in ("dtmm", "filter", "unstructured", "pattern"):
            ok = [r for r in mr if r["method"] == meth and r["accuracy"] >= floor]
            best[meth] = (min(ok, key=lambda r: r["m4_constants_bytes"]) if ok else None)
        d = best["dtmm"]
        # the tightest budget each method was run at: a best model there may not be the method's limit
        tightest = {m: min((r["fraction"] for r in rows if r["model"] == model and r["method"] == m and r["fraction"]),
                           default=None) for m in best}
        t = {"model": model, "dense_accuracy": dense["accuracy"], "accuracy_floor": floor,
             "dense_flash": dense["m4_constants_bytes"], "dense_m4_instructions": dense["m4_instructions"],
             "equal_accuracy": {m: (None if b is None else {"fraction": b["fraction"], "flash": b["m4_constants_bytes"],
                                                           "m4_instructions": b["m4_instructions"],
                                                           "accuracy": b["accuracy"],
                                                           "at_tightest_budget_run": b["fraction"] == tightest[m]})
                                for m, b in best.items()}}
        checks = []
        for other, goal, what in (("filter", 0.35, "flash"), ("pattern", 0.10, "flash"), ("pattern", 0.50, "m4")):
            o = best[other]
            key = "m4_constants_bytes" if what == "flash" else "m4_instructions"
            label = (f"DTMM >= {goal:.0%} smaller than {other}" if what == "flash"
                     else f"DTMM >= {goal:.0%} fewer M4 instructions than {other}")
            if d is None or o is None:
                checks.append({"target": label, "met": None, "other": other,
                               "note": ("no DTMM" if d is None else f"no {other}") + " model within 0.5 pt of dense"})
                continue
            saving = 1 - d[key] / o[key]
            limited = [m for m, b in (("dtmm", d), (other, o)) if b["fraction"] == tightest[m]]
            checks.append({"target": label, "met": saving >= goal, "measured": round(saving, 4), "other": other,
                           "dtmm": d[key], other: o[key], "fractions": [d["fraction"], o["fraction"]],
                           "grid_limited": limited})
        eq = []
        allrows = [r for r in rows if r["model"] == model]
        for f in sorted({r["fraction"] for r in allrows if r["fraction"]}, reverse=True):
            at = {r["method"]: r for r in allrows if r["fraction"] == f}
            e = {"fraction": f}
            for meth in ("dtmm", "filter", "unstructured"):
                r = at.get(meth)
                if r is None:
                    continue
                if r.get("not_achievable"):
                    e[f"{meth}_not_achievable_smallest_flash"] = r["not_achievable"]["smallest_flash_bytes"]
                elif "m4_constants_bytes" in r:
                    e[meth] = r["accuracy"]
                    e[f"{meth}_flash"] = r["m4_constants_bytes"]
            if "dtmm" in e and "filter" in e:
                e["dtmm_ge_filter"] = e["dtmm"] >= e["filter"]
            if "dtmm" in e and "unstructured" in e:
                e["dtmm_within_0.5pt_of_unstructured"] = e["dtmm"] >= e["unstructured"] - 0.005
            eq.append(e)
        t["checks"] = checks
        t["equal_flash"] = eq
        out.append(t)
    return out


def _row(rows, model, method, fraction):
    return next((r for r in rows if r["model"] == model and r["method"] == method and r["fraction"] == fraction
                 and "m4_layers" in r), None)


def _layer_note(a, b):
    """Per-layer M4 formats / bytes / instructions of two measured models (why a target is missed)."""
    if not a or not b:
        return []
    ma, mb = a["method"], b["method"]
    lines = [f"| layer | {ma} @{a['fraction']} format | bytes | kept MACs | {mb} @{b['fraction']} format | bytes | "
             "kept MACs |", "|---|---|---:|---:|---|---:|---:|"]
    for la, lb in zip(a["m4_layers"], b["m4_layers"]):
        if la.get("stored_weight_bytes") is None and lb.get("stored_weight_bytes") is None:
            continue
        lines.append(f"| {la.get('op')} `{str(la.get('name'))[:40]}` | {la.get('format')} | "
                     f"{la.get('stored_weight_bytes')} | {_fmt(la.get('kept_macs'), ',')} | {lb.get('format')} | "
                     f"{lb.get('stored_weight_bytes')} | {_fmt(lb.get('kept_macs'), ',')} |")
    lines.append(f"| **total (constants)** | | {a['m4_constants_bytes']} | M4 {a['m4_instructions']:,} instr | | "
                 f"{b['m4_constants_bytes']} | M4 {b['m4_instructions']:,} instr |")

    def formats(r):
        fm = [l.get("format") for l in r["m4_layers"] if l.get("stored_weight_bytes") is not None]
        return ", ".join(f"{f} x{fm.count(f)}" for f in sorted(set(fm), key=str))

    lines += ["", f"Formats the compiler chose: {ma} {formats(a)}; {mb} {formats(b)}. Kept MACs: {ma} "
              f"{sum(l.get('kept_macs') or 0 for l in a['m4_layers']):,}, {mb} "
              f"{sum(l.get('kept_macs') or 0 for l in b['m4_layers']):,}."]
    return lines


def protocol_of(records: list) -> str:
    """The training protocol the prune jobs in ``records`` ran with (from their inputs)."""
    jobs = [r["inputs"] for r in records if r.get("fn", "").endswith("prune_job")]
    if not jobs:
        return ""

    def vals(key, where=lambda i: True, default=None):   # default: jobs from before the key existed
        return "/".join(str(v) for v in sorted({i.get(key, default) for i in jobs if where(i)}, key=str))

    pruned = lambda i: i.get("method") != "dense"  # noqa: E731
    return (f"base models (recipe {vals('base_recipe')}) trained {vals('base_epochs')} epochs on the first "
            f"{vals('base_images')} of the 55,000 training images (Adam 2e-3, cosine decay, batch 128, batch-norm "
            f"momentum 0.9); every method prunes under the flash budget, importance (and the fine-tuning's "
            f"validation) on {VAL_IMAGES:,} validation images, then fine-tunes {vals('epochs', pruned)} epoch(s) on "
            f"the first {vals('train_images', pruned)} training images (Adam {vals('lr', pruned, 1e-3)}, cosine "
            f"decay, batch 64, masks {vals('schedule', pruned, 'oneshot')} (one-shot: final masks from the start; "
            f"gradual: raised over the first two thirds of the epochs) and enforced after every step, distillation "
            f"weight {vals('distill', pruned, 0.0)} (the unpruned model as teacher, temperature 4)); full-int8 "
            f"export (200 calibration images); seed {vals('seed')}; DTMM's search removes at most "
            f"{vals('max_filter_ratio', pruned, 0.9)} of a layer's filters"
            + ("" if not any(i.get("instructions_fraction") for i in jobs) else
               f"; variants *-iNN* have an M4 instructions budget as well (NN% of the dense model's predicted "
               f"instructions: {vals('instructions_fraction', lambda i: i.get('instructions_fraction'))})")
            + ". Filter pruning: CHIP criterion; pattern pruning: 8 patterns.")


def write_report(records: list, out: Path, code_version: str | None = None) -> None:
    out = Path(out)
    protocol = protocol_of(records)
    if code_version is None:   # --report-only: the compiler versions the measurements were made with
        code_version = ",".join(sorted({str(r["inputs"].get("code_version")) for r in records
                                        if r.get("fn", "").endswith("measure_job")}))
    rows = rows_of(records)
    failed = [r for r in records if r.get("status") == "failed"]
    slim = [{k: v for k, v in r.items() if not k.endswith("_layers") and k not in ("prune_layers", "predicted")}
            for r in rows]
    tg = targets(rows)
    (out / "summary.json").write_text(json.dumps({"rows": slim, "targets": tg, "code_version": code_version,
                                                  "protocol": protocol,
                                                  "failed_jobs": [{"inputs": f["inputs"], "error": f["error"]}
                                                                  for f in failed]}, indent=1, default=str))
    md = ["# Pruning methods on the same compiler and boards (issue 9)", "",
          f"Regenerate: `{COMMAND}` (resumes; `--report-only` rewrites this file from `results.jsonl`).", ""]
    if protocol:
        md += [f"Protocol: {protocol}", ""]
    md += ["Accuracy: int8 model on the 10,000 Fashion-MNIST test images, TFLite builtin int8 kernels, checked "
           "bit-exact against TFLM on the first 200 test images (column *=TFLM*). Flash: the compiled artifact's "
           "stored constants (weights + sparse index + requantization), `dtmm compile --target ...` default build. "
           "Instructions: one inference on QEMU `-icount` (M4: mps2-an386, M55: mps3-an547). RAM: the artifact's "
           "activation arena (peak SRAM). Budget: fraction of the dense model's predicted flash; *met* is checked "
           "on the M4 artifact. *board = TFLM*: the compiled model's output on each board (M4/M55) equals TFLM's. "
           "A budget a method cannot meet (even at the most pruning it allows) is reported as *not achievable*, "
           "with the smallest flash the cost model predicts for that method.", ""]
    md += ["| model | method | budget | int8 acc | =TFLM | flash M4 B | budget B | met | M4 instr | M55 instr | "
           "M55 flash B | RAM B | board = TFLM |", "|---|---|---:|---:|:-:|---:|---:|:-:|---:|---:|---:|---:|:-:|"]
    for r in rows:
        if r.get("not_achievable"):
            na = r["not_achievable"]
            md.append(f"| {r['model']} | {r['method']} | {_fmt(r['fraction'])} | not achievable (smallest "
                      f"{na['smallest_flash_bytes']} B predicted) | — | — | {_fmt(r['budget_flash_bytes'])} | no | "
                      "— | — | — | — | — |")
            continue
        met = r.get("budget_met_on_artifact")
        bx = [r.get("m4_bit_exact_vs_tflm"), r.get("m55_bit_exact_vs_tflm")]
        md.append(f"| {r['model']} | {r['method']} | {_fmt(r['fraction'])} | {r['accuracy']:.4f} | "
                  f"{'yes' if r['tflm_bit_exact'] else 'NO'} | {_fmt(r.get('m4_constants_bytes'))} | "
                  f"{_fmt(r['budget_flash_bytes'])} | {'—' if met is None else ('yes' if met else 'no')} | "
                  f"{_fmt(r.get('m4_instructions'), ',')} | "
                  f"{_fmt(r.get('m55_instructions'), ',')} | {_fmt(r.get('m55_constants_bytes'))} | "
                  f"{_fmt(r.get('m4_arena_bytes'))} | "
                  f"{'/'.join('—' if b is None else ('yes' if b else 'NO') for b in bx)} |")
    cover = []
    for model in sorted({r["model"] for r in rows}):
        done = sorted({r["fraction"] for r in rows if r["model"] == model and r["fraction"]}, reverse=True)
        meths = sorted({r["method"] for r in rows if r["model"] == model and r["fraction"]})
        cover.append(f"{model}: " + (f"{len(meths)} method(s) x budgets {', '.join(str(f) for f in done)}" if done
                                     else "dense model only"))
    md += ["", "Run so far (`python -m bench.pruning` resumes the rest): " + "; ".join(cover) + "."]
    md += ["", "## Targets (issue 9)", "",
           "*Equal accuracy*: each method's smallest M4 flash among its models within 0.5 pt of the dense int8 "
           "model's accuracy (the comparison is between those two models, whatever their budgets). "
           "*Equal flash*: the same flash budget. Where a target is missed, the per-layer table below it "
           "compares the two models it was measured on (M4 artifact: format, stored weight bytes, kept MACs).", ""]
    all_rows = rows
    for t in tg:
        rows = _view(all_rows, t["dtmm_variant"])   # this variant is "dtmm" below
        variant = "" if t["dtmm_variant"] == "dtmm" else f", DTMM = {t['dtmm_variant']}"
        md.append(f"### {t['model']}{variant} (dense int8 accuracy {t['dense_accuracy']:.4f}, {t['dense_flash']} B, "
                  f"M4 {t['dense_m4_instructions']:,} instructions)")
        md.append("")
        for name, b in t["equal_accuracy"].items():
            ms = [r for r in _measured(rows, t["model"]) if r["method"] == name]
            top = max(ms, key=lambda r: r["accuracy"], default=None)
            closest = ("" if top is None else f" (closest: budget {top['fraction']}, {top['accuracy']:.4f} = "
                       f"{(top['accuracy'] - t['dense_accuracy']) * 100:+.2f} pt, {top['m4_constants_bytes']} B)")
            md.append(f"- {name}: " + ("no model within 0.5 pt" + closest if b is None else
                                       f"budget {b['fraction']}, flash {b['flash']} B, M4 {b['m4_instructions']:,} "
                                       f"instructions, accuracy {b['accuracy']:.4f}"
                                       + (" (its tightest budget run: it may go smaller)"
                                          if b.get("at_tightest_budget_run") else "")))
        notes = []
        for c in t["checks"]:
            if c["met"] is None:
                md.append(f"- **{c['target']}**: not met, not measurable ({c['note']})")
                continue
            unit = "B" if "smaller" in c["target"] else "instructions"
            md.append(f"- **{c['target']}**: {'MET' if c['met'] else 'MISSED'} (measured {c['measured']:.1%}: DTMM "
                      f"{c['dtmm']:,} {unit} at budget {c['fractions'][0]} vs {c['other']} {c[c['other']]:,} {unit} "
                      f"at budget {c['fractions'][1]})"
                      + (f"; bounded by the budgets run: {', '.join(c['grid_limited'])} within 0.5 pt at its tightest"
                         if c.get("grid_limited") else ""))
            if not c["met"]:
                notes.append((c["target"], _row(rows, t["model"], "dtmm", c["fractions"][0]),
                              _row(rows, t["model"], c["other"], c["fractions"][1])))
        for e in t["equal_flash"]:
            if "dtmm" not in e:
                na = e.get("dtmm_not_achievable_smallest_flash")
                md.append(f"- budget {e['fraction']}: DTMM " + (f"not achievable (smallest {na} B)" if na else
                                                                   "not measured"))
                continue
            parts = [f"budget {e['fraction']}: DTMM {e['dtmm']:.4f} ({e['dtmm_flash']} B)"]
            for other in ("filter", "unstructured"):
                if other in e:
                    ok = e["dtmm_ge_filter"] if other == "filter" else e["dtmm_within_0.5pt_of_unstructured"]
                    goal = "DTMM >= filter" if other == "filter" else "within 0.5 pt"
                    parts.append(f"{other} {e[other]:.4f} ({e[other + '_flash']} B) -> {goal}: "
                                 f"{'MET' if ok else 'MISSED'} ({(e['dtmm'] - e[other]) * 100:+.2f} pt)")
                    if not ok:
                        notes.append((f"equal flash, budget {e['fraction']}: {goal}",
                                      _row(rows, t["model"], "dtmm", e["fraction"]),
                                      _row(rows, t["model"], other, e["fraction"])))
                elif f"{other}_not_achievable_smallest_flash" in e:
                    parts.append(f"{other} not achievable (smallest {e[other + '_not_achievable_smallest_flash']} B)")
            md.append("- " + "; ".join(parts))
        for what, a, b in notes:
            lines = _layer_note(a, b)
            if lines:
                md += ["", f"Per layer, {what} (MISSED):", ""] + lines
        md.append("")
    rows = all_rows
    if failed:
        md += ["## Failed jobs", ""] + [f"- `{json.dumps(f['inputs'], default=str)[:160]}`: {f['error']}"
                                       for f in failed]
    (out / "results.md").write_text("\n".join(md) + "\n")
    _plots([r for r in rows if not r.get("not_achievable")], out)


def _plots(rows, out):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    models = sorted({r["model"] for r in rows})
    if not models:
        return
    for xkey, xlabel, fname in (("m4_constants_bytes", "flash (stored constants, bytes)", "accuracy_vs_flash.png"),
                                ("m4_instructions", "Cortex-M4 instructions per inference", "accuracy_vs_m4_instructions.png"),
                                ("m55_instructions", "Cortex-M55 instructions per inference",
                                 "accuracy_vs_m55_instructions.png")):
        if not any(r.get(xkey) for r in rows):   # that board was not run
            continue
        fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
        for ax, model in zip(axes[0], models):
            methods = sorted({r["method"] for r in rows}, key=lambda m: (list(MARKERS).index(m.split("-")[0])
                                                                           if m.split("-")[0] in MARKERS else 9, m))
            for meth in methods:
                marker = MARKERS.get(meth, "v")
                pts = [(r[xkey], r["accuracy"]) for r in rows if r["model"] == model and r["method"] == meth
                       and r.get(xkey)]
                if not pts:
                    continue
                xs, ys = zip(*pts)
                line = ax.plot(xs, ys, marker if len(marker) == 1 else marker[1], linestyle="none", label=meth,
                               color=None if meth != "dense" else "k")
                front = _pareto(pts)
                if len(front) > 1 and meth != "dense":
                    fx, fy = zip(*front)
                    ax.plot(fx, fy, "-", color=line[0].get_color(), alpha=0.6)
            ax.set_title(model)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("int8 test accuracy")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
        fig.suptitle("Pareto fronts per method (lines); markers: every budget")
        fig.tight_layout()
        fig.savefig(out / fname, dpi=90)
        plt.close(fig)
