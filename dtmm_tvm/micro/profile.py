"""Per-operator profile on the target: the runner's operator calls joined with metadata.json.

A profiled build (``-DDTMM_PROFILE``, ``dtmm run --profile``) reads the board's timer before each
operator call of the runner and after the last; the harness turns the differences into
instructions per operator (minus the cost of a timer mark). :func:`profile_rows` joins them with
``runner_steps`` and ``layers`` of metadata.json: op, shapes, sparsity, weight format and bytes,
and where the operator's output lives in the arena.
"""

from __future__ import annotations

import json

from ..errors import DTMMError


def profile_rows(metadata: dict, result) -> dict:
    """The profile of the most expensive inference of ``result``.

    Returns
    -------
    dict
        ``{"board", "total_instructions", "layers_instructions", "rows": [...]}``; each row has
        ``index, layer, function, op, input_shape, output_shape, filterlet_sparsity, format,
        instructions, percent, weight_bytes, index_bytes, arena_offset, arena_bytes, scratch_bytes``.
    """
    steps = metadata.get("runner_steps")
    if not steps:
        raise DTMMError("the artifact has no runner_steps in metadata.json (compiled by an older dtmm?): "
                        "recompile it to profile per operator")
    if not result.op_instructions:
        raise DTMMError("the run has no per-operator counts: build with profile=True (dtmm run --profile)")
    which = max(range(result.inferences), key=lambda i: result.instructions_per_inference[i])
    ops = result.op_instructions[which]
    if len(ops) != len(steps):
        raise DTMMError(f"the board reported {len(ops)} operators, metadata.json has {len(steps)} runner steps")
    total = result.instructions_per_inference[which]
    layers = {layer.get("name"): layer for layer in metadata.get("layers", [])}
    rows = []
    for step, count in zip(steps, ops):
        layer = next((layers[n] for n in step.get("layers", []) if n in layers), {})
        out = (step.get("outputs") or [{}])[0]
        arena = out.get("arena") or {}
        rows.append({
            "index": step["index"],
            "layer": layer.get("name") or step["function"],
            # The model's own name of the layer (TFLite joins fused ops' names with ";").
            "model_layer": (layer.get("model_layer") or "").split(";")[0] or None,
            "function": step["function"],
            "op": layer.get("op") or step["function"].rstrip("0123456789").rstrip("_"),
            "input_shape": layer.get("input_shape"),
            "output_shape": layer.get("output_shape") or out.get("shape"),
            "filterlet_sparsity": layer.get("filterlet_sparsity"),
            "format": layer.get("format"),
            "instructions": count,
            "percent": 100.0 * count / total if total else 0.0,
            "weight_bytes": layer.get("stored_weight_bytes"),
            "dense_weight_bytes": layer.get("dense_weight_bytes"),
            "index_bytes": layer.get("index_bytes"),
            "arena_offset": arena.get("offset"),
            "arena_bytes": arena.get("bytes"),
            "output_to": out.get("output"),
            "scratch_bytes": step.get("scratch_bytes", 0),
        })
    return {"board": result.board, "inference": which, "total_instructions": total,
            "layers_instructions": sum(ops), "rows": rows}


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape) if shape else "-"


def format_profile(profile: dict) -> str:
    """The profile as a text table (what ``dtmm run --profile`` prints)."""
    head = (f"{'#':>2} {'layer':20} {'model layer':26} {'in':>11} {'out':>11} {'spars':>5} {'format':17} "
            f"{'instructions':>12} {'%':>5} {'weights':>7} {'index':>5} {'arena@':>6} {'bytes':>5}")
    lines = [head]
    for r in profile["rows"]:
        sparsity = f"{r['filterlet_sparsity']:.0%}" if r["filterlet_sparsity"] is not None else "-"
        where = (str(r["arena_offset"]), str(r["arena_bytes"])) if r["arena_offset"] is not None \
            else ("out", "-")
        lines.append(f"{r['index']:>2} {r['layer'][:20]:20} {(r['model_layer'] or '-')[-26:]:26} {_shape(r['input_shape']):>11} "
                     f"{_shape(r['output_shape']):>11} {sparsity:>5} {(r['format'] or '-')[:17]:17} "
                     f"{r['instructions']:>12} {r['percent']:5.1f} {r['weight_bytes'] if r['weight_bytes'] is not None else '-':>7} "
                     f"{r['index_bytes'] if r['index_bytes'] is not None else '-':>5} {where[0]:>6} {where[1]:>5}")
    total, layers = profile["total_instructions"], profile["layers_instructions"]
    lines.append(f"layers {layers} of {total} instructions per inference "
                 f"({100.0 * layers / total if total else 0:.2f}%; the rest is the runner and the timer marks)")
    return "\n".join(lines)


def save_profile(profile: dict, path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(profile, f, indent=2)
        f.write("\n")
