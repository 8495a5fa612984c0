"""``dtmm compile MODEL --target dtmm/cortex-m4 -o OUT.tar``, like ``tvmc compile --target``."""

from __future__ import annotations

import json

from ..target import TARGET_TAGS


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("compile", help="compile a .tflite/.onnx model to a Model Library Format tar")
    parser.add_argument("model", help="the .tflite or .onnx model")
    parser.add_argument("--target", default="dtmm/cortex-m4", help=f"one of {', '.join(TARGET_TAGS)}")
    parser.add_argument("-o", "--output", required=True, help="the archive to write (.tar)")
    parser.add_argument("--dense", action="store_true", help="baseline: the same pipeline without the filterlet rewrite")
    parser.add_argument("--threshold", type=float, default=None,
                        help="filterlet sparsity above which a conv uses the sparse operator (default 0.1)")
    parser.add_argument("--tuning-records", default=None, metavar="RECORDS.json",
                        help="apply the best per-layer schedules from 'dtmm tune' (same target)")
    parser.add_argument("--optimize", choices=("speed", "size"), default="speed",
                        help="per pruned conv: the weight format with the fewest predicted instructions "
                             "(never slower than dense; default) or the fewest bytes")
    parser.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--json", action="store_true", help="print the archive's metadata as JSON")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from ..compiler import compile_model

    metadata = compile_model(args.model, args.output, target=args.target, mode="dense" if args.dense else "dtmm",
                             threshold=args.threshold, force=args.force, tuning_records=args.tuning_records,
                             optimize=args.optimize)
    if args.json:
        print(json.dumps(metadata, indent=2))
        return 0
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
