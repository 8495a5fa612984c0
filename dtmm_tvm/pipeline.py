"""The named Relax pipeline ``"dtmm"``: our graph passes, then TVM's lowering to straight-line
``call_tir`` code that :mod:`dtmm_tvm.codegen` turns into plain C.

Use it by name (``tvm.compile(mod, target, relax_pipeline=relax.get_pipeline("dtmm"))``) or take
:func:`dtmm_passes` into a pipeline of your own.
"""

from __future__ import annotations

import tvm
from tvm import relax

from relay_passes import (DEFAULT_THRESHOLD, CheckIntegerOnly, DropZeroFilters, FilterletSparseConv,
                          LowerONNXQDQToInteger, LowerQDQToInteger)


def dtmm_passes(sparse: bool = True, threshold: float = DEFAULT_THRESHOLD, integer: bool = True,
                optimize: str = "speed", decision_target: str | None = None) -> list[tvm.transform.Pass]:
    """DTMM's graph passes in order.

    ``sparse=False`` is the dense baseline (``--dense``). ``integer=False`` keeps quantize /
    dequantize as float (ONNX QDQ models, whose defined semantics are float requantization).
    ``optimize`` (``"speed"`` / ``"size"``): how each conv's weight format is chosen
    (:class:`relay_passes.FilterletSparseConv`); ``decision_target``: the target tag whose cost
    model decides it (default: the current target).
    """
    passes = [LowerQDQToInteger()] if integer else []
    if sparse:
        if integer:
            passes.append(DropZeroFilters())
        passes.append(FilterletSparseConv(threshold, optimize=optimize, decision_target=decision_target))
    if integer:
        passes.append(CheckIntegerOnly())
    return passes


def onnx_qdq_passes(sparse: bool = True, threshold: float = DEFAULT_THRESHOLD,
                    optimize: str = "speed", decision_target: str | None = None) -> list[tvm.transform.Pass]:
    """DTMM's graph passes for an ONNX QDQ int8 model (NCHW as imported): lowered to the integer
    kernels with onnxruntime's float32 requantization, then the filterlet rewrite."""
    passes = [LowerONNXQDQToInteger()]
    if sparse:
        passes += [DropZeroFilters(), FilterletSparseConv(threshold, optimize=optimize, decision_target=decision_target)]
    return passes


def dtmm_pipeline(
    sparse: bool = True, threshold: float = DEFAULT_THRESHOLD, layout_nhwc: bool = False, integer: bool = True,
    onnx_qdq: bool = False,
    optimize: str = "speed",
    decision_target: str | None = None,
) -> tvm.transform.Pass:
    """The whole Relax pipeline, ending in straight-line Relax over PrimFuncs.

    Parameters
    ----------
    sparse
        Rewrite filterlet-pruned convs to the sparse operator (False: the dense baseline).
    threshold
        Filterlet sparsity above which a conv is rewritten.
    layout_nhwc
        Convert NCHW convs (ONNX models) to NHWC/OHWI first, so filterlets are contiguous.
    integer
        Lower int8 quantize/dequantize chains to TFLite's integer arithmetic (TFLite models).
    onnx_qdq
        An ONNX QDQ int8 model: :func:`onnx_qdq_passes` (ONNX Runtime's numerics) instead of
        ``integer`` and ``layout_nhwc`` (the lowering writes NHWC kernels itself).
    decision_target
        Target tag whose cost model decides each conv's format (default: the current target).
    """
    passes = []
    if onnx_qdq:
        passes += onnx_qdq_passes(sparse, threshold, optimize, decision_target)
    elif layout_nhwc:
        passes.append(relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OHWI"]}))
        passes.append(relax.transform.Normalize())
    if not onnx_qdq:
        passes += dtmm_passes(sparse, threshold, integer, optimize, decision_target)
    passes += [
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
        relax.transform.DeadCodeElimination(),
    ]
    return tvm.transform.Sequential(passes, name="dtmm")


if "dtmm" not in relax.pipeline.PIPELINE_MAP:
    relax.register_pipeline("dtmm")(dtmm_pipeline)
