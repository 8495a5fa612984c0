"""The compile driver: model file -> validated Relax -> dtmm pipeline -> Model Library Format tar.

Used by ``dtmm compile``, the demo and the benchmarks, so that there is one way to compile.
"""

from __future__ import annotations

from pathlib import Path

import tvm

from .errors import DTMMError, OutputExistsError
from .frontend.loader import LoadedModel, load_model
from .pipeline import dtmm_pipeline
from .target import DEFAULT_BOARD, resolve_target, target_tag

MODES = ("dtmm", "dense")


def lower_model(model: LoadedModel, sparse: bool = True, threshold: float | None = None) -> tvm.IRModule:
    """Run the dtmm pipeline on an imported model; errors name the model file."""
    from relay_passes import DEFAULT_THRESHOLD

    pipeline = dtmm_pipeline(
        sparse=sparse,
        threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
        layout_nhwc=model.format == "onnx",
        # TFLite int8 models get TFLM's integer arithmetic; ONNX QDQ keeps its float semantics.
        integer=model.format == "tflite",
    )
    try:
        return pipeline(model.mod)
    except DTMMError as err:
        raise type(err)(f"{model.path}: {err}") from None


def _name_layers(model: LoadedModel, metadata: dict) -> None:
    """Attach the TFLite tensor names to the pipeline's layers, matched per op kind in order."""
    if model.tflite is None:
        return
    kinds = {"CONV_2D": "conv2d", "DEPTHWISE_CONV_2D": "depthwise_conv2d", "FULLY_CONNECTED": "fully_connected",
             "ADD": "add", "MEAN": "mean", "SOFTMAX": "softmax", "AVERAGE_POOL_2D": "avg_pool2d"}
    names: dict[str, list[str]] = {}
    for op in model.tflite.operators:
        if op.opcode in kinds:
            names.setdefault(kinds[op.opcode], []).append(model.tflite.layer_name(op))
    for layer in metadata.get("layers", []):
        op, _, index = layer.get("name", "").rpartition("_")
        candidates = names.get(layer.get("op"), [])
        if index.isdigit() and int(index) < len(candidates):
            layer["model_layer"] = candidates[int(index)]


def compile_model(
    model_path: str | Path,
    output: str | Path,
    target: str = "dtmm/cortex-m4",
    mode: str = "dtmm",
    threshold: float | None = None,
    force: bool = False,
) -> dict:
    """Compile ``model_path`` to the archive ``output``; return its metadata.

    Parameters
    ----------
    mode
        ``"dtmm"`` rewrites filterlet-pruned convs to the sparse operator, ``"dense"`` is the same
        pipeline without that rewrite (the baseline).
    force
        Replace an existing ``output``; otherwise an existing file is an error.
    """
    from .codegen import write_archive
    from .micro import check_fits, get_board

    if mode not in MODES:
        raise DTMMError(f"unknown mode '{mode}'; choose one of {MODES}")
    output = Path(output)
    if output.exists() and not force:
        raise OutputExistsError(f"{output}: exists; pass --force to replace it")
    tvm_target = resolve_target(target)
    model = load_model(model_path)
    with tvm_target:  # kernel builders pick their micro-kernels from Target.current()
        lowered = lower_model(model, sparse=(mode == "dtmm"), threshold=threshold)
    extra = {
        "model": {"name": model.name, "source": model.path.name, "sha256": model.sha256, "format": model.format,
                  "arithmetic": model.arithmetic},
        "target": target_tag(tvm_target),
        "mode": mode,
        "inputs": [s.to_json() for s in model.inputs],
        "outputs": [s.to_json() for s in model.outputs],
        "notes": model.notes,
    }
    board = get_board(DEFAULT_BOARD[target_tag(tvm_target)])

    def annotate(metadata: dict) -> None:
        # Runs before anything is written: a model that cannot fit its board leaves no file.
        _name_layers(model, metadata)
        check_fits(metadata, board, artifact=model.path.name)

    return write_archive(lowered, output, extra, overwrite=force, annotate=annotate)
