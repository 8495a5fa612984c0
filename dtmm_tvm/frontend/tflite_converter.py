"""TVM's TFLite operator converter, with the int8 data-movement operators it refuses admitted.

TVM's importer refuses any quantized operator outside its ``_SUPPORTED_QUANTIZED_OPS``, so that no
Relax op is applied to quantized integers without an explicit quantize/dequantize. The operators
added here only move bytes: their converters apply the Relax op to the int8 tensor directly
(after checking that input and output share scale and zero point where TFLite requires it), which
is exactly what TFLM does on the raw int8 values. RESIZE_NEAREST_NEIGHBOR's index arithmetic is
TFLM's only after ``LowerQDQToInteger`` rewrites the resize to our gather kernel.
"""

from __future__ import annotations

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
        """EXPAND_DIMS (Keras' Conv1D exports one before each CONV_2D). TVM 0.27's converter
        passes ``relax.op.expand_dims`` a stray third argument and fails on every model; this is
        the same conversion with the axis alone."""
        import numpy as np
        from tvm import relax

        input_tensor, axis_tensor = self.get_input_tensors(op)[:2]
        if input_tensor.qnn_params and not self.has_same_qnn_params(input_tensor, self.get_output_tensors(op)[0]):
            raise ValueError("TFLite EXPAND_DIMS requires the same scale and zero point on input and output")
        axis = int(np.asarray(self.get_tensor_value(axis_tensor)).flat[0])
        return relax.op.expand_dims(self.get_tensor_expr(input_tensor), axis)
