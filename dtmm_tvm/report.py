"""``dtmm report``: one self-contained HTML page about a compiled model.

Inputs are what the other commands write: an archive's metadata.json (``dtmm compile``), an
optional second archive to compare with (typically the ``--dense`` build) and an optional
per-layer profile (``dtmm run --profile --profile-json``). The page has no external resources:
the plots are inline SVG drawn here, so it opens anywhere, offline.

Plots: per-layer filterlet sparsity; flash (weights, index, other constants) of this build and
the compared one, in total and per layer; per-layer instructions on the target; the arena's
memory timeline (each buffer as a box from its first to its last use, at its offset).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from .errors import DTMMError

#: One colour per meaning, used consistently across the plots.
COLORS = {"sparsity": "#2a9d8f", "dtmm": "#e76f51", "dense": "#8d99ae", "index": "#f4a261",
          "other": "#cfd8dc", "instructions": "#264653", "arena": "#6a4c93"}
WIDTH = 920


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt(n) -> str:
    return "-" if n is None else f"{n:,}" if isinstance(n, int) else f"{n:,.1f}"


def _hbars(title: str, labels: list, series: list, unit: str, stacked: bool = False, percent: bool = False,
           notes: list | None = None) -> str:
    """Horizontal bar chart as SVG. ``series``: (name, values, colour); values may hold None;
    ``notes`` are appended to each row's value label."""
    label_w, row_h, top, right = 230, 22 if stacked or len(series) == 1 else 12 * len(series) + 8, 46, 190
    plot_w = WIDTH - label_w - right
    totals = [sum(v[i] or 0 for _, v, _ in series) for i in range(len(labels))] if stacked else \
        [max((v[i] or 0) for _, v, _ in series) for i in range(len(labels))]
    vmax = 100.0 if percent else max(totals + [1])
    height = top + row_h * len(labels) + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" role="img" '
           f'aria-label="{_esc(title)}">',
           f'<text x="0" y="18" font-size="15" font-weight="bold">{_esc(title)}</text>']
    x = label_w
    for name, _, color in series:  # legend
        out.append(f'<rect x="{x}" y="28" width="12" height="10" fill="{color}"/>'
                   f'<text x="{x + 16}" y="37" font-size="11">{_esc(name)}</text>')
        x += 24 + 7 * len(name)
    for i, label in enumerate(labels):
        y = top + i * row_h
        out.append(f'<text x="{label_w - 6}" y="{y + row_h / 2 + 4}" font-size="11" text-anchor="end">'
                   f'{_esc(str(label)[-34:])}</text>')
        offset = 0.0
        for k, (name, values, color) in enumerate(series):
            v = values[i]
            if v is None:
                continue
            w = plot_w * v / vmax
            if stacked:
                out.append(f'<rect x="{label_w + offset:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
                           f'fill="{color}"><title>{_esc(name)}: {_fmt(v)} {unit}</title></rect>')
                offset += w
            else:
                h = (row_h - 6) / len(series)
                out.append(f'<rect x="{label_w}" y="{y + 3 + k * h:.1f}" width="{w:.1f}" height="{h:.1f}" '
                           f'fill="{color}"><title>{_esc(name)}: {_fmt(v)} {unit}</title></rect>')
        value = totals[i]
        text = f"{value:.0f}%" if percent else f"{_fmt(value)} {unit}"
        if notes:
            text += f" {notes[i]}"
        end = label_w + plot_w * value / vmax
        out.append(f'<text x="{end + 4:.1f}" y="{y + row_h / 2 + 4}" font-size="11">{_esc(text)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _timeline(arena: dict, steps: list) -> str:
    """The arena over time: a box per buffer, x = operator steps it is live for, y = its bytes."""
    buffers = arena.get("buffers", [])
    size = max([arena.get("bytes", 0)] + [b["offset"] + b["bytes"] for b in buffers] + [1])
    n_steps = max([b.get("last_use", 0) for b in buffers] + [len(steps) - 1, 0]) + 1
    left, top, plot_w, plot_h = 70, 40, WIDTH - 90, 300
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{top + plot_h + 50}" role="img" '
           f'aria-label="arena memory timeline">',
           f'<text x="0" y="18" font-size="15" font-weight="bold">Arena memory timeline ({_fmt(arena.get("bytes", 0))} '
           f'bytes, {len(buffers)} buffers)</text>',
           f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>']
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - frac)
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{_fmt(int(size * frac))}</text>')
    for s in range(n_steps):
        x = left + plot_w * (s + 0.5) / n_steps
        out.append(f'<text x="{x:.1f}" y="{top + plot_h + 14}" font-size="10" text-anchor="middle">{s}</text>')
    out.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h + 32}" font-size="11" text-anchor="middle">'
               f'operator step (runner call order); y: arena offset in bytes</text>')
    for b in buffers:
        x0 = left + plot_w * b.get("first_use", 0) / n_steps
        x1 = left + plot_w * (b.get("last_use", 0) + 1) / n_steps
        y0 = top + plot_h * (1 - (b["offset"] + b["bytes"]) / size)
        h = max(plot_h * b["bytes"] / size, 1.0)
        out.append(f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{max(x1 - x0 - 1, 1):.1f}" height="{h:.1f}" '
                   f'fill="{COLORS["arena"]}" fill-opacity="0.55" stroke="{COLORS["arena"]}">'
                   f'<title>{_esc(b["name"])}: {_fmt(b["bytes"])} B at {_fmt(b["offset"])}, steps '
                   f'{b.get("first_use")}..{b.get("last_use")}</title></rect>')
        if h > 11 and x1 - x0 > 40:
            out.append(f'<text x="{x0 + 3:.1f}" y="{y0 + 11:.1f}" font-size="9" fill="white">{_esc(b["name"])}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _weights(meta: dict) -> dict:
    layers = meta.get("layers", [])
    stored = sum(layer.get("stored_weight_bytes") or 0 for layer in layers)
    index = sum(layer.get("index_bytes") or 0 for layer in layers)
    constants = int(meta.get("constants_bytes", 0))
    return {"weights": stored, "index": index, "other": max(constants - stored - index, 0), "constants": constants}


def _label(meta: dict, fallback: str) -> str:
    return f"{meta.get('mode') or fallback} ({meta.get('target') or '?'})"


def build_report(metadata: dict, *, compare: dict | None = None, profile: dict | None = None,
                 title: str | None = None) -> str:
    """The report page as HTML text."""
    model = metadata.get("model") or {}
    title = title or f"DTMM report: {model.get('name') or model.get('source') or 'model'}"
    sections = []
    convs = [layer for layer in metadata.get("layers", []) if layer.get("filterlet_sparsity") is not None]

    # ---- numbers ---------------------------------------------------------------------------
    builds = [("this build", metadata)] + ([("compared build", compare)] if compare else [])
    rows = []
    for name, meta in builds:
        w = _weights(meta)
        rows.append(f"<tr><td>{_esc(name)}</td><td>{_esc(_label(meta, '?'))}</td><td>{_fmt(w['constants'])}</td>"
                    f"<td>{_fmt(w['weights'])}</td><td>{_fmt(w['index'])}</td>"
                    f"<td>{_fmt(int(meta.get('arena', {}).get('bytes', 0)))}</td>"
                    f"<td>{len(meta.get('layers', []))}</td></tr>")
    summary = ('<table><tr><th>build</th><th>mode (target)</th><th>constants B</th><th>weights B</th>'
               '<th>index B</th><th>arena B</th><th>layers</th></tr>' + "".join(rows) + "</table>")
    if compare:
        a, b = _weights(metadata)["constants"], _weights(compare)["constants"]
        if b:
            summary += f'<p class="big">constants: {_fmt(a)} B vs {_fmt(b)} B = <b>{a / b:.2f}x</b></p>'
    if profile:
        summary += (f'<p class="big">instructions per inference on {_esc(profile.get("board"))}: '
                    f'<b>{_fmt(profile["total_instructions"])}</b> (layers: {_fmt(profile["layers_instructions"])})</p>')
    sections.append(("Summary", summary))

    # ---- plots -----------------------------------------------------------------------------
    if convs:
        sections.append(("Per-layer filterlet sparsity", _hbars(
            "Filterlet sparsity per conv layer (share of Cin-long filterlets that are all zero)",
            [layer["name"] for layer in convs],
            [("filterlet sparsity", [100.0 * layer["filterlet_sparsity"] for layer in convs], COLORS["sparsity"])],
            "%", percent=True)))
    flash_labels, weights, index, other = [], [], [], []
    for name, meta in builds:
        w = _weights(meta)
        flash_labels.append(_label(meta, name))
        weights.append(w["weights"])
        index.append(w["index"])
        other.append(w["other"])
    flash = _hbars("Model constants in flash: weights, filterlet index, other (bias, multipliers, ...)",
                   flash_labels, [("weights", weights, COLORS["dtmm"]), ("index", index, COLORS["index"]),
                                  ("other constants", other, COLORS["other"])], "B", stacked=True)
    weighted = [layer for layer in metadata.get("layers", []) if layer.get("dense_weight_bytes")]
    if weighted:
        flash += _hbars("Weight bytes per layer: dense vs as stored (+ index)",
                        [layer["name"] for layer in weighted],
                        [("dense", [layer["dense_weight_bytes"] for layer in weighted], COLORS["dense"]),
                         ("stored + index", [(layer.get("stored_weight_bytes") or 0) + (layer.get("index_bytes") or 0)
                                             for layer in weighted], COLORS["dtmm"])], "B")
    sections.append(("Flash breakdown", flash))
    if profile:
        prow = profile["rows"]
        sections.append(("Per-layer instructions", _hbars(
            f"Instructions per operator on {profile.get('board')} (QEMU -icount; % of the whole model)",
            [f"{r['index']} {r['layer']}" for r in prow],
            [("instructions", [r["instructions"] for r in prow], COLORS["instructions"])], "instr",
            notes=[f"({r['percent']:.1f}%)" for r in prow])))
    sections.append(("Arena", _timeline(metadata.get("arena", {}), metadata.get("runner_steps", []))))

    # ---- the per-layer table -----------------------------------------------------------------
    by_name = {r["layer"]: r for r in (profile or {}).get("rows", [])}
    table = ['<table><tr><th>layer</th><th>op</th><th>in</th><th>out</th><th>format</th><th>sparsity</th>'
             '<th>dense B</th><th>stored B</th><th>index B</th><th>instructions</th><th>%</th></tr>']
    for layer in metadata.get("layers", []):
        r = by_name.get(layer.get("name"), {})
        sp = layer.get("filterlet_sparsity")
        percent = f"{r['percent']:.1f}" if r else "-"
        table.append(
            f"<tr><td>{_esc(layer.get('name'))}</td><td>{_esc(layer.get('op'))}</td>"
            f"<td>{_esc('x'.join(map(str, layer.get('input_shape') or [])))}</td>"
            f"<td>{_esc('x'.join(map(str, layer.get('output_shape') or [])))}</td>"
            f"<td>{_esc(layer.get('format') or '-')}</td><td>{'-' if sp is None else f'{sp:.0%}'}</td>"
            f"<td>{_fmt(layer.get('dense_weight_bytes'))}</td><td>{_fmt(layer.get('stored_weight_bytes'))}</td>"
            f"<td>{_fmt(layer.get('index_bytes'))}</td><td>{_fmt(r.get('instructions'))}</td>"
            f"<td>{percent}</td></tr>")
    table.append("</table>")
    sections.append(("Layers", "\n".join(table)))

    body = "\n".join(f"<section><h2>{_esc(name)}</h2>\n{content}\n</section>" for name, content in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; max-width: {WIDTH + 40}px; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 17px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }}
table {{ border-collapse: collapse; font-size: 12px; }} td, th {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; }}
th {{ background: #f2f2f2; }} td:first-child {{ text-align: left; }} .big {{ font-size: 15px; }}
svg {{ display: block; margin: 8px 0 18px 0; }}
</style></head><body>
<h1>{_esc(title)}</h1>
<p>{_esc(model.get('source') or '')} &middot; target {_esc(metadata.get('target'))} &middot; mode {_esc(metadata.get('mode'))}
&middot; module tvmgen_{_esc(metadata.get('module_name', 'default'))} &middot; generated by dtmm report</p>
{body}
</body></html>
"""


def write_report(artifact, output, *, compare=None, profile=None, force: bool = False, progress=None) -> str:
    """Read the inputs, write the page atomically; returns the HTML. ``progress(stage)`` is
    called as ``"read"``, ``"render"`` and ``"write"`` start."""
    from .codegen import read_metadata
    from .errors import OutputExistsError

    output = Path(output)
    if output.exists() and not force:
        raise OutputExistsError(f"{output}: exists; pass --force to replace it")
    say = progress or (lambda stage: None)
    say("read")
    metadata = read_metadata(artifact)
    other = read_metadata(compare) if compare else None
    prof = None
    if profile:
        try:
            prof = json.loads(Path(profile).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise DTMMError(f"{profile}: cannot read the profile: {err}") from None
        if not isinstance(prof, dict) or "rows" not in prof or "total_instructions" not in prof:
            raise DTMMError(f"{profile}: not a profile written by 'dtmm run --profile --profile-json'")
        steps = metadata.get("runner_steps") or []
        if [r.get("function") for r in prof["rows"]] != [s.get("function") for s in steps]:
            raise DTMMError(f"{profile}: its operators are not those of {artifact}; profile this archive")
    say("render")
    text = build_report(metadata, compare=other, profile=prof)
    say("write")
    tmp = output.with_name(output.name + ".partial")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(output)
    return text
