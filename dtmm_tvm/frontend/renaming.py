"""Give every tensor a unique, harmless name, by position, before TVM's importers see a model.

TVM's TFLite importer looks tensors up *by name* (its expression table is a dict keyed by the
tensor name): two tensors that share a name alias, and a model whose tensors all share one name
compiles to a program that returns its input. Tensor names also become Relax variable names and
from there C identifiers. So the importer gets a view of the model in which tensor ``i`` is
called ``generated_names(...)[i]``: ASCII letters, digits and ``_`` only, bounded length, unique
(case-insensitively), derived from the original where that is harmless. The original names stay
in :class:`~.tflite_reader.TFLiteGraph` and the ``TensorSpec`` of the inputs and outputs, for
messages and ``metadata.json``.
"""

from __future__ import annotations

import re

_MAX_BASE = 40


def generated_names(names: list[str]) -> list[str]:
    """Unique, identifier-safe names for ``names`` (by position; duplicates get a suffix)."""
    taken: set[str] = set()
    out = []
    for i, name in enumerate(names):
        base = re.sub(r"[^A-Za-z0-9_]+", "_", str(name)).strip("_")[:_MAX_BASE] or f"tensor{i}"
        if base[0].isdigit():
            base = "t" + base
        candidate = base
        if candidate.lower() in taken:
            candidate = f"{base}_{i}"
            k = 0
            while candidate.lower() in taken:  # "a_3" may itself be an original name
                k += 1
                candidate = f"{base}_{i}_{k}"
        taken.add(candidate.lower())
        out.append(candidate)
    return out


def renamed_tflite_model(raw: bytes, names: list[str]):
    """A ``tflite.Model`` over ``raw`` whose main subgraph's tensor ``i`` is named ``names[i]``.

    Only the names the importer reads change; the flatbuffer itself is untouched.
    """
    import tflite

    encoded = [n.encode("ascii") for n in names]

    class _Tensor(tflite.Tensor):
        def Name(self):  # noqa: N802 (the flatbuffer API's spelling)
            return self._dtmm_name

    class _SubGraph(tflite.SubGraph):
        def Tensors(self, j):  # noqa: N802
            tensor = super().Tensors(j)
            if tensor is None or not 0 <= j < len(encoded):
                return tensor
            renamed = _Tensor()
            renamed._tab = tensor._tab
            renamed._dtmm_name = encoded[j]
            return renamed

    class _Model(tflite.Model):
        def Subgraphs(self, j):  # noqa: N802
            graph = super().Subgraphs(j)
            if graph is None or j != 0:
                return graph
            renamed = _SubGraph()
            renamed._tab = graph._tab
            return renamed

    model = _Model()
    model._tab = tflite.Model.GetRootAsModel(raw, 0)._tab
    return model


def rename_onnx_values(model) -> dict:
    """Rename every value of an ONNX graph in place (inputs, initializers, node outputs, graph
    outputs, value_info); returns original name -> new name. Node names are cleared (TVM only
    uses them in messages; ours name nodes by index)."""
    graph = model.graph
    originals = list(dict.fromkeys(
        name for name in ([v.name for v in graph.input] + [i.name for i in graph.initializer]
                          + [o for n in graph.node for o in n.output] + [v.name for v in graph.output])
        if name))
    mapping = dict(zip(originals, generated_names(originals)))
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        value.name = mapping.get(value.name, value.name)
    for init in graph.initializer:
        init.name = mapping.get(init.name, init.name)
    for node in graph.node:
        node.name = ""
        for k, name in enumerate(node.input):
            node.input[k] = mapping.get(name, name)
        for k, name in enumerate(node.output):
            node.output[k] = mapping.get(name, name)
    return mapping
