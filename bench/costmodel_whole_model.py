"""The cost model against measured whole-model instructions (issue 7): for each model and target,
the DTMM build's per-operator profile on the target's emulated board (``dtmm run --profile``)
next to :func:`dtmm_tvm.costmodel.predict_artifact`'s per-operator prediction, and the plain
run's total (no timer marks) next to the predicted total.

    .venv/bin/python -m bench.costmodel_whole_model [--models a.tflite,b.tflite] [--targets ...]

Writes ``bench/results/costmodel_whole_model.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
DEFAULT_MODELS = ("models/fashion_mnist/fashion_cnn_filterlet_int8.tflite",
                  "models/fashion_mnist/fashion_cnn_dense_int8.tflite",
                  "bench/models/resnet8_s75.tflite", "bench/models/ds_cnn_s75.tflite")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS))
    ap.add_argument("--targets", default="dtmm/cortex-m4,dtmm/cortex-m55")
    ap.add_argument("--out", default=str(RESULTS / "costmodel_whole_model"))
    args = ap.parse_args()

    from bench.prune_targets import predicted_vs_measured
    from dtmm_tvm.frontend.tflite_reader import read_tflite

    record = {}
    lines = ["| model | target | predicted | measured | error | unpriced operators |", "|---|---|---|---|---|---|"]
    for model in [m for m in args.models.split(",") if m]:
        tfl = (ROOT / model).read_bytes()
        g = read_tflite(tfl, name="m")
        t = g.tensor(g.inputs[0])
        x = np.random.default_rng(0).integers(-128, 128, size=(1, *t.shape[1:])).astype(np.int8)
        for target in [t_ for t_ in args.targets.split(",") if t_]:
            with tempfile.TemporaryDirectory(prefix="dtmm-cm-bench-") as tmp:
                row = predicted_vs_measured(tfl, x, target, Path(tmp))
            record[f"{model} {target}"] = row
            lines.append(f"| {Path(model).stem} | {target} | {row['predicted_total']:,} | {row['measured_total']:,} | "
                         f"{row['error']:+.1%} | {', '.join(row['unpriced']) or '-'} |")
            print(lines[-1], flush=True)
    Path(args.out + ".json").write_text(json.dumps(record, indent=1) + "\n")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
