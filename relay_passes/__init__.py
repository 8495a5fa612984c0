"""DTMM's graph passes, one per file.

They are Relax passes: Relay was removed from TVM in 0.20, and the folder keeps the name the
project's design card gave it. Each is a ``tvm.transform.module_pass`` class that can be dropped
into any Relax pipeline (``relax_pipeline=`` of ``tvm.compile`` / ``relax.build``); the named
pipeline ``"dtmm"`` (see :mod:`dtmm_tvm.pipeline`) strings them together.
"""

from .check_integer_only import CheckIntegerOnly
from .drop_zero_filters import DropZeroFilters
from .filterlet_sparse_conv import DEFAULT_THRESHOLD, FilterletSparseConv
from .lower_onnx_qdq_to_integer import LowerONNXQDQToInteger
from .lower_qdq_to_integer import LowerQDQToInteger

__all__ = ["CheckIntegerOnly", "DropZeroFilters", "DEFAULT_THRESHOLD", "FilterletSparseConv", "LowerONNXQDQToInteger",
           "LowerQDQToInteger"]
