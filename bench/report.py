"""results.md (tables) and results.png (plot) from the results dict of ``python -m bench``."""

from __future__ import annotations

from pathlib import Path

from .columns import COLUMN_LABEL, CORE_LABEL

COLORS = {"dense": "tab:blue", "dtmm": "tab:orange", "naive": "tab:green", "tvm": "tab:red"}
E2E_LABEL = {"dense": "dense (--dense)", "dtmm": "DTMM"}


def _m(v) -> str:
    return "-" if v is None else f"{v / 1e6:.3f} M"


def _n(v) -> str:
    return "-" if v is None else f"{v:,}"


def _kb(v) -> str:
    return "-" if v is None else f"{v / 1024:.1f} KB"


def _exact(rec: dict) -> str:
    if rec.get("exact"):
        return "bit-exact"
    if rec.get("max_abs_diff") is None:
        return "shape mismatch"
    return f"max diff {rec['max_abs_diff']} ({rec.get('values_differing', '?')} values)"


def _table(header: list, rows: list) -> list:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out + [""]


def _weights(rec: dict, column: str) -> str:
    if column == "tvm":
        return f"{rec['constants_bytes']:,} (float32)"
    return f"{rec['stored_weight_bytes']:,}"


def _zero_point_note(results: dict) -> list:
    """A note when our dense build's count differs between the paper models (same shape)."""
    from .reference import PAPER

    micro = results.get("micro", {})
    worst = 0.0
    for core in results.get("cores", []):
        counts = [micro[n]["runs"].get(core, {}).get("dense", {}).get("instructions")
                  for n in PAPER.values() if n in micro]
        counts = [c for c in counts if c]
        if len(counts) > 1:
            worst = max(worst, (max(counts) - min(counts)) / max(counts))
    if worst < 0.01:
        return []
    return [f"- Our dense build's count differs by up to {worst:.1%} between the four paper models "
            "although their shapes are equal: the kernels are generated per layer with its "
            "constants folded in, and the models' calibrated input zero points differ (listed with "
            "the models); a zero point of 0 drops the input-offset add. The naive loop takes its "
            "parameters at run time, like TFLM."]


def _spread(results: dict) -> float:
    worst = 0.0
    for kind in ("micro", "e2e"):
        for e in results.get(kind, {}).values():
            for runs in e["runs"].values():
                for r in runs.values():
                    v = r.get("instructions_per_inference") if r.get("ok") else None
                    if v and max(v) > 0:
                        worst = max(worst, (max(v) - min(v)) / max(v))
    return worst


def write_markdown(results: dict, path: Path) -> None:
    L = ["# DTMM for TVM: benchmark results", ""]
    L += [f"Generated {results['generated']} from commit `{results['git_commit']}` by "
          f"`{results['command'].strip()}` in {results.get('wall_s', '?')} s (2 workers).", ""]
    L += ["**How measured.** Every column is compiled by the same QEMU project template with the "
          "same arm-none-eabi-gcc flags (`-O2`, per-core flags below) and run bare-metal on QEMU. "
          "*Instructions* are guest instructions per inference from `-icount shift=7` and a "
          "hardware timer around `tvmgen_default_run`, minus an empty call (maximum over the "
          "inputs): they are instruction counts, not cycles (QEMU counts each MVE instruction and "
          "each low-overhead-loop iteration as one). Flash and RAM come from the linked ELF and the "
          "model's object files; stack is a painted-stack high-water mark. Every output is "
          "compared with TensorFlow Lite Micro's reference kernels on the host.", ""]
    L += ["Boards: " + "; ".join(f"{CORE_LABEL[c]} = `{b['board']}` (`{b.get('cflags', '')}`)"
                                 for c, b in results["boards"].items()), ""]
    L += ["Columns: **dense** = our compiler with `--dense`; **DTMM** = our compiler with the "
          "filterlet-sparse rewrite; **naive** = a plain C loop nest with TFLM's integer "
          "arithmetic and runtime layer parameters (`bench/naive/`); **TVM** = TVM's own lowering "
          "of the float-QDQ Relax import (LegalizeOps + FuseOps/FuseTIR, TOPI's default compute, no "
          "schedule) printed as C by `dtmm_tvm.codegen`: float32 arithmetic on the FPU (all three "
          "cores have one), so it is not bit-exact with TFLM (max diff reported). *Code* = text of "
          "the model's object files (kernels + runner); *weights+index* = stored conv/FC weights "
          "plus the filterlet index (for TVM: all float32 constants); *constants* = read-only "
          "data of the model's object files.", ""]

    micro = results.get("micro", {})
    if micro:
        L += ["## Microbenchmarks", ""]
        for name, e in micro.items():
            sp = f", filterlet sparsity {e['filterlet_sparsity']:.0%}" if "filterlet_sparsity" in e else ""
            L.append(f"- `{name}`: {e['description']}; {e['op']} {e['input_shape']} -> "
                     f"{e['output_shape']}, {e['macs']:,} MACs ({e['kept_macs']:,} kept){sp}, "
                     f"input zero point {e.get('input_zero_point', '?')}; "
                     f"{e['inputs']}")
        L.append("")
        for core in results["cores"]:
            L += [f"### {CORE_LABEL[core]}: instructions per inference (instructions per MAC)", ""]
            cols = [c for c in ("dense", "dtmm", "naive", "tvm") if c in results["columns"]]
            header = ["layer"] + [COLUMN_LABEL[c] for c in cols]
            if "dtmm" in cols:
                header.append("DTMM instr / kept MAC")
            if "dtmm" in cols and "naive" in cols:
                header.append("DTMM speed-up vs naive")
            if "dtmm" in cols and "dense" in cols:
                header.append("DTMM / dense")
            rows = []
            for name, e in micro.items():
                runs = e["runs"].get(core, {})
                row = [name]
                for c in cols:
                    r = runs.get(c)
                    row.append("failed" if not r or not r.get("ok") else
                               f"{_m(r['instructions'])} ({r['instr_per_mac']:.2f})")
                ok = {c: runs[c] for c in cols if runs.get(c, {}).get("ok")}
                if "dtmm" in cols:
                    row.append(f"{ok['dtmm']['instr_per_kept_mac']:.2f}" if "dtmm" in ok else "-")
                if "dtmm" in cols and "naive" in cols:
                    row.append(f"{ok['naive']['instructions'] / ok['dtmm']['instructions']:.2f}x"
                               if "dtmm" in ok and "naive" in ok else "-")
                if "dtmm" in cols and "dense" in cols:
                    row.append(f"{ok['dtmm']['instructions'] / ok['dense']['instructions']:.3f}"
                               if "dtmm" in ok and "dense" in ok else "-")
                rows.append(row)
            L += _table(header, rows)
            L += [f"Details, {CORE_LABEL[core]}:", ""]
            header = ["layer", "build", "instructions", "instr/MAC", "instr/kept MAC",
                      "model code (B)", "weights+index (B)", "constants (B)", "RAM (B)",
                      "vs TFLM"]
            rows = []
            for name, e in micro.items():
                for c in cols:
                    r = e["runs"].get(core, {}).get(c)
                    if not r:
                        continue
                    if not r.get("ok"):
                        rows.append([name, COLUMN_LABEL[c], "failed: " + r.get("error", "?")[:150],
                                     "", "", "", "", "", "", ""])
                        continue
                    rows.append([name, COLUMN_LABEL[c], _n(r["instructions"]),
                                 f"{r['instr_per_mac']:.3f}",
                                 f"{r.get('instr_per_kept_mac', 0):.3f}", _n(r["flash"]["model_code"]),
                                 _weights(r, c), _n(r["flash"]["model_constants"]),
                                 _n(r["ram"]["total"]), _exact(r)])
            L += _table(header, rows)

    e2e = results.get("e2e", {})
    if e2e:
        L += ["## End to end", ""]
        for name, e in e2e.items():
            L.append(f"- `{name}` (`{e['model']}`): {e['description']}; inputs: {e['inputs']}")
        L.append("")
        header = ["model", "core", "build", "instructions", "flash total", "model code",
                  "model constants", "RAM total", "arena", "static (data+bss)", "stack high-water",
                  "vs TFLM"]
        rows = []
        for name, e in e2e.items():
            for core in results["cores"]:
                for mode in ("dense", "dtmm"):
                    r = e["runs"].get(core, {}).get(mode)
                    if not r:
                        continue
                    if not r.get("ok"):
                        rows.append([name, CORE_LABEL[core], E2E_LABEL[mode],
                                     "failed: " + r.get("error", "?")[:150]] + [""] * 8)
                        continue
                    rows.append([name, CORE_LABEL[core], E2E_LABEL[mode], _m(r["instructions"]),
                                 _n(r["flash"]["total"]), _n(r["flash"]["model_code"]),
                                 _n(r["flash"]["model_constants"]), _n(r["ram"]["total"]),
                                 _n(r["ram"]["arena"]), _n(r["ram"]["static"]),
                                 _n(r["ram"]["stack_high_water"]), _exact(r)])
        L += _table(header, rows)
        arenas = [(n, e["tflm_host_arena"]) for n, e in e2e.items() if e.get("tflm_host_arena")]
        if arenas:
            L += ["TFLM's own arena for the same models, measured on the host with `tflite-micro`'s "
                  "RecordingMicroAllocator (a 64-bit host: its bookkeeping, the arena *tail*, is "
                  "larger than on a Cortex-M; the *head* holds the activations): " + "; ".join(
                      f"`{n}` {a.get('total', 0):,} B (head {a.get('head', 0):,} B, tail "
                      f"{a.get('tail', 0):,} B)" for n, a in arenas) + ".", ""]
        L += ["Flash and RAM in bytes. *Flash total* is the whole ELF (harness, startup, libc "
              "pieces included); *model code* / *model constants* are the model's own object files. "
              "*Static* is .data + .bss of the whole program (arena and the harness's input/output "
              "buffers included); *RAM total* = static + stack high-water.", ""]

    from .refmodels import write_markdown_sections

    L += write_markdown_sections(results)
    L += ["## Reference figures (NOT measured here)", "",
          "Quoted from issue 3 for comparison only; they come from other setups (CMSIS-NN, TFLM, "
          "the DTMM authors' Corstone-300 measurements in cycles) and were not reproduced by this "
          "benchmark.", ""]
    L += _table(["figure (reference, not measured here)", "core", "value", "source"],
                [[r["what"], r["core"].upper(), f"{r['value']:g} {r['unit']}", r["source"]]
                 for r in results.get("reference", [])])
    L += ["## Targets", ""]
    L += _table(["target", "limit", "ours (measured)", "status", "note"],
                [[t["target"], t["limit_text"], t["ours_text"], t["status"], t["note"]]
                 for t in results.get("targets", [])])
    L += ["## Notes and what is not measured here", ""]
    L += ["- The reference figures above are quoted, not reproduced: CMSIS-NN and TFLM are not "
          "built for Cortex-M here, and the DTMM authors' figures are PMU cycle counts on "
          "Arm's Corstone-300 model, while ours are QEMU instruction counts (QEMU is not cycle "
          "accurate). Compare orders of magnitude, not the last digit.",
          "- The ResNet-8 code-size target (<= 1/3 of TFLM's) cannot be evaluated: the issue gives "
          "no TFLM code size and TFLM is not cross-built here; our model code is reported.",
          "- The ResNet-8 RAM target is checked against our whole-program RAM (static .data+.bss, "
          "which includes the harness's input/output buffers, plus the stack high-water); the "
          "arena alone is in the end-to-end table.",
          *_zero_point_note(results),
          "- The TVM column computes in float32 (dequantize, float conv, float requantize) with "
          "TOPI's generic compute and no schedule: it needs the FPU, which all three cores have "
          "(`-mfloat-abi=hard`), and it keeps float32 weights (4x the flash).",
          f"- Instruction counts depend only slightly on the input values (requantization and "
          f"clamp branches): over the inputs of each run they differ by at most "
          f"{_spread(results):.3%}; the maximum is reported. Inputs are seeded, so re-runs on the "
          f"same code give the same numbers."]
    failed = [f"{kind} `{name}` {core} {col}: {r.get('error', '?')}"
              for kind in ("micro", "e2e") for name, e in results.get(kind, {}).items()
              for core, runs in e["runs"].items() for col, r in runs.items() if not r.get("ok")]
    if failed:
        L += ["- **Failed builds/runs** (no figures): "] + [f"  - {f}" for f in failed]
    L.append("")
    path.write_text("\n".join(L))


def write_plot(results: dict, path: Path):
    """Paper 3x3 conv: instructions per build and sparsity, one panel per core (log scale)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from .reference import PAPER

    micro = results.get("micro", {})
    sps = [sp for sp, n in PAPER.items() if n in micro]
    if not sps:
        return None
    cores = results["cores"]
    cols = [c for c in ("dense", "dtmm", "naive", "tvm") if c in results["columns"]]
    fig, axes = plt.subplots(1, len(cores), figsize=(4.6 * len(cores), 4.4), squeeze=False,
                             sharey=True)
    width = 0.8 / max(1, len(cols))
    refs = {"m4": [("naive (issue)", 58.8e6), ("CMSIS-NN", 16.6e6)],
            "m55": [("naive (issue)", 50.0e6), ("CMSIS-NN", 1.95e6)]}
    targets = {"m4": {50: 9.0, 75: 5.0, 90: 2.5}, "m55": {0: 2.0, 50: 1.45, 75: 0.85, 90: 0.50}}
    for ax, core in zip(axes[0], cores):
        for i, c in enumerate(cols):
            ys = []
            for sp in sps:
                r = micro[PAPER[sp]]["runs"].get(core, {}).get(c)
                ys.append(r["instructions"] / 1e6 if r and r.get("ok") else float("nan"))
            ax.bar([k + (i - (len(cols) - 1) / 2) * width for k in range(len(sps))], ys, width,
                   label=COLUMN_LABEL[c], color=COLORS[c])
        if core == "m55":
            ax.plot(range(len(sps)), [{0: 3.13, 50: 1.76, 75: 1.08, 90: 0.64}[s] for s in sps],
                    "k^--", ms=5, label="DTMM authors' MVE kernel (reference, not measured)")
        t = targets.get(core, {})
        if t:
            ax.plot([k for k, s in enumerate(sps) if s in t], [t[s] for s in sps if s in t], "_",
                    color="black", ms=22, mew=2, label="our DTMM target")
        for label, v in refs.get(core, []):
            ax.axhline(v / 1e6, ls=":", color="gray")
            ax.text(len(sps) - 0.55, v / 1e6, f"{label} (ref.)", fontsize=7, va="center",
                    ha="right", color="dimgray",
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
        ax.set_yscale("log")
        ax.set_ylim(0.3, 200)
        ax.set_xticks(range(len(sps)))
        ax.set_xticklabels([f"{s}%" for s in sps])
        ax.set_xlabel("filterlet sparsity")
        ax.set_title(f"{CORE_LABEL[core]}: 3x3 conv 16x16x64->64", fontsize=10)
        ax.grid(axis="y", alpha=0.3, which="both")
    axes[0][0].set_ylabel("million instructions / inference (QEMU -icount)")
    handles = {}
    for ax in axes[0]:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in handles:
                handles[l] = h
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=4, fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
