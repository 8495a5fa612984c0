"""Whole-model prediction from a compiled artifact's ``metadata.json``: the cost model's
instructions for every operator the runner calls, in the runner's order, so that a prediction
can be put next to ``dtmm run --profile``'s measured rows (``bench/prune_targets.py`` does).

Convs use the prediction the compiler recorded when it chose their format (``format_choice``:
exact kept-filterlet runs of the mask); dense convs, depthwise convs, fully connected, pooling,
mean, softmax and add are priced from their recorded shapes. Operators the cost model does not
price (quantize, reshape copies, ...) are listed as unpriced, never guessed.
"""

from __future__ import annotations

import math

from . import (CostModelError, ConvShape, predict_add, predict_conv_formats, predict_depthwise, predict_fc,
               predict_mean, predict_pool, predict_softmax)


def _conv_shape(layer: dict, depthwise: bool = False) -> ConvShape:
    _, h, w, cin = layer["input_shape"]
    cout = layer["output_shape"][3]
    kh, kw = layer["kernel"]
    return ConvShape(int(h), int(w), int(cin), int(cout), int(kh), int(kw), tuple(layer["strides"]),
                     tuple(layer["padding"]), depthwise=depthwise)


def predict_layer(layer: dict, target: str) -> int | None:
    """Predicted instructions of one metadata.json layer on ``target``; None if not priced."""
    op = layer.get("op")
    if op == "conv2d":
        choice = layer.get("format_choice") or {}
        fmt = layer.get("format", "dense")
        predicted = choice.get("predicted_instructions") or {}
        if fmt in predicted and choice.get("cost_model") == target:
            return int(predicted[fmt])
        if fmt != "dense":
            return None  # a filterlet conv without its recorded mask prediction
        return int(predict_conv_formats(_conv_shape(layer), None, target)["dense"][0])
    if op == "depthwise_conv2d":
        return int(predict_depthwise(_conv_shape(layer, True), target)[0])
    if op == "fully_connected":
        return int(predict_fc(int(layer["input_shape"][-1]), int(layer["output_shape"][-1]), target)[0])
    if op in ("max_pool2d", "avg_pool2d"):
        out = layer["output_shape"]
        return int(predict_pool(op, (int(out[1]), int(out[2])), int(out[3]), tuple(layer["kernel"]), target))
    if op == "mean":
        _, h, w, c = layer["input_shape"]
        return int(predict_mean(int(h), int(w), int(c), target))
    if op == "softmax":
        shape = layer["input_shape"]
        return int(predict_softmax(int(shape[-1]), math.prod(int(d) for d in shape[:-1]), target))
    if op == "add":
        return int(predict_add(math.prod(int(d) for d in layer["output_shape"]), target))
    return None


def predict_artifact(metadata: dict, target: str | None = None) -> dict:
    """``{"instructions": total, "layers": [{function, op, instructions}], "unpriced": [...]}``
    for the artifact's runner steps (``target`` defaults to the artifact's)."""
    target = target or metadata["target"]
    steps = metadata.get("runner_steps")
    if not steps:
        raise CostModelError("metadata.json has no runner_steps (compiled by an older dtmm?): recompile it")
    layers = {layer.get("name"): layer for layer in metadata.get("layers", [])}
    rows, unpriced, total = [], [], 0
    for step in steps:
        layer = next((layers[n] for n in step.get("layers", []) if n in layers), {})
        op = layer.get("op") or step["function"].rstrip("0123456789").rstrip("_")
        try:
            instr = predict_layer(dict(layer, op=op), target) if layer else None
        except (KeyError, TypeError, ValueError):
            instr = None
        if instr is None:
            unpriced.append(step["function"])
        else:
            total += instr
        rows.append({"function": step["function"], "op": op, "instructions": instr})
    return {"instructions": total, "layers": rows, "unpriced": unpriced}
