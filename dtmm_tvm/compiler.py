"""The compile driver: model file -> validated Relax -> dtmm pipeline -> Model Library Format tar.

Used by ``dtmm compile``, the demo and the benchmarks, so that there is one way to compile.
"""

from __future__ import annotations

from pathlib import Path

import tvm

from .errors import DTMMError, OutputExistsError
from .schedules.records import TuningRecords, TuningRecordsError, apply_records
from .frontend.loader import LoadedModel, load_model
from .kernels import target_isa
from .pipeline import dtmm_pipeline
from .target import DEFAULT_BOARD, resolve_target, target_tag

MODES = ("dtmm", "dense")
OPTIMIZE = ("speed", "size")


def lower_model(model: LoadedModel, sparse: bool = True, threshold: float | None = None,
                optimize: str = "speed", decision_target: str | None = None) -> tvm.IRModule:
    """Run the dtmm pipeline on an imported model; errors name the model file. ``decision_target``:
    the target tag whose cost model picks each conv's format (default: the current target)."""
    from relay_passes import DEFAULT_THRESHOLD

    pipeline = dtmm_pipeline(
        sparse=sparse,
        threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
        layout_nhwc=model.format == "onnx",
        # TFLite int8 models get TFLM's integer arithmetic, ONNX QDQ models onnxruntime's.
        integer=model.format == "tflite",
        onnx_qdq=model.format == "onnx" and model.arithmetic == "int8",
        optimize=optimize,
        decision_target=decision_target,
    )
    try:
        return pipeline(model.mod)
    except DTMMError as err:
        raise type(err)(f"{model.path}: {err}") from None


def _onnx_layer_names(model: LoadedModel) -> dict[str, list[str]]:
    """ONNX node names per lowered op kind, in graph order (QDQ models: every such node is lowered)."""
    import onnx

    names: dict[str, list[str]] = {}
    kinds = {"Gemm": "fully_connected", "MatMul": "fully_connected", "MaxPool": "max_pool2d",
             "GlobalAveragePool": "global_avg_pool", "Softmax": "softmax"}
    for node in onnx.load_from_string(model.raw).graph.node:
        kind = kinds.get(node.op_type)
        if node.op_type == "Conv":
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            kind = "conv2d" if group == 1 else "depthwise_conv2d"
        if kind is not None:
            names.setdefault(kind, []).append(node.name or node.output[0])
    return names


def _name_layers(model: LoadedModel, metadata: dict) -> None:
    """Attach the TFLite tensor names (ONNX QDQ: node names) to the pipeline's layers, matched per
    op kind in order."""
    if model.tflite is None:
        if model.format == "onnx" and model.arithmetic == "int8":
            _attach_names(_onnx_layer_names(model), metadata)
        return
    kinds = {"CONV_2D": "conv2d", "DEPTHWISE_CONV_2D": "depthwise_conv2d", "FULLY_CONNECTED": "fully_connected",
             "ADD": "add", "MEAN": "mean", "SOFTMAX": "softmax", "AVERAGE_POOL_2D": "avg_pool2d",
             "MUL": "mul", "SUB": "sub", "LOGISTIC": "logistic", "TANH": "tanh", "HARD_SWISH": "hard_swish",
             "LEAKY_RELU": "leaky_relu", "RELU": "relu", "RELU6": "relu6", "DEQUANTIZE": "dequantize",
             "RESIZE_NEAREST_NEIGHBOR": "resize_nearest_neighbor"}
    names: dict[str, list[str]] = {}
    for op in model.tflite.operators:
        if op.opcode in kinds:
            names.setdefault(kinds[op.opcode], []).append(model.tflite.layer_name(op))
    _attach_names(names, metadata)


def _attach_names(names: dict[str, list[str]], metadata: dict) -> None:
    for layer in metadata.get("layers", []):
        op, _, index = layer.get("name", "").rpartition("_")
        candidates = names.get(layer.get("op"), [])
        if index.isdigit() and int(index) < len(candidates):
            layer["model_layer"] = candidates[int(index)]


def _check_verified_formats(verified: dict, metadata: dict) -> None:
    """The formats ``--verify`` built must be the ones this archive ships (else it verified another
    program): a mismatch is an error before anything is written."""
    shipped = {layer["name"]: layer.get("format", "dense") for layer in metadata.get("layers", [])
               if "format_choice" in layer}
    if shipped != verified.get("decisions", {}):
        from .verify.check import VerificationError

        diff = sorted(set(shipped.items()) ^ set(verified.get("decisions", {}).items()))
        raise VerificationError(f"--verify built other layer formats than this {metadata.get('target')} build "
                                f"({diff[:4]}); nothing was written")


def _load_records(tuning_records, tag: str):
    """The records to apply (None: none); a file for another target is an error naming both."""
    if tuning_records is None:
        return None
    records = tuning_records if isinstance(tuning_records, TuningRecords) else TuningRecords.load(tuning_records)
    if records.target != tag:
        raise TuningRecordsError(f"{records.source or 'tuning records'}: tuned for target {records.target} "
                                 f"(board {records.board}), not {tag}; tune again with --target {tag}")
    return records


def _note_tuning(lowered, metadata: dict, records, hits: dict) -> None:
    """Mark the layers whose kernels were built from the records (metadata ``"tuning"``)."""
    from .schedules.layers import tunable_layers
    from .schedules.records import schedule_str

    by_function = {}
    for layer in tunable_layers(lowered):
        if layer.key in hits:
            for name in layer.names:
                by_function[name] = (layer.key, hits[layer.key])
    tuned, changed = [], []
    for entry in metadata.get("layers", []):
        hit = by_function.get(entry.get("function"))
        if hit is None:
            continue
        key, schedule = hit
        record = records.layers[key]
        is_default = record["best"]["schedule"] == record["default"]["schedule"]
        entry["schedule"] = {"source": "tuning_records", "key": key, "schedule": schedule_str(schedule),
                             "is_default": is_default, "instructions": record["best"]["instructions"],
                             "default_instructions": record["default"].get("instructions")}
        tuned.append(entry["name"])
        if not is_default:
            changed.append(entry["name"])
    metadata["tuning"] = {"records": Path(records.source).name if records.source else None,
                          "target": records.target, "board": records.board, "tuned_layers": tuned,
                          "changed_layers": changed}


def compile_model(
    model_path: str | Path,
    output: str | Path,
    target: str = "dtmm/cortex-m4",
    mode: str = "dtmm",
    threshold: float | None = None,
    force: bool = False,
    tuning_records=None,
    module_name: str = "default",
    optimize: str = "speed",
    verified: dict | None = None,
    progress=None,
) -> dict:
    """Compile ``model_path`` to the archive ``output``; return its metadata.

    Parameters
    ----------
    mode
        ``"dtmm"`` rewrites filterlet-pruned convs to the sparse operator, ``"dense"`` is the same
        pipeline without that rewrite (the baseline).
    force
        Replace an existing ``output``; otherwise an existing file is an error.
    tuning_records
        A records file of ``dtmm tune`` (path) or a :class:`dtmm_tvm.schedules.TuningRecords`:
        layers found in it get their best measured schedule, the others the default. The
        records must be for ``target``. metadata.json lists the tuned layers (``"tuning"``,
        and ``"schedule"`` on each tuned layer).
    module_name
        ``tvmgen_<module_name>_`` prefixes every C symbol, the header and its guard, so several
        models link into one firmware (``--module-name``).
    optimize
        ``"speed"`` (default): each pruned conv gets the weight format (dense or filterlet) with
        the fewest predicted instructions on ``target``, never one predicted slower than dense;
        ``"size"``: the fewest bytes. metadata.json records the choice per layer
        (``"format_choice"``).
    verified
        ``VerifyReport.to_json()`` of ``--verify``: recorded as metadata ``"verified"``, and the
        per-layer formats it verified must be this build's (else nothing is written).
    progress
        ``progress(stage)`` is called as each stage starts: ``"import"``, ``"passes"``,
        ``"codegen"``, ``"archive"`` (the CLI draws its bar from it).
    """
    from .codegen import write_archive
    from .micro import check_fits, get_board

    if mode not in MODES:
        raise DTMMError(f"unknown mode '{mode}'; choose one of {MODES}")
    if threshold is not None and not 0.0 <= threshold < 1.0:
        raise DTMMError(f"threshold {threshold} is outside [0, 1): it is the filterlet sparsity above which a conv "
                        "uses the sparse operator")
    if optimize not in OPTIMIZE:
        raise DTMMError(f"unknown --optimize '{optimize}'; choose one of {OPTIMIZE}")
    output = Path(output)
    if output.exists() and not force:
        raise OutputExistsError(f"{output}: exists; pass --force to replace it")
    tvm_target = resolve_target(target)
    records = _load_records(tuning_records, target_tag(tvm_target))
    say = progress or (lambda stage: None)
    say("import")
    model = load_model(model_path)
    # Kernel builders pick their micro-kernels from Target.current() and, inside
    # apply_records, their schedules from the records.
    say("passes")
    with tvm_target, apply_records(records) as tuning:
        lowered = lower_model(model, sparse=(mode == "dtmm"), threshold=threshold, optimize=optimize)
    extra = {
        "model": {"name": model.name, "source": model.path.name, "sha256": model.sha256, "format": model.format,
                  "arithmetic": model.arithmetic},
        "target": target_tag(tvm_target),
        "isa": target_isa(tvm_target),  # the kernel path the archive was specialized for
        "mode": mode,
        **({"optimize": optimize} if mode == "dtmm" else {}),
        "inputs": [s.to_json() for s in model.inputs],
        "outputs": [s.to_json() for s in model.outputs],
        "notes": model.notes,
        **({"verified": verified} if verified is not None else {}),
    }
    board = get_board(DEFAULT_BOARD[target_tag(tvm_target)])

    def annotate(metadata: dict) -> None:
        # Runs before anything is written: a model that cannot fit its board leaves no file.
        say("archive")
        _name_layers(model, metadata)
        if verified is not None:
            _check_verified_formats(verified, metadata)
        if records is not None:
            _note_tuning(lowered, metadata, records, tuning.hits)
        check_fits(metadata, board, artifact=model.path.name)

    say("codegen")
    return write_archive(lowered, output, extra, overwrite=force, annotate=annotate, module_name=module_name)
