"""``dtmm compile MODEL --target dtmm/cortex-m4 -o OUT.tar``, like ``tvmc compile --target``."""

from __future__ import annotations

import argparse
import json

from ..target import TARGET_TAGS


def sparsity_threshold(text: str) -> float:
    """argparse type of ``--threshold``: a filterlet sparsity in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number; give a filterlet sparsity in [0, 1), e.g. 0.1") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside [0, 1): it is the filterlet sparsity above which a "
                                         "conv uses the sparse operator, e.g. 0.1")
    return value


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("compile", help="compile a .tflite/.onnx model to a Model Library Format tar")
    parser.add_argument("model", help="the .tflite or .onnx model")
    parser.add_argument("--target", default="dtmm/cortex-m4",
                        help=f"one of {', '.join(TARGET_TAGS)}, or tvmc's \"c -mcpu=cortex-m4\"")
    parser.add_argument("-o", "--output", required=True, help="the archive to write (.tar)")
    parser.add_argument("--dense", action="store_true", help="baseline: the same pipeline without the filterlet rewrite")
    parser.add_argument("--threshold", type=sparsity_threshold, default=None,
                        help="filterlet sparsity above which a conv uses the sparse operator (default 0.1)")
    parser.add_argument("--tuning-records", default=None, metavar="RECORDS.json",
                        help="apply the best per-layer schedules from 'dtmm tune' (same target)")
    parser.add_argument("--module-name", default="default",
                        help="prefix of every C symbol and the header: tvmgen_NAME_run, tvmgen_NAME.h (default: default)")
    parser.add_argument("--output-format", default="mlf", choices=["mlf"],
                        help="mlf: Model Library Format tar (the only format; metadata.json has MLF's fields)")
    parser.add_argument("--pass-config", action="append", default=[], metavar="NAME=VALUE",
                        help="a TVM PassContext config option (repeatable), as in tvmc")
    parser.add_argument("--disabled-pass", action="append", default=[], metavar="PASS[,PASS]",
                        help="passes to disable (by name), as in tvmc")
    parser.add_argument("--input-shapes", default=None, metavar="'name:[1,28,28,1]'",
                        help="checked against the model's static input shapes (tvmc's spelling)")
    parser.add_argument("--optimize", choices=("speed", "size"), default="speed",
                        help="per pruned conv: the weight format with the fewest predicted instructions "
                             "(never slower than dense; default) or the fewest bytes")
    parser.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--json", action="store_true", help="print the archive's metadata as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--verify", action="store_true",
                        help="build the generated C for the host (portable kernels), compare it with the reference "
                             "(TFLM for .tflite, ONNX Runtime for .onnx) and write nothing if it differs")
    parser.add_argument("--verify-inputs", default=None, metavar="FILE",
                        help="inputs for --verify: .npy (N stacked inputs) or .npz keyed by input name; "
                             "default: --verify-count random inputs")
    parser.add_argument("--verify-count", type=int, default=8, metavar="N", help="random inputs for --verify (default 8)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from ..compiler import compile_model
    from . import tvmc_compat

    target = tvmc_compat.map_target(args.target)
    tvmc_compat.check_input_shapes(args.model, tvmc_compat.parse_input_shapes(args.input_shapes))
    args.target = target
    from ..progress import StageBar

    verify = bool(args.verify or args.verify_inputs)
    stages = (["verify"] if verify else []) + ["import", "passes", "codegen", "archive"]
    with StageBar("compile", stages, disable=getattr(args, "quiet", False)) as bar:
        if verify:
            bar.stage("verify")
        report = _verify(args) if verify else None
        with tvmc_compat.pass_context(args.pass_config, args.disabled_pass):
            metadata = compile_model(args.model, args.output, target=target, mode="dense" if args.dense else "dtmm",
                                     threshold=args.threshold, force=args.force, tuning_records=args.tuning_records,
                                     module_name=args.module_name, optimize=args.optimize,
                                     verified=None if report is None else report.to_json(), progress=bar.stage)
    if args.json:
        print(json.dumps(metadata, indent=2))
        return 0
    if report is not None:
        print(f"{args.model}: {report.summary()}")
    print(f"wrote {args.output}: {metadata['target']}, mode {metadata['mode']}, "
          f"arena {metadata['arena']['bytes']} B, constants {metadata['constants_bytes']} B")
    if "tuning" in metadata:
        tuning = metadata["tuning"]
        print(f"  tuning records {tuning['records']}: {len(tuning['tuned_layers'])} layer(s) found, "
              f"{len(tuning['changed_layers'])} with a schedule other than the default")
    for layer in metadata.get("layers", []):
        if layer.get("op") in ("conv2d", "depthwise_conv2d", "fully_connected"):
            sparsity = layer.get("filterlet_sparsity")
            print(f"  {layer.get('model_layer', layer['name'])}: {layer['op']} {layer.get('format')}"
                  + (f", filterlet sparsity {sparsity:.0%}" if sparsity is not None else "")
                  + f", weights {layer.get('dense_weight_bytes')} -> {layer.get('stored_weight_bytes')} B"
                  + (f", tuned {layer['schedule']['schedule']}"
                     if "schedule" in layer and not layer["schedule"]["is_default"] else ""))
    return 0


def _verify(args):
    """``--verify``: before anything is written; a difference is a VerificationError (exit 2)."""
    from pathlib import Path

    from ..errors import DTMMError, OutputExistsError
    from ..verify import verify_model

    if Path(args.output).exists() and not args.force:
        raise OutputExistsError(f"{args.output}: exists; pass --force to replace it")
    if args.verify_count < 1:
        raise DTMMError(f"--verify-count {args.verify_count}: give at least 1 input")
    return verify_model(args.model, mode="dense" if args.dense else "dtmm", threshold=args.threshold,
                        inputs=args.verify_inputs, count=args.verify_count, target=args.target,
                        optimize=args.optimize)
