"""The experiment's two job kinds (run as Ray tasks by :func:`dtmm_tvm.sweep.runner.run_jobs`).

``prune_job(model, method, fraction, ...)``: prune the cached base model with ``method`` under a
flash budget of ``fraction`` of the dense model (the pruner's own search and cost model; ``dense``
= no pruning), fine-tune, export full int8; int8 test accuracy on all 10,000 test images.
A budget the method cannot meet (:class:`dtmm_tvm.pruning.BudgetError`, raised before any
fine-tuning) is a finished job whose result says so, with the smallest figures the cost model
predicts at the most pruning the method allows (``not_achievable``); it has no model to measure.
``measure_job(tflite, board target, ...)``: compile the int8 model for the target (``dtmm
compile``'s default build), run one test image on the emulated board (QEMU ``-icount``):
instructions per inference, stored constants (weights + index + requantization), ELF flash,
arena (peak SRAM of activations), per-layer formats and bytes.

Accuracy: TensorFlow Lite's interpreter with its builtin int8 kernels (no delegates) over the
10,000 test images, checked bit-exact against TFLM (``dtmm_tvm.reference.run_tflm``) on the
first ``TFLM_CHECK`` test images of every model (recorded per job); TFLM itself takes about
20 ms per image on this machine, too slow for 10,000 images x 50 models.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TFLM_CHECK = 200
VAL_IMAGES = 2000
#: Test images of the pruner's float-accuracy figures (three passes per job); the int8 accuracy
#: reported is on all 10,000.
FLOAT_TEST_IMAGES = 2000


def _data(train_images: int):
    from dtmm_tvm.pruning.data import Dataset, fashion_mnist

    d = fashion_mnist()
    return d, Dataset("fashion-mnist", d.x_train[:train_images], d.y_train[:train_images], d.x_val[:VAL_IMAGES],
                      d.y_val[:VAL_IMAGES], d.x_test[:FLOAT_TEST_IMAGES], d.y_test[:FLOAT_TEST_IMAGES])


def int8_test_accuracy(tflite: bytes, x: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy over all of ``x`` (TFLite builtin kernels) and bit-exactness against TFLM."""
    import tensorflow as tf

    from dtmm_tvm.reference import run_tflm

    it = tf.lite.Interpreter(model_content=tflite,
                             experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    inp = it.get_input_details()[0]
    scale, zp = inp["quantization"]
    xq = np.clip(np.round(x / scale) + zp, -128, 127).astype(np.int8)
    it.allocate_tensors()   # batch 1 as exported (a flatten's reshape is fixed to it)
    oidx = it.get_output_details()[0]["index"]
    rows = []
    for i in range(len(xq)):
        it.set_tensor(inp["index"], xq[i:i + 1])
        it.invoke()
        rows.append(it.get_tensor(oidx).reshape(-1).copy())
    out = np.stack(rows)
    ref = run_tflm(tflite, xq[:TFLM_CHECK]).reshape(TFLM_CHECK, -1)
    return {"int8_accuracy": float(np.mean(out.argmax(1) == y)), "images": int(len(y)),
            "tflm_bit_exact_images": TFLM_CHECK, "tflm_bit_exact": bool(np.array_equal(ref, out[:TFLM_CHECK])),
            "tflm_accuracy_check_images": float(np.mean(ref.argmax(1) == y[:TFLM_CHECK]))}


def _one_thread_per_job() -> None:
    """One TensorFlow thread per job: the jobs already fill the cores (Ray, 1 CPU each)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:   # already initialized in this worker (an earlier job set it)
        pass


def prune_job(model: str, method: str, fraction: float | None, seed: int, epochs: int, train_images: int,
              cache: str, base_epochs: int, cost_formats: list, out_dir: str, target: str = "dtmm/cortex-m4",
              base_images: int | None = None, base_recipe: str | None = None, lr: float = 1e-3,
              distill: float = 0.0, schedule: str = "oneshot", max_filter_ratio: float = 0.9,
              instructions_fraction: float | None = None) -> dict:
    _one_thread_per_job()
    import keras

    from dtmm_tvm.pruning import Budget, BudgetError, prune
    from dtmm_tvm.pruning.finetune import export_int8

    from .models import BASE_IMAGES, RECIPE, base_model

    full, data = _data(train_images)
    if base_recipe not in (None, RECIPE):
        raise RuntimeError(f"base recipe '{base_recipe}' asked, this code trains '{RECIPE}'")
    base, _ = base_model(model, Path(cache), full, base_epochs, seed, base_images or BASE_IMAGES)
    started = time.time()
    stages = {}
    if method == "dense":
        rng = np.random.default_rng(seed)
        rep = data.x_train[rng.choice(len(data.x_train), 200, replace=False)]
        tflite = export_int8(base, rep)
        report = {"method": "dense", "plan": {}, "predicted": None, "layers": [],
                  "accuracy": {"float_pruned": float(np.mean(base.predict(data.x_test, verbose=0).argmax(1)
                                                             == data.y_test))}}
    else:
        keras.utils.set_random_seed(seed)
        def stage(event, info):   # when each stage of the pruner started (where a job's time goes)
            stages.setdefault(event, round(time.time() - started, 1))

        try:
            res = prune(base, data, Budget(flash_fraction=fraction, instructions_fraction=instructions_fraction), target, method=method, epochs=epochs,
                        lr=lr, distill=distill, schedule=schedule, max_filter_ratio=max_filter_ratio, seed=seed, check_compiled=False, eval_dense_int8=False, int8_accuracy_images=50,
                        # the default energy weights of dtmm prune; the baselines search one ratio
                        objective_weight=0.1, progress=stage)
        except BudgetError as err:
            if err.smallest is None:
                raise
            return {"model": model, "method": method, "fraction": fraction,
                    "not_achievable": {"smallest_flash_bytes": int(err.smallest.flash_bytes),
                                       "smallest_instructions": int(err.smallest.instructions),
                                       "budget_flash_bytes": err.budget.flash_bytes if err.budget else None,
                                       "message": str(err)},
                    "seconds": round(time.time() - started, 1)}
        tflite, report = res.tflite, res.report
    stages["int8_accuracy"] = round(time.time() - started, 1)
    acc = int8_test_accuracy(tflite, full.x_test, full.y_test)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sha = hashlib.sha256(tflite).hexdigest()
    path = out / f"{model}_{method}_{fraction}_{sha[:12]}.tflite"
    path.write_bytes(tflite)
    return {"model": model, "method": method, "fraction": fraction, "tflite": str(path), "tflite_sha256": sha,
            "accuracy": {**acc, "float": report["accuracy"].get("float_pruned"),
                         "float_dense": report["accuracy"].get("float_dense"), "float_images": len(data.y_test)},
            "budget": report.get("budget"), "plan": report.get("plan"),
            "predicted": report.get("predicted"), "layers": report.get("layers"),
            "stages_started_s": stages, "seconds": round(time.time() - started, 1)}


def measure_job(tflite: str, tflite_sha256: str, target: str, code_version: str) -> dict:
    from dtmm_tvm.compiler import compile_model
    from dtmm_tvm.frontend.tflite_reader import read_tflite
    from dtmm_tvm.micro import run_artifact
    from dtmm_tvm.pruning.data import fashion_mnist
    from dtmm_tvm.reference import run_tflm
    from dtmm_tvm.target import DEFAULT_BOARD

    data = fashion_mnist()
    if not Path(tflite).is_file():  # the pruned files are not committed (a clean clone has none)
        raise FileNotFoundError(f"{tflite}: the pruned model this measurement needs is not here (its prune "
                                "job ran elsewhere); rerun the experiment into a new --out directory")
    blob = Path(tflite).read_bytes()
    if hashlib.sha256(blob).hexdigest() != tflite_sha256:
        raise RuntimeError(f"{tflite}: changed since it was pruned")
    g = read_tflite(blob, name="m")
    t = g.tensor(g.inputs[0])
    xq = np.clip(np.round(data.x_test[:1] / float(t.scale[0])) + int(t.zero_point[0]), -128, 127).astype(np.int8)
    with tempfile.TemporaryDirectory(prefix="dtmm-bench-prune-") as tmp:
        art = Path(tmp) / "m.tar"
        meta = compile_model(tflite, art, target=target, force=True)
        spec = meta["inputs"][0]
        res = run_artifact(art, DEFAULT_BOARD[target], xq.reshape((1,) + tuple(spec["shape"])), timeout_s=1800)
    ref = run_tflm(blob, xq)
    layers = [{"name": l.get("model_layer", l.get("name")), "op": l.get("op"), "format": l.get("format"),
               "stored_weight_bytes": l.get("stored_weight_bytes"), "dense_weight_bytes": l.get("dense_weight_bytes"),
               "kept_macs": l.get("kept_macs"), "macs": l.get("macs")} for l in meta.get("layers", [])]
    return {"target": target, "board": DEFAULT_BOARD[target], "instructions": int(res.instructions),
            "constants_bytes": int(meta["constants_bytes"]), "elf_flash_bytes": int(res.flash_bytes),
            "arena_bytes": int(meta["arena"]["bytes"]),
            "bit_exact_vs_tflm": bool(np.array_equal(ref.reshape(res.outputs.shape), res.outputs)),
            "layers": layers}
