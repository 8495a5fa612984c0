"""The tuner: measure each tunable layer's candidate schedules on an emulated board.

For every conv / filterlet conv / depthwise / fully connected ``call_tir`` of the lowered model
(PrimFuncs carrying ``"dtmm.layer"`` and ``"dtmm.params"``), the tuner

1. takes the op's ``schedule_space(params, target)`` (default first): all of it when it has at
   most ``trials`` candidates, else the default plus a seeded random sample of ``trials - 1``;
2. rebuilds the layer's PrimFunc with each candidate and wraps it in a one-layer Relax ``main``
   (the layer's input as the only parameter, its constants unchanged), written with
   :func:`dtmm_tvm.codegen.write_archive`;
3. runs every artifact on the board with the same fixed random inputs (seeded) and records the
   instructions per inference;
4. rejects any candidate whose outputs differ from the default schedule's (the default kernels
   are bit-exact with TFLM, so a difference is a kernel bug): it is stored with an ``error`` and
   never chosen.

Builds and emulator runs (arm-none-eabi-gcc + QEMU, subprocesses) use ``workers`` threads; the
TVM side (PrimFunc builders, C codegen) stays on the calling thread.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DTMMError
from ..schedules.layers import TunableLayer, attr as _attr, tunable_layers
from ..schedules.records import (
    TuningRecords,
    apply_records,
    params_json,
    schedule_str,
    schedule_to_json,
)

#: Random inputs per measurement (instructions = the maximum over them, outputs all compared).
N_INPUTS = 2


@dataclass
class Candidate:
    layer: TunableLayer
    index: int
    schedule: object
    artifact: Path | None = None
    instructions: int | None = None
    outputs: object = None
    error: str | None = None


# -- layers ------------------------------------------------------------------------------
def _builder(op: str):
    if op == "conv2d":
        from ..ops.conv2d import conv2d_int8

        return lambda layer, **kw: conv2d_int8(layer.params, **kw)
    if op == "conv2d_filterlet":
        from ..ops.conv2d_filterlet import conv2d_filterlet_int8

        return lambda layer, **kw: conv2d_filterlet_int8(layer.params, layer.extra["kept_filterlets"],
                                                         **layer.build_kwargs, **kw)
    if op == "conv2d_compact":
        from ..ops.conv2d_compact import conv2d_compact_int8

        return lambda layer, **kw: conv2d_compact_int8(layer.params, layer.extra["kept_filters"], **kw)
    if op == "depthwise_conv2d":
        from ..ops.depthwise_conv2d import depthwise_conv2d_int8

        return lambda layer, **kw: depthwise_conv2d_int8(layer.params, **kw)
    if op == "fully_connected":
        from ..ops.fully_connected import fully_connected_int8

        return lambda layer, **kw: fully_connected_int8(layer.params, **kw)
    raise KeyError(op)


def _space(op: str):
    if op in ("conv2d", "conv2d_filterlet", "conv2d_compact"):
        from ..schedules.conv import schedule_space
    elif op == "depthwise_conv2d":
        from ..schedules.depthwise import schedule_space
    else:
        from ..schedules.fully_connected import schedule_space
    return schedule_space


def _scheduled_params(layer: TunableLayer):
    """The layer the schedules apply to: the compact conv schedules the dense conv of its kept filters."""
    if layer.op == "conv2d_compact":
        from ..ops.conv2d_compact import compact_params

        return compact_params(layer.params, layer.extra["kept_filters"])
    return layer.params


def select_candidates(space: list, trials: int, seed: int, key: str) -> list:
    """The whole space if it fits in ``trials``, else the default (first) plus a seeded sample."""
    if len(space) <= trials:
        return list(space)
    rng = random.Random(f"{seed}:{key}")
    return [space[0]] + rng.sample(space[1:], max(trials - 1, 0))


def one_layer_module(layer: TunableLayer, func, name: str | None = None):
    """A Relax module whose ``main(input)`` is the layer's single ``call_tir`` with its constants."""
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("input", layer.input_ty)
    with bb.function("main", [x]):
        with bb.dataflow():
            gvar = bb.add_func(func, name or layer.names[0])
            out = bb.emit_output(relax.call_tir(gvar, [x, *layer.constants], layer.out_ty))
        bb.emit_func_output(out)
    return bb.get()


def build_candidate_func(layer: TunableLayer, schedule, target):
    """The layer's PrimFunc built with ``schedule``, carrying the lowered function's attributes."""
    func = _builder(layer.op)(layer, target=target, schedule=schedule)
    for name in ("dtmm.layer", "dtmm.params"):
        value = _attr(layer.func, name)
        if value is not None:
            func = func.with_attr(name, value)
    # The constants were computed for the lowered kernel: a candidate must take the same ones.
    if _attr(func, "dtmm.bias") != _attr(layer.func, "dtmm.bias") or len(func.params) != len(layer.func.params):
        raise DTMMError(f"schedule {schedule_str(schedule)} changes the kernel's parameters")
    return func


def layer_inputs(layer: TunableLayer, seed: int) -> np.ndarray:
    shape = [int(d) for d in layer.input_ty.shape]
    dtype = np.dtype(str(layer.input_ty.dtype))
    rng = np.random.default_rng(int.from_bytes(f"{seed}:{layer.key}".encode()[-8:], "little"))
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=(N_INPUTS, *shape), dtype=dtype)


# -- the search --------------------------------------------------------------------------
def describe_candidate(cand: Candidate, default_instr: int | None) -> str:
    """``layer schedule 1.234 M instr (0.91x default)`` or ``layer schedule error: ...``."""
    name = cand.layer.names[0]
    if cand.error:
        what = f"error: {cand.error.splitlines()[0][:120]}"
    else:
        what = f"{cand.instructions / 1e6:.3f} M instr"
        if default_instr and cand.index:
            what += f" ({cand.instructions / default_instr:.2f}x default)"
        elif not cand.index:
            what += " (default)"
    return f"{name} {schedule_str(cand.schedule)} {what}"


def _progress_printer(stream=None):
    def show(done: int, total: int, cand: Candidate, default_instr: int | None):
        print(f"[{done}/{total}] {describe_candidate(cand, default_instr)}", file=stream or sys.stderr, flush=True)

    return show


@contextmanager
def _closing(pool):
    try:
        yield pool
    finally:
        pool.close()


def run_artifact_bytes(artifact: bytes, board: str, inputs):
    """:func:`dtmm_tvm.micro.run_artifact` on an artifact sent as bytes (a Ray task on any node)."""
    from ..micro import run_artifact

    with tempfile.TemporaryDirectory(prefix="dtmm-tune-task-") as tmp:
        path = Path(tmp) / "artifact.tar"
        path.write_bytes(artifact)
        return run_artifact(path, board, inputs, build_dir=tmp)


def tune_model(
    model_path,
    *,
    target: str = "dtmm/cortex-m4",
    board: str | None = None,
    trials: int = 8,
    mode: str = "dtmm",
    threshold: float | None = None,
    seed: int = 0,
    workers: int = 2,
    progress=True,
    build_dir=None,
    ray: str | None = None,
) -> TuningRecords:
    """Tune every conv / depthwise / fully connected layer of a model; return the records.

    Parameters
    ----------
    model_path
        The .tflite / .onnx model (lowered exactly as ``dtmm compile`` with ``mode`` and
        ``threshold`` would, with default schedules).
    target, board
        dtmm target tag and the board to measure on (default: the target's board); the board's
        core must be the target's.
    trials
        Candidates measured per layer at most, the default included.
    seed
        Seeds the candidate sample and the random layer inputs.
    workers
        Parallel builds / emulator runs.
    ray
        Run the emulator measurements as Ray tasks on this cluster (``"auto"``, ``"HOST:PORT"``
        or ``"local"``: a local Ray) through :mod:`dtmm_tvm.sweep.runner`, the runner sweeps
        use; default: ``workers`` threads of the same runner.
    progress
        True: a progress line per measured candidate on stderr; a callable
        ``progress(done, total, candidate, default_instructions)``; False: silent.
    """
    from ..compiler import MODES, lower_model
    from ..codegen import write_archive
    from ..frontend.loader import load_model
    from ..micro import get_board, run_artifact
    from ..micro.project import load_server, template_dir
    from ..target import DEFAULT_BOARD, resolve_target, target_tag

    if trials < 1:
        raise DTMMError(f"--trials must be at least 1, got {trials}")
    if mode not in MODES:
        raise DTMMError(f"unknown mode '{mode}'; choose one of {MODES}")
    tvm_target = resolve_target(target)
    tag = target_tag(tvm_target)
    board_obj = get_board(board or DEFAULT_BOARD[tag])
    mcpu = str(tvm_target.attrs.get("mcpu"))
    if board_obj.core != mcpu:
        raise DTMMError(f"board {board_obj.name} has a {board_obj.core}, target {tag} is for a {mcpu}; "
                        f"tune on {DEFAULT_BOARD[tag]}")
    show = _progress_printer() if progress is True else (progress or None)
    model = load_model(model_path)
    with tvm_target, apply_records(None):  # defaults only, even inside an outer apply_records
        lowered = lower_model(model, sparse=(mode == "dtmm"), threshold=threshold)
        layers = tunable_layers(lowered)
        _name_model_layers(model, layers)
        plans = []
        for layer in layers:
            space = _space(layer.op)(_scheduled_params(layer), tvm_target)
            plans.append((layer, space, select_candidates(space, trials, seed, layer.key)))

    total = sum(len(c) for _, _, c in plans)
    load_server(template_dir())  # import the template's server once, before the worker threads
    started = time.time()
    results: dict[str, list[Candidate]] = {}
    from ..sweep.runner import executor

    pool = executor(ray, workers) if ray not in (None, "local") else executor(None, workers, use_ray=ray == "local")
    with tempfile.TemporaryDirectory(prefix="dtmm-tune-", dir=build_dir) as tmp, _closing(pool):
        futures = []
        done = 0
        defaults: dict[str, int | None] = {}

        def finish(cand: Candidate, future):
            try:
                res = pool.result(future)
                cand.instructions = int(res.instructions)
                cand.outputs = res.outputs
            except DTMMError as err:
                cand.error = f"run failed: {err}"
            except Exception as err:  # a toolchain crash must not lose the other measurements
                cand.error = f"run failed: {type(err).__name__}: {err}"

        for li, (layer, space, chosen) in enumerate(plans):
            inputs = layer_inputs(layer, seed)
            cands = results.setdefault(layer.key, [])
            for ci, schedule in enumerate(chosen):
                cand = Candidate(layer, ci, schedule)
                cands.append(cand)
                try:
                    with tvm_target, apply_records(None):
                        func = build_candidate_func(layer, schedule, tvm_target)
                        mod = one_layer_module(layer, func)
                    cand.artifact = Path(tmp) / f"{li:03d}_{ci:03d}.tar"
                    write_archive(mod, cand.artifact, {"target": tag, "mode": mode,
                                                       "model": {"name": layer.names[0], "source": None,
                                                                 "sha256": None}}, overwrite=True)
                except DTMMError as err:
                    cand.error = f"build failed: {err}"
                except Exception as err:  # noqa: BLE001 - a broken candidate kernel is a finding
                    cand.error = f"build failed: {type(err).__name__}: {err}"
                if cand.error is None and pool.kind == "ray":   # the artifact travels with the task
                    fut = pool.submit(run_artifact_bytes, cand.artifact.read_bytes(), board_obj.name, inputs)
                elif cand.error is None:
                    fut = pool.submit(run_artifact, cand.artifact, board_obj.name, inputs,
                                      build_dir=tmp)
                else:
                    fut = None
                futures.append((cand, fut))
        # Collect in submission order (progress lines in a stable order).
        for cand, fut in futures:
            if fut is not None:
                finish(cand, fut)
            layer_cands = results[cand.layer.key]
            default = layer_cands[0]
            if cand.index == 0:
                defaults[cand.layer.key] = default.instructions
            elif cand.error is None and default.error is None and not _same(cand.outputs, default.outputs):
                cand.error = ("outputs differ from the default schedule's on the same inputs "
                              "(kernel bug?); rejected")
            elif cand.error is None and default.error is not None:
                cand.error = "no reference: the default schedule failed"
            done += 1
            if show:
                show(done, total, cand, defaults.get(cand.layer.key))

    records = TuningRecords(tag, board_obj.name, info={
        "model": {"source": model.path.name, "sha256": model.sha256},
        "mode": mode, "threshold": threshold, "trials": trials, "seed": seed, "inputs": N_INPUTS,
        "measure": "instructions per inference (max over the random inputs), one-layer artifacts",
        "seconds": round(time.time() - started, 1),
    })
    for layer, space, _ in plans:
        records.layers[layer.key] = _entry(layer, space, results[layer.key])
    return records


def _name_model_layers(model, layers: list) -> None:
    """Attach the model's layer names (as metadata.json's ``model_layer``) for the records."""
    from ..compiler import _name_layers

    meta = {"layers": [dict(layer.layer) for layer in layers]}
    _name_layers(model, meta)
    for layer, named in zip(layers, meta["layers"]):
        if named.get("model_layer"):
            layer.layer["model_layer"] = named["model_layer"]


def _same(a, b) -> bool:
    if isinstance(a, list) or isinstance(b, list):
        return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    return np.array_equal(a, b)


def _entry(layer: TunableLayer, space: list, cands: list[Candidate]) -> dict:
    default = cands[0]
    valid = [c for c in cands if c.error is None and c.instructions is not None]
    best = min(valid, key=lambda c: (c.instructions, c.index)) if valid and default.error is None else None
    entry = {
        "op": layer.op,
        "layers": list(layer.names),
        "params": params_json(layer.params),
        **({"extra": dict(layer.extra)} if layer.extra else {}),
        "space_size": len(space),
        "default": {"schedule": schedule_to_json(default.schedule), "instructions": default.instructions,
                    **({"error": default.error} if default.error else {})},
        "best": ({"schedule": schedule_to_json(best.schedule), "instructions": best.instructions}
                 if best is not None else None),
        "candidates": [{"schedule": schedule_to_json(c.schedule), "instructions": c.instructions,
                        "error": c.error} for c in cands],
    }
    if layer.layer.get("model_layer"):
        entry["model_layer"] = layer.layer["model_layer"]
    return entry
