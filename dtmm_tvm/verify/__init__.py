"""Verification built in: the generated C, built for the host, against the model's reference.

- :func:`verify_model` (``dtmm compile --verify``): TFLM for .tflite (bit-exact for int8), ONNX
  Runtime for .onnx; on a difference it names the first differing operator.
- :func:`check_outputs` (``dtmm run --check``): a board's outputs against the reference.
"""

from .check import (VerificationError, VerifyReport, check_outputs, compare, host_target, load_inputs_file,
                    random_inputs, verify_model)

__all__ = ["VerificationError", "VerifyReport", "check_outputs", "compare", "host_target", "load_inputs_file",
           "random_inputs", "verify_model"]
