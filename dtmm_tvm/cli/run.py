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
    parser.add_argument("--inputs", required=True, help=".npy with N inputs stacked on a new first axis")
    parser.add_argument("--outputs", default=None, help=".npy to write the N outputs to")
    parser.add_argument("--json", action="store_true", help="print the measurement record as one JSON object")
    parser.add_argument("--force", action="store_true", help="replace OUTPUTS if it exists")
    parser.set_defaults(handler=run)


def load_inputs(path: str, spec: dict) -> np.ndarray:
    """Read IN.npy and normalize it to (N, *input_shape); errors name the file and the shapes."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DTMMError(f"{path}: cannot read inputs as .npy ({err})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        array.close()
        raise DTMMError(f"{path}: an .npz archive; --inputs takes one .npy array (numpy.save) with the N inputs "
                        "stacked on a new first axis")
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


def archive_isa(metadata: dict) -> str:
    """The kernel ISA an archive was specialized for (``"mve"``, ``"dsp"``, ``"c"``); archives
    written before metadata recorded it get their target's."""
    if "isa" in metadata:
        return metadata["isa"]
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


def run(args) -> int:
    from ..codegen import read_metadata
    from ..micro import run_artifact
    from ..target import DEFAULT_BOARD

    metadata = read_metadata(args.artifact)
    if args.outputs and Path(args.outputs).exists() and not args.force:
        raise OutputExistsError(f"{args.outputs}: exists; pass --force to replace it")
    spec = metadata["inputs"][0]
    inputs = load_inputs(args.inputs, spec)
    board = args.board or DEFAULT_BOARD.get(metadata["target"], "mps2-an386")
    from ..micro import get_board

    board_info = get_board(board)
    core = board_info.core
    check_board_isa(args.artifact, metadata, board_info)
    if metadata["target"] not in (f"dtmm/{core}", "dtmm/portable"):
        # Same kernel ISA (checked above), other core: the schedules were chosen for another
        # core, so the figures are not that target's.
        print(f"dtmm run: note: {args.artifact} was compiled for {metadata['target']}; running it on "
              f"{board} ({core})", file=sys.stderr)
    result = run_artifact(args.artifact, board, inputs)
    if args.outputs:
        out_path = Path(args.outputs)
        tmp = out_path.with_name(out_path.name + ".partial.npy")
        np.save(tmp, result.outputs)
        tmp.replace(out_path)
    record = result.to_dict()
    if args.json:
        print(json.dumps(record))
    else:
        print(f"{board}: {record['inferences']} inference(s), {record['instructions']} instructions per inference, "
              f"flash {record['flash_bytes']} B, RAM {record['ram_bytes']} B")
    return 0
