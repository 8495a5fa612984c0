"""``dtmm inspect MODEL``: per-layer filterlet sparsity and dense vs packed weight bytes."""

from __future__ import annotations

import json

import numpy as np


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("inspect", help="report per-layer filterlet sparsity and storage of a model")
    parser.add_argument("model", help="the .tflite or .onnx model")
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

    rows = storage_report(conv_weights(args.model))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'layer':40s} {'shape (OHWI)':>16s} {'filterlet':>9s} {'filter':>7s} {'dense B':>8s} {'packed B':>9s}")
    for row in rows:
        packed = row["packed_bytes"] if row["packable"] else "n/a"
        print(f"{row['layer'][:40]:40s} {'x'.join(map(str, row['weight_shape'])):>16s} "
              f"{row['filterlet_sparsity']:9.1%} {row['filter_sparsity']:7.1%} {row['dense_bytes']:8d} {packed!s:>9s}")
    return 0
