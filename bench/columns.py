"""The four builds a benchmark compares, each turned into a model artifact that
:func:`dtmm_tvm.micro.run_artifact` builds with the same template and gcc flags.

``dense``  our compiler, ``mode="dense"`` (the ``--dense`` build)
``dtmm``   our compiler, ``mode="dtmm"`` (filterlet-sparse convs where sparsity > threshold)
``naive``  a TFLM-style C loop nest (:mod:`bench.naive`)
``tvm``    TVM's own lowering of the float-QDQ import: LegalizeOps + FuseOps/FuseTIR (TOPI's
           default compute, no schedule) printed as C by :mod:`dtmm_tvm.codegen`. Float
           arithmetic on the FPU; requantization in float, so up to 1 LSB off TFLM.
"""

from __future__ import annotations

from pathlib import Path

#: core -> (board, target tag)
CORES = {
    "m4": ("mps2-an386", "dtmm/cortex-m4"),
    "m7": ("mps2-an500", "dtmm/cortex-m7"),
    "m55": ("mps3-an547", "dtmm/cortex-m55"),
}
CORE_LABEL = {"m4": "Cortex-M4", "m7": "Cortex-M7", "m55": "Cortex-M55"}

COLUMNS = ("dense", "dtmm", "naive", "tvm")
COLUMN_LABEL = {
    "dense": "ours dense (--dense)",
    "dtmm": "ours DTMM",
    "naive": "naive C loop",
    "tvm": "TVM legalized (float QDQ)",
}


def build_tvm_default(model_path: str | Path, out_tar: str | Path, target: str) -> dict:
    """TVM's default lowering of the imported float-QDQ graph, as a model artifact."""
    from dtmm_tvm.codegen import write_archive
    from dtmm_tvm.frontend.loader import load_model
    from dtmm_tvm.pipeline import dtmm_pipeline
    from dtmm_tvm.target import resolve_target

    model = load_model(model_path)
    with resolve_target(target):
        # No dtmm passes: integer=False keeps quantize/dequantize as float, sparse=False keeps
        # relax.nn.conv2d, so LegalizeOps lowers everything with TOPI's generic compute.
        lowered = dtmm_pipeline(sparse=False, integer=False)(model.mod)
    extra = {
        "model": {"name": model.name, "source": model.path.name, "sha256": model.sha256,
                  "format": model.format, "arithmetic": "float32-qdq"},
        "target": target, "mode": "tvm-legalized",
        "inputs": [s.to_json() for s in model.inputs],
        "outputs": [s.to_json() for s in model.outputs],
    }
    return write_archive(lowered, out_tar, extra, overwrite=True)


def build_artifact(column: str, model_path: str | Path, out_tar: str | Path, target: str) -> dict:
    """Build the artifact of one column; returns its metadata.json content."""
    if column in ("dense", "dtmm"):
        from dtmm_tvm.compiler import compile_model

        return compile_model(model_path, out_tar, target=target, mode=column, force=True)
    if column == "naive":
        from .naive import build_naive_artifact

        return build_naive_artifact(model_path, out_tar)
    if column == "tvm":
        return build_tvm_default(model_path, out_tar, target)
    raise ValueError(f"unknown column {column!r}")
