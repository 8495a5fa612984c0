"""``dtmm run OUT.tar --board mps2-an386 --inputs IN.npy --outputs OUT.npy --json``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import DTMMError, OutputExistsError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("run", help="run a compiled archive on an emulated board and measure it")
    parser.add_argument("artifact", help="the archive written by 'dtmm compile'")
    parser.add_argument("--board", default=None, help="mps2-an386 (Cortex-M4), mps2-an500 (M7), mps3-an547 (M55), mps2-an385 (M3), "
                                                      "mps2-an505 (M33), microbit (M0); "
                                                      "default: the artifact target's board")
    parser.add_argument("--inputs", default=None,
                        help=".npy with N inputs stacked on a new first axis; several inputs: one .npy per "
                             "input in the model's input order (a.npy,b.npy) or one .npz keyed by input name")
    parser.add_argument("--outputs", default=None,
                        help=".npy to write the N outputs to; several outputs: one .npy per output "
                             "(a.npy,b.npy) or one .npz keyed by output name")
    parser.add_argument("--fill-mode", default=None, choices=["zeros", "ones", "random"],
                        help="without --inputs: one input of zeros, ones or seeded random values (as tvmc)")
    parser.add_argument("--print-top", type=int, default=None, metavar="N",
                        help="print the N largest values of each output with their indices (as tvmc)")
    parser.add_argument("--json", action="store_true", help="print the measurement record as one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--check", default=None, metavar="MODEL",
                        help="compare the board's outputs with the reference run of MODEL (the .tflite/.onnx the "
                             "archive was compiled from): TFLM, bit for bit for int8; ONNX Runtime for .onnx")
    parser.add_argument("--force", action="store_true", help="replace OUTPUTS if it exists")
    parser.add_argument("--profile", action="store_true",
                        help="build with a timer read around every operator and print a per-layer table")
    parser.add_argument("--profile-json", default=None, metavar="PROFILE.json",
                        help="with --profile: also write the per-layer profile (for 'dtmm report --profile')")
    parser.set_defaults(handler=run)


def load_inputs(path: str, spec: dict, array: np.ndarray | None = None) -> np.ndarray:
    """Read IN.npy and normalize it to (N, *input_shape); errors name the file and the shapes."""
    if array is None:
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DTMMError(f"{path}: cannot read inputs as .npy ({err})") from None
        if not isinstance(array, np.ndarray):
            raise DTMMError(f"{path}: is an .npz archive; name it *.npz (arrays keyed by input name)")
    shape = tuple(spec["shape"])
    if array.dtype != np.dtype(spec["dtype"]):
        raise DTMMError(f"{path}: dtype {array.dtype}, but model input '{spec['name']}' is {spec['dtype']}")
    if array.shape[1:] == shape:
        return array
    if shape and shape[0] == 1 and array.shape[1:] == shape[1:]:
        return array.reshape((array.shape[0],) + shape)
    expected = f"(N, {', '.join(map(str, shape))})"
    if shape and shape[0] == 1:
        expected += f" or (N, {', '.join(map(str, shape[1:]))})"
    raise DTMMError(f"{path}: shape {list(array.shape)} does not stack model inputs of shape {list(shape)}; expected {expected}")


def load_all_inputs(arg: str, specs: list) -> list:
    """``--inputs``: one .npy per model input (comma separated, in input order) or one .npz keyed
    by input name (``name`` or ``c_name`` of metadata.json); each normalized by :func:`load_inputs`."""
    if arg.endswith(".npz"):
        try:
            with np.load(arg, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except (OSError, ValueError) as err:
            raise DTMMError(f"{arg}: cannot read inputs as .npz ({err})") from None
        result = []
        for spec in specs:
            key = next((k for k in (spec["name"], spec.get("c_name")) if k in arrays), None)
            if key is None:
                raise DTMMError(f"{arg}: no array for model input '{spec['name']}'; it has {sorted(arrays)}")
            result.append(load_inputs(f"{arg}[{key}]", spec, arrays[key]))
        return result
    paths = arg.split(",")
    if len(paths) != len(specs):
        names = ", ".join(s["name"] for s in specs)
        raise DTMMError(f"--inputs: {len(paths)} file(s) for {len(specs)} model input(s) ({names}); give one .npy "
                        "per input, comma separated in this order, or one .npz keyed by input name")
    return [load_inputs(path, spec) for path, spec in zip(paths, specs)]


def _output_targets(arg: str, specs: list, force: bool) -> list:
    """The files ``--outputs`` names: one .npz, or one .npy per model output; none may exist
    unless ``force``."""
    paths = [arg] if arg.endswith(".npz") else arg.split(",")
    if not arg.endswith(".npz") and len(paths) != len(specs):
        names = ", ".join(s["name"] for s in specs)
        raise DTMMError(f"--outputs: {len(paths)} file(s) for {len(specs)} model output(s) ({names}); give one .npy "
                        "per output, comma separated in this order, or one .npz")
    for path in paths:
        if Path(path).exists() and not force:
            raise OutputExistsError(f"{path}: exists; pass --force to replace it")
        parent = Path(path).resolve().parent  # checked before the run, not after it
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise DTMMError(f"{path}: cannot write outputs there ({parent} is not a writable directory)")
    return paths


def _save(path: str, save) -> None:
    """Write through a temporary name so a failure leaves no partial file."""
    out_path = Path(path)
    tmp = out_path.with_name(out_path.name + ".partial" + out_path.suffix)
    try:
        save(tmp)
        tmp.replace(out_path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise DTMMError(f"{path}: cannot write outputs ({err.strerror or type(err).__name__})") from None


def write_outputs(paths: list, specs: list, outputs: list) -> None:
    if len(paths) == 1 and paths[0].endswith(".npz"):
        _save(paths[0], lambda tmp: np.savez(tmp, **{s["name"]: o for s, o in zip(specs, outputs)}))
        return
    for path, output in zip(paths, outputs):
        _save(path, lambda tmp, output=output: np.save(tmp, output))


def archive_isa(metadata: dict) -> str:
    """The kernel ISA an archive was specialized for (``"mve"``, ``"dsp"``, ``"c"``); archives
    written before metadata recorded it get their target's."""
    if "isa" in metadata:
        return metadata["isa"]
    if "target" not in metadata:  # not ours (e.g. TVM's Model Library Format): no dtmm kernels
        return "c"
    from ..kernels import target_isa
    from ..target import resolve_target

    return target_isa(resolve_target(metadata["target"]))


def check_board_isa(artifact: str, metadata: dict, board) -> None:
    """Refuse a board whose core lacks the archive's kernel ISA (its C would not build there)."""
    isa = archive_isa(metadata)
    missing = {"mve": not board.has_mve, "dsp": not board.has_dsp}.get(isa, False)
    if missing:
        what = {"mve": "MVE (Helium)", "dsp": "the DSP extension"}[isa]
        raise DTMMError(f"{artifact}: compiled for {metadata['target']}, whose kernels need {what}; board "
                        f"{board.name} ({board.core}) has none; compile for --target dtmm/{board.core} or "
                        "dtmm/portable")


def fill_inputs(spec: dict, mode: str) -> np.ndarray:
    """One input of the model's shape and dtype: zeros, ones or seeded random values."""
    shape, dtype = (1, *spec["shape"]), np.dtype(spec["dtype"])
    if mode == "zeros":
        return np.zeros(shape, dtype)
    if mode == "ones":
        return np.ones(shape, dtype)
    rng = np.random.default_rng(0)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    return rng.uniform(-1, 1, shape).astype(dtype)


def print_top(outputs, names: list, n: int) -> None:
    """The n largest values of each output of each inference, with their flat indices."""
    for k, out in enumerate(outputs if isinstance(outputs, list) else [outputs]):
        for i, row in enumerate(np.asarray(out).reshape(len(out), -1)):
            top = np.argsort(-row.astype(np.float64), kind="stable")[:n]
            pairs = ", ".join(f"{int(j)}: {row[j]}" for j in top)
            print(f"output {names[k] if k < len(names) else k} [{i}] top {len(top)}: {pairs}")


def run(args) -> int:
    from ..codegen import read_metadata
    from ..micro import run_artifact
    from ..target import DEFAULT_BOARD

    metadata = read_metadata(args.artifact)
    out_paths = _output_targets(args.outputs, metadata["outputs"], args.force) if args.outputs else []
    if args.inputs is None and getattr(args, "fill_mode", None) is None:
        raise DTMMError("give the inputs (--inputs IN.npy) or --fill-mode zeros|ones|random")
    inputs = (load_all_inputs(args.inputs, metadata["inputs"]) if args.inputs
              else [fill_inputs(spec, args.fill_mode) for spec in metadata["inputs"]])
    board = args.board or DEFAULT_BOARD.get(metadata.get("target"), "mps2-an386")
    from ..micro import get_board

    board_info = get_board(board)
    core = board_info.core
    check_board_isa(args.artifact, metadata, board_info)
    if metadata.get("target", f"dtmm/{core}") not in (f"dtmm/{core}", "dtmm/portable"):
        # Same kernel ISA (checked above), other core: the schedules were chosen for another
        # core, so the figures are not that target's.
        print(f"dtmm run: note: {args.artifact} was compiled for {metadata.get('target')}; running it on "
              f"{board} ({core})", file=sys.stderr)
    profile_json = getattr(args, "profile_json", None)
    if profile_json and Path(profile_json).exists() and not args.force:
        raise OutputExistsError(f"{profile_json}: exists; pass --force to replace it")
    do_profile = getattr(args, "profile", False) or bool(profile_json)
    from ..progress import RunProgress

    with RunProgress("run", len(inputs[0]), disable=getattr(args, "quiet", False)) as progress:
        result = run_artifact(args.artifact, board, inputs if len(inputs) > 1 else inputs[0], profile=do_profile,
                              progress=progress)
    if out_paths:
        outputs = result.outputs if len(metadata["outputs"]) > 1 else [result.outputs]
        write_outputs(out_paths, metadata["outputs"], outputs)
    record = result.to_dict()
    if args.check:
        from ..verify import check_outputs

        outputs = result.outputs if len(metadata["outputs"]) > 1 else [result.outputs]
        report = check_outputs(args.check, metadata, inputs, outputs, where=board)
        record["check"] = {"reference": report.reference, "inputs": report.inputs, "equal": True}
        if not args.json:
            print(f"{board}: outputs of {report.inputs} input(s) equal {report.reference}'s"
                  + ("" if all(o["exact"] for o in report.outputs) else " within float tolerance"))
    profile = None
    if do_profile:
        from ..micro.profile import format_profile, profile_rows, save_profile

        profile = profile_rows(metadata, result)
        record["profile"] = profile
        if profile_json:
            save_profile(profile, profile_json)
    if args.json:
        print(json.dumps(record))
    else:
        print(f"{board}: {record['inferences']} inference(s), {record['instructions']} instructions per inference, "
              f"flash {record['flash_bytes']} B, RAM {record['ram_bytes']} B")
        if profile is not None:
            print(format_profile(profile))
    if getattr(args, "print_top", None):
        print_top(result.outputs, result.output_names, args.print_top)
    return 0
