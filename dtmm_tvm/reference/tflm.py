"""Run a .tflite model with TensorFlow Lite Micro's reference kernels on the host.

TFLM, not ``tf.lite.Interpreter``, is the reference for bit-exactness: the two differ by up to a few
LSB on some int8 outputs, and TFLM is what runs on microcontrollers. The PyPI package
``tflite-micro`` is an optional extra (``pip install dtmm-tvm[reference]``).
"""

from __future__ import annotations

import numpy as np

from ..errors import DTMMError


class TFLMUnavailableError(DTMMError):
    """The optional ``tflite-micro`` package is not installed."""


def run_tflm(model: bytes, inputs, arena_size: int = 4 << 20) -> np.ndarray:
    """Like :func:`run_tflm_outputs`, returning the model's first output only."""
    return run_tflm_outputs(model, inputs, arena_size)[0]


def run_tflm_outputs(model: bytes, inputs, arena_size: int = 4 << 20) -> list[np.ndarray]:
    """Run every input (stacked on a new first axis) through TFLM, one inference each.

    Parameters
    ----------
    model
        The .tflite flatbuffer.
    inputs
        ``(N, *input_shape)`` in the model's input dtype; each ``inputs[i]`` is one inference.
        For a model with several inputs, a list with one such array per model input.
    arena_size
        TFLM tensor arena bytes for the host run.

    Returns
    -------
    list of numpy.ndarray
        One ``(N, *output_shape)`` array per model output, in the model's output order.
    """
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise TFLMUnavailableError(
            "TensorFlow Lite Micro is not installed: pip install 'tflite-micro' (the [reference] extra)"
        ) from None
    interpreter = runtime.Interpreter.from_bytes(bytes(model), arena_size=arena_size)
    per_input = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    shapes = [tuple(int(d) for d in interpreter.get_input_details(i)["shape"]) for i in range(len(per_input))]
    dtypes = [interpreter.get_input_details(i)["dtype"] for i in range(len(per_input))]
    outputs, count = [], _output_count(model)
    for samples in zip(*per_input):
        for index, sample in enumerate(samples):
            interpreter.set_input(np.asarray(sample, dtype=dtypes[index]).reshape(shapes[index]), index)
        interpreter.invoke()
        outputs.append([np.array(interpreter.get_output(i)) for i in range(count)])
    return [np.stack(per_output) for per_output in zip(*outputs)]


def _output_count(model: bytes) -> int:
    import tflite

    return int(tflite.Model.GetRootAsModel(bytes(model), 0).Subgraphs(0).OutputsLength())


def trace_tflm(model: bytes, inputs: list, arena_size: int = 4 << 20) -> dict:
    """Run TFLM on every input and keep every tensor it computed, not only the outputs.

    TFLM's interpreter preserves all tensors with ``InterpreterConfig.kPreserveAllTensors`` (its
    arena then holds every intermediate); ``GetTensor(index, 0)`` reads one back.

    Parameters
    ----------
    model
        The .tflite flatbuffer (single subgraph).
    inputs
        One ``(N, *input_shape)`` array per model input, in the model's input order.

    Returns
    -------
    dict
        ``{"outputs": [(N, *shape) per model output], "tensors": {tensor index: (N, *shape)}}``;
        ``tensors`` has every tensor that some operator writes.
    """
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise TFLMUnavailableError(
            "TensorFlow Lite Micro is not installed: pip install 'tflite-micro' (the [reference] extra)"
        ) from None
    graph = runtime.convert_bytearray_to_object(bytearray(model)).subgraphs[0]
    written = sorted({int(t) for op in graph.operators for t in op.outputs if int(t) >= 0})
    interpreter = runtime.Interpreter.from_bytes(
        bytes(model), arena_size=arena_size,
        intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    shapes = [tuple(int(d) for d in interpreter.get_input_details(i)["shape"]) for i in range(len(inputs))]
    dtypes = [interpreter.get_input_details(i)["dtype"] for i in range(len(inputs))]
    n_out = len(graph.outputs)
    outputs = [[] for _ in range(n_out)]
    tensors = {index: [] for index in written}
    for samples in zip(*inputs):
        for index, sample in enumerate(samples):
            interpreter.set_input(np.asarray(sample, dtype=dtypes[index]).reshape(shapes[index]), index)
        interpreter.invoke()
        for k in range(n_out):
            outputs[k].append(np.array(interpreter.get_output(k)))
        for index in written:
            # GetTensor reads outside the tensor list for a bad index: only indices from the model.
            tensors[index].append(np.array(interpreter.GetTensor(index, 0)["tensor_data"]))
    return {"outputs": [np.stack(o) for o in outputs], "tensors": {k: np.stack(v) for k, v in tensors.items()}}
