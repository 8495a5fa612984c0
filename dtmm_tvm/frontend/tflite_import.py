"""TVM's TFLite importer, with the operators it reads differently from TFLM read as TFLM reads them.

TVM 0.27's importer takes a FULLY_CONNECTED's input as ``[..., K]`` and multiplies its last axis
by the weights. TFLM flattens the input to ``[batches, K]`` with ``K`` from the weights (so an
input ``[1, 25, 20, 8]`` with weights ``[4, 4000]`` is one row of 4000) and gives the output the
shape the model declares (which is how ``keep_num_dims`` reaches it). The importer fails on the
first kind of model and, without ``keep_num_dims``, returns another shape than the model declares
for an input of more than two axes; here both follow TFLM.

:func:`import_tflite` also releases TVM's block builder when the importer fails, so the only
thing the user sees is our error (TVM otherwise logs "BlockBuilder destroyed with remaining
blocks!" when the half-built function is garbage collected, after the message).
"""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.relax.frontend.tflite.tflite_frontend import from_tflite

from .tflite_converter import DTMMOperatorConverter


def _shape(tensor_wrapper) -> list[int]:
    tensor = tensor_wrapper.tensor
    return [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []


class TFLMOperatorConverter(DTMMOperatorConverter):
    """TVM's TFLite operator converter with FULLY_CONNECTED's shapes as in TFLM."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._replaced_input: tuple[int, relax.Expr] | None = None

    def get_tensor_expr(self, tensor, is_sparse=False):
        if self._replaced_input is not None and tensor.tensor_idx == self._replaced_input[0]:
            return self._replaced_input[1]
        return super().get_tensor_expr(tensor, is_sparse)

    def convert_fully_connected(self, op):
        input_tensor, weight_tensor = self.get_input_tensors(op)[:2]
        output_tensor = self.get_output_tensors(op)[0]
        in_shape, out_shape = _shape(input_tensor), _shape(output_tensor)
        units, depth = _shape(weight_tensor)
        if len(in_shape) == 2 and in_shape[1] == depth and out_shape == [in_shape[0], units]:
            return super().convert_fully_connected(op)  # already TFLM's [batches, K] x [O, K]
        # The frontend's validation checked these sizes divide (dtmm_tvm.frontend.validate).
        batches = int(np.prod(in_shape)) // depth
        flat = relax.op.reshape(super().get_tensor_expr(input_tensor), [batches, depth])
        self._replaced_input = (input_tensor.tensor_idx, flat)
        try:
            out = super().convert_fully_connected(op)
        finally:
            self._replaced_input = None
        return relax.op.reshape(out, out_shape)


def release_block_builders(err: BaseException) -> None:
    """End the scopes a failed import left open on TVM's BlockBuilders, so destroying them later
    logs nothing. The builders are found in the failing frames: a local (the TFLite importer's
    ``bb``) or an importer object's ``bb`` attribute (the ONNX importer)."""
    tb = err.__traceback__
    seen = set()
    while tb is not None:
        for value in list(tb.tb_frame.f_locals.values()):
            for candidate in (value, getattr(value, "bb", None)):
                if isinstance(candidate, relax.BlockBuilder) and id(candidate) not in seen:
                    seen.add(id(candidate))
                    try:
                        candidate._end_block()
                        candidate.end_scope()
                    except Exception:  # already clean: nothing to release
                        pass
        tb = tb.tb_next


def import_tflite(model, folded=None):
    """Import a validated ``tflite.Model`` into Relax with :class:`TFLMOperatorConverter`;
    ``folded``: the shape computations folded to constants (:mod:`.shape_folding`)."""
    converter = TFLMOperatorConverter
    if folded:
        from .shape_folding import folded_converter

        converter = folded_converter(TFLMOperatorConverter, folded)
    try:
        return from_tflite(model, op_converter=converter)
    except Exception as err:
        release_block_builders(err)
        raise
