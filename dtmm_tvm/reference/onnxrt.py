"""Run an .onnx model with ONNX Runtime's CPU provider: the reference for ONNX models.

``onnxruntime`` is optional (the [test] extra). With ``trace=True`` every node output is made a
graph output, so that the values of all intermediate tensors come back too.
"""

from __future__ import annotations

import numpy as np

from ..errors import DTMMError


class OnnxRuntimeUnavailableError(DTMMError):
    """The optional ``onnxruntime`` package is not installed."""


def trace_onnxruntime(model: bytes, inputs: list, trace: bool = False) -> dict:
    """Run every stacked input through ONNX Runtime.

    Returns
    -------
    dict
        ``{"outputs": [(N, *shape)], "tensors": {name: (N, *shape)}, "ops": [RefOp-like],
        "graph_inputs": [names]}``; ``tensors`` and ``ops`` are filled only with ``trace``.
    """
    try:
        import onnxruntime
    except ImportError:
        raise OnnxRuntimeUnavailableError(
            "ONNX Runtime is not installed: pip install onnxruntime (needed to verify ONNX models)") from None
    import onnx

    from ..verify.check import RefOp

    proto = onnx.load_from_string(bytes(model))
    initializers = {i.name for i in proto.graph.initializer}
    graph_inputs = [i.name for i in proto.graph.input if i.name not in initializers]
    output_names = [o.name for o in proto.graph.output]
    ops = []
    if trace:
        inferred = onnx.shape_inference.infer_shapes(proto)
        known = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
        for index, node in enumerate(proto.graph.node):
            ops.append(RefOp(index, node.op_type, node.name or (node.output[0] if node.output else ""),
                             [t for t in node.input if t and t not in initializers], [t for t in node.output if t]))
            for t in node.output:
                if t and t not in output_names and t in known:
                    proto.graph.output.append(known[t])
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    stacked = {name: [] for name in names}
    for samples in zip(*inputs):
        feed = {name: np.asarray(x) for name, x in zip(graph_inputs, samples)}
        for name, value in zip(names, session.run(None, feed)):
            stacked[name].append(np.asarray(value))
    tensors = {name: np.stack(v) for name, v in stacked.items()}
    return {"outputs": [tensors[n] for n in output_names], "tensors": tensors if trace else {},
            "ops": ops, "graph_inputs": graph_inputs}
