"""``dtmm inspect MODEL``: per-layer filterlet sparsity and dense vs packed weight bytes.

``dtmm inspect ARTIFACT.tar`` (a compiled artifact): per conv the weight format the compiler
chose and why (``--optimize``, predicted instructions and bytes of every candidate)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("inspect", help="report per-layer filterlet sparsity and storage of a model")
    parser.add_argument("model", help="the .tflite or .onnx model, or a compiled artifact (.tar: the weight "
                                      "formats chosen per conv and why)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=run)


def conv_weights(model_path: str) -> dict[str, np.ndarray]:
    """The OHWI weights of every CONV_2D of a TFLite model, or every Conv of an ONNX model."""
    from ..frontend.loader import load_model

    model = load_model(model_path)
    weights = {}
    if model.tflite is not None:
        for op in model.tflite.operators:
            if op.opcode == "CONV_2D":
                weights[model.tflite.layer_name(op)] = model.tflite.tensor(op.inputs[1]).data
    else:
        import onnx
        from onnx import numpy_helper

        graph = onnx.load_from_string(model.raw).graph
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        producers = {out: node for node in graph.node for out in node.output}
        for node in graph.node:
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            if node.op_type != "Conv" or group != 1:
                continue
            name = node.input[1]
            if name not in inits and name in producers and producers[name].op_type == "DequantizeLinear":
                name = producers[name].input[0]  # QDQ model: the int8 weights (zeros stay zeros)
            if name in inits:
                weights[node.name or node.output[0]] = inits[name].transpose(0, 2, 3, 1)  # OIHW -> OHWI
    return weights


def run(args) -> int:
    from ..sparsity import storage_report

    if str(args.model).endswith(".tar") or Path(args.model).is_dir():
        return _inspect_artifact(args)

    weights = conv_weights(args.model)
    rows = storage_report(weights)
    _add_pattern_bytes(rows, weights)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'layer':40s} {'shape (OHWI)':>16s} {'filterlet':>9s} {'filter':>7s} {'dense B':>8s} {'packed B':>9s} {'pattern B':>10s}")
    for row in rows:
        packed = row["packed_bytes"] if row["packable"] else "n/a"
        print(f"{row['layer'][:40]:40s} {'x'.join(map(str, row['weight_shape'])):>16s} "
              f"{row['filterlet_sparsity']:9.1%} {row['filter_sparsity']:7.1%} {row['dense_bytes']:8d} {packed!s:>9s} "
              f"{row['pattern_bytes'] if row['pattern_bytes'] is not None else 'n/a'!s:>10s}")
    return 0


def _add_pattern_bytes(rows: list, weights: dict) -> None:
    """Per layer: bytes in the pattern-pruning baseline's format (None when the weights do not
    fit it; ``pattern_reason`` says why) and its pattern count."""
    from ..sparsity.pattern import detect_patterns, pattern_bytes, why_not_pattern

    for row in rows:
        weight = np.asarray(weights[row["layer"]])
        found = detect_patterns(weight) if weight.ndim == 4 else None
        row["pattern_bytes"] = (pattern_bytes(weight.shape, found.kept_kernels, len(found.supports))
                                if found is not None else None)
        row["patterns"] = len(found.supports) if found is not None else None
        if found is None:
            row["pattern_reason"] = why_not_pattern(weight) if weight.ndim == 4 else "not a 4-D conv weight"


def _inspect_artifact(args) -> int:
    """The weight-format decisions recorded in a compiled artifact's metadata.json."""
    from ..codegen.mlf import read_metadata

    meta = read_metadata(args.model)
    rows = [dict(layer=l.get("model_layer", l["name"]), format=l.get("format", "dense"), **l["format_choice"])
            for l in meta.get("layers", []) if "format_choice" in l]
    if args.json:
        print(json.dumps({"target": meta.get("target"), "optimize": meta.get("optimize"), "layers": rows}, indent=2))
        return 0
    print(f"{args.model}: {meta.get('target')}, mode {meta.get('mode')}, optimize {meta.get('optimize', '-')}")
    if not rows:
        print("  no pruned conv above the threshold: every conv is dense")
    for row in rows:
        print(f"  {row['layer']}: {row['chosen']} - {row['reason']}")
        pred = row.get("predicted_instructions", {})
        for fmt, nbytes in row["bytes"].items():
            instr = f"{pred[fmt]:>12,} instr" if fmt in pred else " " * 18
            print(f"      {'*' if fmt == row['chosen'] else ' '} {fmt:18s} {instr} {nbytes:>9,} B")
    return 0
