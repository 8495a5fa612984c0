"""Fold the shape arithmetic Keras 3 writes for a dynamic batch into constants, before import.

Keras 3's ``Flatten`` (and ``Reshape``) of a model with batch ``-1`` in its ``shape_signature``
exports ``SHAPE(x) -> STRIDED_SLICE (the batch) -> PACK([batch, n]) -> RESHAPE(x, that)``. TFLM
runs such a model as batch 1 (the project's rule for ``-1`` batches), so that chain computes a
constant. This module computes it explicitly, and nothing else:

- ``SHAPE`` only of a tensor whose every dimension is static apart from the batch (dimension 0,
  ``-1`` in the signature, taken as 1);
- then ``STRIDED_SLICE`` (no ellipsis / new-axis masks), ``PACK`` and ``CONCATENATION`` whose
  inputs are all constants (the model's, or already folded);
- the result may only be consumed by another of those or as ``RESHAPE``'s shape operand, and
  that shape must give the output the static shape the model declares.

Anything else computing on a run-time shape is refused with the op, its position and why. The
folded ops are not imported: TVM's importer reads the folded values as the constants they are
(:class:`FoldedShapeConverter`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import UnsupportedOpError

FOLDABLE = ("SHAPE", "STRIDED_SLICE", "PACK", "CONCATENATION")


@dataclass
class FoldedShapes:
    """Tensor index -> folded value, and the indices of the operators folded away."""

    values: dict = field(default_factory=dict)
    ops: set = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.ops)


def _where(graph, op) -> str:
    return f"{graph.path}: operator {op.index} {op.opcode}"


def _strided_slice(data, begin, end, strides, options, where) -> np.ndarray:
    if options.get("EllipsisMask", 0) or options.get("NewAxisMask", 0) or options.get("Offset", False):
        raise UnsupportedOpError(f"{where}: STRIDED_SLICE of a shape with ellipsis/new-axis masks or offset "
                                 "cannot be folded")
    if data.ndim != 1 or begin.size != 1 or end.size != 1 or strides.size != 1:
        raise UnsupportedOpError(f"{where}: only a 1-D STRIDED_SLICE of a shape vector can be folded")
    begin_mask, end_mask, shrink = (int(options.get(k, 0)) for k in ("BeginMask", "EndMask", "ShrinkAxisMask"))
    b, e, s = int(begin[0]), int(end[0]), int(strides[0])
    if s == 0:
        raise UnsupportedOpError(f"{where}: STRIDED_SLICE with stride 0")
    if shrink & 1:
        return np.array(data[b], dtype=data.dtype)  # a scalar: data[begin]
    sl = slice(None if begin_mask & 1 else b, None if end_mask & 1 else e, s)
    return np.asarray(data[sl], dtype=data.dtype)


def fold_batch_shapes(graph) -> FoldedShapes:
    """Fold every ``SHAPE`` chain of ``graph`` (a :class:`~.tflite_reader.TFLiteGraph`); see the
    module docstring. Returns an empty :class:`FoldedShapes` for a model without ``SHAPE``."""
    folded = FoldedShapes()
    if not any(op.opcode == "SHAPE" for op in graph.operators):
        return folded

    def known(index):
        if index in folded.values:
            return folded.values[index]
        tensor = graph.tensor(index)
        return tensor.data if tensor.is_constant else None

    for op in graph.operators:
        where = _where(graph, op)
        if op.opcode == "SHAPE":
            x = graph.tensor(op.inputs[0])
            signature = tuple(x.shape_signature) or tuple(x.shape)
            if any(d < 0 for d in signature[1:]) or len(signature) != len(x.shape):
                raise UnsupportedOpError(f"{where}: SHAPE of '{x.name}' {list(signature)}: only the batch (the "
                                         "first dimension) may be dynamic for the shape to be folded")
            out = graph.tensor(op.outputs[0])
            shape = [1] + [int(d) for d in x.shape[1:]] if x.shape else []
            folded.values[op.outputs[0]] = np.array(shape, dtype=np.int64 if out.dtype == "int64" else np.int32)
            folded.ops.add(op.index)
            continue
        reads_folded = any(i in folded.values for i in op.inputs if i >= 0)
        if not reads_folded:
            continue
        if op.opcode in FOLDABLE[1:]:
            values = [known(i) for i in op.inputs]
            if any(v is None for v in values):
                raise UnsupportedOpError(f"{where}: computes on a folded shape and a run-time tensor; only "
                                         "constant shape arithmetic can be folded")
            if op.opcode == "STRIDED_SLICE":
                result = _strided_slice(*values, op.options, where)
            elif op.opcode == "PACK":
                result = np.stack([np.asarray(v) for v in values], axis=int(op.options.get("Axis", 0)))
            else:
                result = np.concatenate([np.atleast_1d(v) for v in values], axis=int(op.options.get("Axis", 0)))
            folded.values[op.outputs[0]] = np.asarray(result, dtype=values[0].dtype)
            folded.ops.add(op.index)
            continue
        if op.opcode == "RESHAPE" and len(op.inputs) == 2 and op.inputs[1] in folded.values \
                and op.inputs[0] not in folded.values:
            _check_reshape(graph, op, folded.values[op.inputs[1]], where)
            continue
        raise UnsupportedOpError(f"{where} reads a shape computed at run time; only STRIDED_SLICE, PACK and "
                                 "CONCATENATION of it, and RESHAPE to it, are folded (re-export with batch 1)")
    return folded


def _check_reshape(graph, op, new_shape, where) -> None:
    x, out = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    size = int(np.prod(x.shape))
    shape = [int(d) for d in np.asarray(new_shape).reshape(-1)]
    if shape.count(-1) == 1:
        known = int(np.prod([d for d in shape if d != -1]))
        shape[shape.index(-1)] = size // known if known else 0
    if int(np.prod(shape)) != size or tuple(shape) != tuple(out.shape):
        raise UnsupportedOpError(f"{where}: the folded shape {list(np.asarray(new_shape).reshape(-1))} does not give "
                                 f"'{out.name}' its declared shape {list(out.shape)}")


def folded_converter(base, folded: FoldedShapes):
    """A subclass of the operator converter ``base`` that skips the folded operators and reads the
    folded tensors as constants."""
    outputs_of_folded = {}

    class FoldedShapeConverter(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.convert_map = dict(self.convert_map, DTMM_FOLDED_SHAPE=lambda op: None)
            self._SUPPORTED_QUANTIZED_OPS = set(getattr(self, "_SUPPORTED_QUANTIZED_OPS", ())) | {"DTMM_FOLDED_SHAPE"}
            for index in range(self.subgraph.OperatorsLength()):
                if index in folded.ops:
                    outputs_of_folded[int(self.subgraph.Operators(index).Outputs(0))] = index

        def get_op_code_str(self, op):
            if op.OutputsLength() and int(op.Outputs(0)) in outputs_of_folded:
                return "DTMM_FOLDED_SHAPE"
            return super().get_op_code_str(op)

        def get_tensor_value(self, tensor_wrapper, is_sparse=False):
            if tensor_wrapper.tensor_idx in folded.values:
                return np.asarray(folded.values[tensor_wrapper.tensor_idx])
            return super().get_tensor_value(tensor_wrapper, is_sparse)

    return FoldedShapeConverter
