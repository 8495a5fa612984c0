"""References our outputs are checked against: TensorFlow Lite Micro (what runs on MCUs)."""

from .tflm import TFLMUnavailableError, run_tflm, run_tflm_outputs, trace_tflm

__all__ = ["TFLMUnavailableError", "run_tflm", "run_tflm_outputs", "trace_tflm"]
