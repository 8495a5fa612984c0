"""The experiment's report from its JSON lines: ``results.md`` (table, issue-9 targets, per-layer
notes where a target is missed), ``summary.json`` (one row per model x method x budget) and the
plots (accuracy vs flash, accuracy vs M4 instructions, with each method's Pareto front)."""

from __future__ import annotations

import json
from pathlib import Path

COMMAND = "python -m bench.pruning   # from the repository root, with the venv's python"
MARKERS = {"dense": "k*", "dtmm": "o", "filter": "s", "unstructured": "^", "pattern": "D"}


def rows_of(records: list) -> list:
    """One row per pruned model: prune figures joined with each board's measurement."""
    prune = {}
    measure = {}
    for r in records:
        if r.get("status") != "ok":
            continue
        if r["fn"].endswith("prune_job"):
            prune[r["result"]["tflite_sha256"]] = r
        elif r["fn"].endswith("measure_job"):
            key = (r["inputs"]["tflite_sha256"], r["result"]["target"])
            measure[key] = r   # the last measurement of a model on a board wins (newest code)
    rows = []
    for sha, r in prune.items():
        res = r["result"]
        row = {"model": res["model"], "method": res["method"], "fraction": res["fraction"],
               "accuracy": res["accuracy"]["int8_accuracy"], "float_accuracy": res["accuracy"].get("float"),
               "tflm_bit_exact": res["accuracy"]["tflm_bit_exact"], "budget_note": res.get("budget_note"),
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
    rows.sort(key=lambda r: (r["model"], order.get(r["method"], 9), -(r["fraction"] or 1.0)))
    return rows


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


def targets(rows: list) -> list:
    """The issue-9 targets per model, measured (met or not, by how much)."""
    out = []
    for model in sorted({r["model"] for r in rows}):
        mr = [r for r in rows if r["model"] == model and "m4_constants_bytes" in r]
        dense = next((r for r in mr if r["method"] == "dense"), None)
        if dense is None:
            continue
        floor = dense["accuracy"] - 0.005
        best = {}
        for meth in ("dtmm", "filter", "unstructured", "pattern"):
            ok = [r for r in mr if r["method"] == meth and r["accuracy"] >= floor]
            best[meth] = (min(ok, key=lambda r: r["m4_constants_bytes"]) if ok else None)
        d = best["dtmm"]
        t = {"model": model, "dense_accuracy": dense["accuracy"], "accuracy_floor": floor,
             "equal_accuracy": {m: (None if b is None else {"fraction": b["fraction"], "flash": b["m4_constants_bytes"],
                                                           "m4_instructions": b["m4_instructions"],
                                                           "accuracy": b["accuracy"]}) for m, b in best.items()}}
        checks = []
        for other, goal, what in (("filter", 0.35, "flash"), ("pattern", 0.10, "flash"), ("pattern", 0.50, "m4")):
            o = best[other]
            key = "m4_constants_bytes" if what == "flash" else "m4_instructions"
            label = (f"DTMM >= {goal:.0%} smaller than {other}" if what == "flash"
                     else f"DTMM >= {goal:.0%} fewer M4 instructions than {other}")
            if d is None or o is None:
                checks.append({"target": label, "met": None,
                               "note": ("no DTMM" if d is None else f"no {other}") + " point within 0.5 pt of dense"})
                continue
            saving = 1 - d[key] / o[key]
            checks.append({"target": label, "met": saving >= goal, "measured": round(saving, 4),
                           "dtmm": d[key], other: o[key], "fractions": [d["fraction"], o["fraction"]]})
        eq = []
        for f in sorted({r["fraction"] for r in mr if r["fraction"]}, reverse=True):
            at = {r["method"]: r for r in mr if r["fraction"] == f}
            if "dtmm" not in at:
                continue
            dt = at["dtmm"]
            e = {"fraction": f, "dtmm": dt["accuracy"], "dtmm_flash": dt["m4_constants_bytes"]}
            for other in ("filter", "unstructured"):
                if other in at:
                    e[other] = at[other]["accuracy"]
                    e[f"{other}_flash"] = at[other]["m4_constants_bytes"]
            if "filter" in e:
                e["dtmm_ge_filter"] = dt["accuracy"] >= e["filter"]
            if "unstructured" in e:
                e["dtmm_within_0.5pt_of_unstructured"] = dt["accuracy"] >= e["unstructured"] - 0.005
            eq.append(e)
        t["checks"] = checks
        t["equal_flash"] = eq
        out.append(t)
    return out


def _layer_note(rows, model, meth_a, meth_b, fraction):
    """Per-layer M4 formats / bytes of two methods' models at one budget (why a target is missed)."""
    a = next((r for r in rows if r["model"] == model and r["method"] == meth_a and r["fraction"] == fraction), None)
    b = next((r for r in rows if r["model"] == model and r["method"] == meth_b and r["fraction"] == fraction), None)
    if not a or not b or "m4_layers" not in a or "m4_layers" not in b:
        return []
    lines = [f"| layer | {meth_a} format | {meth_a} bytes | {meth_b} format | {meth_b} bytes |", "|---|---|---:|---|---:|"]
    for la, lb in zip(a["m4_layers"], b["m4_layers"]):
        if la.get("stored_weight_bytes") is None and lb.get("stored_weight_bytes") is None:
            continue
        lines.append(f"| {la.get('op')} `{str(la.get('name'))[:40]}` | {la.get('format')} | {la.get('stored_weight_bytes')} "
                     f"| {lb.get('format')} | {lb.get('stored_weight_bytes')} |")
    return lines


def write_report(records: list, out: Path, code_version: str | None = None) -> None:
    out = Path(out)
    rows = rows_of(records)
    failed = [r for r in records if r.get("status") == "failed"]
    slim = [{k: v for k, v in r.items() if not k.endswith("_layers") and k not in ("prune_layers", "predicted")}
            for r in rows]
    tg = targets(rows)
    (out / "summary.json").write_text(json.dumps({"rows": slim, "targets": tg, "code_version": code_version,
                                                  "failed_jobs": [{"inputs": f["inputs"], "error": f["error"]}
                                                                  for f in failed]}, indent=1, default=str))
    md = ["# Pruning methods on the same compiler and boards (issue 9)", "",
          f"Regenerate: `{COMMAND}` (resumes; `--report-only` rewrites this file from `results.jsonl`).", "",
          "Accuracy: int8 model on the 10,000 Fashion-MNIST test images, TFLite builtin int8 kernels, checked "
          "bit-exact against TFLM on the first 200 test images (column *=TFLM*). Flash: the compiled artifact's "
          "stored constants (weights + sparse index + requantization), `dtmm compile --target ...` default build. "
          "Instructions: one inference on QEMU `-icount` (M4: mps2-an386, M55: mps3-an547). RAM: the artifact's "
          "activation arena (peak SRAM). Budget: fraction of the dense model's predicted flash; *met* is checked "
          "on the M4 artifact.", ""]
    md += ["| model | method | budget | int8 acc | =TFLM | flash M4 B | budget B | met | M4 instr | M55 instr | "
           "M55 flash B | RAM B | board = TFLM |", "|---|---|---:|---:|:-:|---:|---:|:-:|---:|---:|---:|---:|:-:|"]
    for r in rows:
        met = r.get("budget_met_on_artifact")
        bx = [r.get("m4_bit_exact_vs_tflm"), r.get("m55_bit_exact_vs_tflm")]
        md.append(f"| {r['model']} | {r['method']} | {_fmt(r['fraction'])} | {r['accuracy']:.4f} | "
                  f"{'yes' if r['tflm_bit_exact'] else 'NO'} | {_fmt(r.get('m4_constants_bytes'))} | "
                  f"{_fmt(r['budget_flash_bytes'])} | {'—' if met is None else ('yes' if met else 'no')}"
                  f"{'*' if r.get('budget_note') else ''} | {_fmt(r.get('m4_instructions'), ',')} | "
                  f"{_fmt(r.get('m55_instructions'), ',')} | {_fmt(r.get('m55_constants_bytes'))} | "
                  f"{_fmt(r.get('m4_arena_bytes'))} | "
                  f"{'/'.join('—' if b is None else ('yes' if b else 'NO') for b in bx)} |")
    notes = sorted({r["budget_note"].split(":")[0] for r in rows if r.get("budget_note")})
    if notes:
        md += ["", "\\* (results recorded before budgets were enforced for the baselines) flash budget applied as a sparsity ratio (the cost model had no format for that sparsity "
               "on this build); see `budget_note` in `summary.json`:"] + [f"- {n}" for n in notes]
    md += ["", "## Targets (issue 9)", "",
           "*Equal accuracy*: each method's smallest M4 flash among its models within 0.5 pt of the dense int8 "
           "model's accuracy. *Equal flash*: the same flash budget.", ""]
    for t in tg:
        md.append(f"### {t['model']} (dense int8 accuracy {t['dense_accuracy']:.4f})")
        md.append("")
        for name, b in t["equal_accuracy"].items():
            md.append(f"- {name}: " + ("no model within 0.5 pt" if b is None else
                                       f"budget {b['fraction']}, flash {b['flash']} B, M4 {b['m4_instructions']:,} "
                                       f"instructions, accuracy {b['accuracy']:.4f}"))
        for c in t["checks"]:
            if c["met"] is None:
                md.append(f"- **{c['target']}**: not measurable ({c['note']})")
            else:
                md.append(f"- **{c['target']}**: {'MET' if c['met'] else 'MISSED'} (measured {c['measured']:.1%})")
        for e in t["equal_flash"]:
            parts = [f"budget {e['fraction']}: DTMM {e['dtmm']:.4f} ({e['dtmm_flash']} B)"]
            if "filter" in e:
                parts.append(f"filter {e['filter']:.4f} ({e['filter_flash']} B) -> DTMM >= filter: "
                             f"{'MET' if e['dtmm_ge_filter'] else 'MISSED'}")
            if "unstructured" in e:
                parts.append(f"unstructured {e['unstructured']:.4f} ({e['unstructured_flash']} B) -> within 0.5 pt: "
                             f"{'MET' if e['dtmm_within_0.5pt_of_unstructured'] else 'MISSED'}")
            md.append("- " + "; ".join(parts))
        tight = min((e["fraction"] for e in t["equal_flash"]), default=None)
        missed = [c for c in t["checks"] if c["met"] is False]
        if tight is not None and missed:
            md += ["", f"Per layer at the tightest budget ({tight}), M4 artifact:", ""]
            for other in sorted({"filter" if "filter" in c["target"] else "pattern" for c in missed}):
                md += _layer_note(rows, t["model"], "dtmm", other, tight) + [""]
        md.append("")
    if failed:
        md += ["## Failed jobs", ""] + [f"- `{json.dumps(f['inputs'], default=str)[:160]}`: {f['error']}"
                                       for f in failed]
    (out / "results.md").write_text("\n".join(md) + "\n")
    _plots(rows, out)


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
        fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
        for ax, model in zip(axes[0], models):
            for meth, marker in MARKERS.items():
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
            ax.legend(fontsize=8)
        fig.suptitle("Pareto fronts per method (lines); markers: every budget")
        fig.tight_layout()
        fig.savefig(out / fname, dpi=90)
        plt.close(fig)
