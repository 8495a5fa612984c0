"""``dtmm run OUT.tar --board mps2-an386 --inputs IN.npy --outputs OUT.npy --json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..errors import DTMMError, OutputExistsError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("run", help="run a compiled archive on an emulated board and measure it")
    parser.add_argument("artifact", help="the archive written by 'dtmm compile'")
    parser.add_argument("--board", default=None, help="mps2-an386 (Cortex-M4), mps2-an500 (M7), mps3-an547 (M55); "
                                                      "default: the artifact target's board")
    parser.add_argument("--inputs", default=None, help=".npy with N inputs stacked on a new first axis")
    parser.add_argument("--fill-mode", default=None, choices=["zeros", "ones", "random"],
                        help="without --inputs: one input of zeros, ones or seeded random values (as tvmc)")
    parser.add_argument("--print-top", type=int, default=None, metavar="N",
                        help="print the N largest values of each output with their indices (as tvmc)")
    parser.add_argument("--outputs", default=None, help=".npy to write the N outputs to")
    parser.add_argument("--json", action="store_true", help="print the measurement record as one JSON object")
    parser.add_argument("--force", action="store_true", help="replace OUTPUTS if it exists")
    parser.add_argument("--profile", action="store_true",
                        help="build with a timer read around every operator and print a per-layer table")
    parser.add_argument("--profile-json", default=None, metavar="PROFILE.json",
                        help="with --profile: also write the per-layer profile (for 'dtmm report --profile')")
    parser.set_defaults(handler=run)


def load_inputs(path: str, spec: dict) -> np.ndarray:
    """Read IN.npy and normalize it to (N, *input_shape); errors name the file and the shapes."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DTMMError(f"{path}: cannot read inputs as .npy ({err})") from None
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
    if args.outputs and Path(args.outputs).exists() and not args.force:
        raise OutputExistsError(f"{args.outputs}: exists; pass --force to replace it")
    spec = metadata["inputs"][0]
    if args.inputs is None and getattr(args, "fill_mode", None) is None:
        raise DTMMError("give the inputs (--inputs IN.npy) or --fill-mode zeros|ones|random")
    inputs = load_inputs(args.inputs, spec) if args.inputs else fill_inputs(spec, args.fill_mode)
    board = args.board or DEFAULT_BOARD.get(metadata["target"], "mps2-an386")
    from ..micro import get_board

    core = get_board(board).core
    if metadata["target"] != f"dtmm/{core}":
        # The archive is C: it builds for any core (its kernels take the board's ISA path), but
        # its schedules were chosen for another core, so the figures are not that target's.
        print(f"dtmm run: note: {args.artifact} was compiled for {metadata['target']}; running it on "
              f"{board} ({core})", file=sys.stderr)
    profile_json = getattr(args, "profile_json", None)
    if profile_json and Path(profile_json).exists() and not args.force:
        raise OutputExistsError(f"{profile_json}: exists; pass --force to replace it")
    do_profile = getattr(args, "profile", False) or bool(profile_json)
    result = run_artifact(args.artifact, board, inputs, profile=do_profile)
    if args.outputs:
        out_path = Path(args.outputs)
        tmp = out_path.with_name(out_path.name + ".partial.npy")
        np.save(tmp, result.outputs)
        tmp.replace(out_path)
    record = result.to_dict()
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
