"""TVM's TFLite operator converter, with the int8 data-movement operators it refuses admitted.

TVM's importer refuses any quantized operator outside its ``_SUPPORTED_QUANTIZED_OPS``, so that no
Relax op is applied to quantized integers without an explicit quantize/dequantize. The operators
added here only move bytes: their converters apply the Relax op to the int8 tensor directly
(after checking that input and output share scale and zero point where TFLite requires it), which
is exactly what TFLM does on the raw int8 values. RESIZE_NEAREST_NEIGHBOR's index arithmetic is
TFLM's only after ``LowerQDQToInteger`` rewrites the resize to our gather kernel.
"""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.relax.frontend.tflite.tflite_frontend import OperatorConverter

#: Quantized operators whose TVM conversion is a byte-exact move of int8 values.
INT8_DATA_MOVEMENT_OPS = frozenset({
    "PAD", "PADV2", "STRIDED_SLICE", "SQUEEZE", "TRANSPOSE", "RESIZE_NEAREST_NEIGHBOR", "SPLIT",
    "SPLIT_V", "PACK", "UNPACK", "EXPAND_DIMS",
})


class DTMMOperatorConverter(OperatorConverter):
    """:class:`OperatorConverter` that also converts the int8 :data:`INT8_DATA_MOVEMENT_OPS`."""

    _SUPPORTED_QUANTIZED_OPS = OperatorConverter._SUPPORTED_QUANTIZED_OPS | INT8_DATA_MOVEMENT_OPS

    def convert_expand_dims(self, op):
        """EXPAND_DIMS: TVM 0.27's converter calls ``relax.op.expand_dims`` with a third argument it
        does not take (every EXPAND_DIMS fails to import); this is its conversion, fixed."""
        data, axis_tensor = self.get_input_tensors(op)
        if data.qnn_params and not self.has_same_qnn_params(data, self.get_output_tensors(op)[0]):
            raise ValueError("TFLite EXPAND_DIMS requires input and output scale and zero points to be equal")
        axis = int(np.asarray(self.get_tensor_value(axis_tensor)).reshape(-1)[0])
        rank = len(data.tensor.ShapeAsNumpy())
        if not -1 - rank <= axis <= rank:
            raise ValueError(f"EXPAND_DIMS axis {axis} out of range for a rank-{rank} tensor")
        return relax.op.expand_dims(self.get_tensor_expr(data), axis if axis >= 0 else axis + rank + 1)
