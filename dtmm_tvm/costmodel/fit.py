"""Fit the latency model from instruction counts our kernels produce on QEMU.

``fit_target(target)`` samples layer shapes (seeded), builds each one alone for every weight
format, runs it on the target's board (:mod:`dtmm_tvm.costmodel.measure`), fits one coefficient
vector per op / format by non-negative least squares on the *relative* error, and reports the
per-layer error on shapes held out of the fit. ``dtmm fit-cost-model`` calls it and writes the
JSON that ships in ``dtmm_tvm/costmodel/coefficients/``.
"""

from __future__ import annotations

import datetime as _dt
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .features import (CONV_FEATURES, CONV_FORMATS, PATTERN_FEATURES, ConvShape, conv_features, depthwise_features,
                       fc_features, pattern_features)

from .features import UNSTRUCTURED, UNSTRUCTURED_FEATURES

SPARSE_FORMATS = tuple(f for f in CONV_FORMATS[1:] if f != UNSTRUCTURED)
#: Element sparsities of the unstructured format's points (two per conv shape, 1x1 included).
UNSTRUCTURED_SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95)


def _same_padding(h, w, k, s):
    from ..quant.conv import same_padding

    return same_padding((h, w), (k, k), (s, s))


def sample_plan(seed: int = 0, conv_points: int = 14, small_points: int = 8, heldout_every: int = 4):
    """The measurement plan: a list of dicts ``{kind, fmt, shape, sparsity, heldout}``.

    Regular convs: ``conv_points`` (shape, sparsity) pairs, each measured dense (at its sparsity:
    the dense kernel's cost does not depend on it) and in every sparse format. Every
    ``heldout_every``-th pair is held out of the fit. Depthwise and FC: ``small_points`` each.
    """
    rng = np.random.default_rng(seed)
    # the pattern kernel's points draw from their own stream: the other points stay as they were
    pattern_rng = np.random.default_rng(seed + 1000)
    plan = []
    conv_shapes = []
    # Shapes of the Fashion-MNIST demo / VGG-style models first, then random ones.
    fixed = [(28, 28, 1, 16, 3, 1), (14, 14, 16, 32, 3, 1), (7, 7, 32, 64, 3, 1), (16, 16, 32, 32, 3, 1)]
    for i in range(conv_points):
        if i < len(fixed):
            h, w, cin, cout, k, s = fixed[i]
        else:
            hw = int(rng.choice([6, 8, 10, 12, 16]))
            h = w = hw
            cin = int(rng.choice([3, 8, 12, 16, 24, 32, 48]))
            cout = int(rng.choice([8, 16, 24, 32]))
            k = int(rng.choice([3, 3, 3, 1, 5]))
            s = int(rng.choice([1, 1, 2]))
        if k == 1:
            sparsity = 0.0  # 1x1 convs are pruned by filters only: they stay dense
        else:
            sparsity = float(rng.choice([0.3, 0.5, 0.7, 0.85, 0.95]))
        shape = ConvShape(h, w, cin, cout, k, k, (s, s), _same_padding(h, w, k, s))
        heldout = i % heldout_every == heldout_every - 1
        conv_shapes.append(shape)
        plan.append(dict(kind="conv", fmt="dense", shape=shape, sparsity=sparsity, heldout=heldout))
        if k > 1:
            for fmt in SPARSE_FORMATS:
                plan.append(dict(kind="conv", fmt=fmt, shape=shape, sparsity=sparsity, heldout=heldout))
        if k == 3:  # the pattern baseline (3x3 only): connectivity-pruned fraction, pattern count
            for _ in range(3):
                plan.append(dict(kind="conv", fmt="pattern", shape=shape,
                                 sparsity=float(pattern_rng.choice([0.0, 0.3, 0.5, 0.7])),
                                 patterns=int(pattern_rng.choice([4, 6, 8, 12, 16])), heldout=heldout))
    for i in range(small_points):
        hw = int(rng.choice([6, 8, 12, 16]))
        c = int(rng.choice([8, 16, 24, 32, 48]))
        s = int(rng.choice([1, 1, 2]))
        shape = ConvShape(hw, hw, c, c, 3, 3, (s, s), _same_padding(hw, hw, 3, s), depthwise=True)
        plan.append(dict(kind="depthwise", fmt="dense", shape=shape, sparsity=0.0,
                         heldout=i % heldout_every == heldout_every - 1))
    for i in range(small_points):
        fin = int(rng.choice([32, 64, 100, 128, 256, 400, 576]))
        fout = int(rng.choice([10, 16, 32, 64]))
        plan.append(dict(kind="fc", fmt="dense", shape={"in_features": fin, "out_features": fout},
                         sparsity=0.0, heldout=i % heldout_every == heldout_every - 1))
    # The unstructured format last, from its own generator: the points above (and their seeds,
    # the index in the plan) stay those of the earlier fits.
    urng = np.random.default_rng(seed + 1)
    for i, shape in enumerate(conv_shapes):
        for j, sparsity in enumerate(urng.choice(UNSTRUCTURED_SPARSITIES, size=2, replace=False)):
            plan.append(dict(kind="conv", fmt=UNSTRUCTURED, shape=shape, sparsity=float(sparsity),
                             heldout=(2 * i + j) % heldout_every == heldout_every - 1))
    return plan


def _conv_shape(point: dict, index: int | None = None) -> ConvShape:
    shape = point["shape"]
    if isinstance(shape, dict):
        shape = ConvShape(**{k: tuple(v) if isinstance(v, list) else v for k, v in shape.items()})
    if shape.kept_runs is None and "seed" in point and point["fmt"] not in ("dense", UNSTRUCTURED):
        # Replay the measured mask (measure.conv_weights is deterministic in the seed).
        from .measure import conv_weights, kept_runs

        keep = conv_weights(shape, point["sparsity"], point["seed"])[1]
        shape = ConvShape(**{**shape.__dict__, "kept_runs": kept_runs(keep)})
    return shape


def features_of(point: dict, target: str) -> list:
    if point["kind"] == "conv" and point["fmt"] == "pattern":
        shape = point["shape"]
        if isinstance(shape, dict):
            shape = ConvShape(**{k: tuple(v) if isinstance(v, list) else v for k, v in shape.items()})
        return pattern_features(shape, point["kept_kernels"], point["patterns"], target)
    if point["kind"] == "conv":
        return conv_features(_conv_shape(point), point["fmt"], target)
    if point["kind"] == "depthwise":
        shape = point["shape"]
        if isinstance(shape, dict):
            shape = ConvShape(**{k: tuple(v) if isinstance(v, list) else v for k, v in shape.items()})
        return depthwise_features(shape, target)
    return fc_features(point["shape"]["in_features"], point["shape"]["out_features"], target)


def group_of(point: dict) -> str:
    return f"conv/{point['fmt']}" if point["kind"] == "conv" else point["kind"]


def nnls_relative(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative coefficients minimising the sum of squared *relative* errors.

    Active-set by elimination: solve the weighted least squares, drop the most negative
    coefficient, repeat (few features, so this is exact enough and needs only numpy)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = 1.0 / np.maximum(y, 1.0)
    active = list(range(x.shape[1]))
    coef = np.zeros(x.shape[1])
    while active:
        xs = x[:, active] * w[:, None]
        # Column scaling keeps the solve well conditioned (features span 1 .. 1e7).
        scale = np.maximum(np.abs(xs).max(axis=0), 1e-12)
        sol, *_ = np.linalg.lstsq(xs / scale, y * w, rcond=None)
        sol = sol / scale
        if (sol >= 0).all():
            coef[:] = 0
            coef[active] = sol
            return coef
        del active[int(np.argmin(sol))]
    return coef


def fit_points(points: list, target: str) -> dict:
    """``{group: coefficients}`` fitted on the points that are not held out."""
    groups: dict = {}
    for p in points:
        if not p.get("heldout") and p.get("instructions"):
            groups.setdefault(group_of(p), []).append(p)
    out = {}
    for g, pts in groups.items():
        x = np.array([features_of(p, target) for p in pts])
        y = np.array([p["instructions"] for p in pts], dtype=np.float64)
        out[g] = [float(c) for c in nnls_relative(x, y)]
    return out


def errors(points: list, coefficients: dict, target: str, heldout: bool = True) -> list:
    rows = []
    for p in points:
        if bool(p.get("heldout")) != heldout or not p.get("instructions"):
            continue
        coef = coefficients.get(group_of(p))
        if coef is None:
            continue
        pred = float(np.dot(coef, features_of(p, target)))
        rows.append({"group": group_of(p), "shape": p["shape"], "sparsity": p["sparsity"],
                     "measured": int(p["instructions"]), "predicted": int(round(pred)),
                     "error": (pred - p["instructions"]) / p["instructions"]})
    return rows


def _shape_json(shape):
    return asdict(shape) if isinstance(shape, ConvShape) else dict(shape)


def measure_plan(plan: list, target: str, *, workers: int = 2, progress=None, build_dir=None) -> list:
    """Build and run every point of the plan; returns the points with ``instructions``."""
    from ..target import DEFAULT_BOARD, resolve_target, target_tag
    from ..micro.project import load_server, template_dir
    from . import measure

    tvm_target = resolve_target(target)
    tag = target_tag(tvm_target)
    board = DEFAULT_BOARD[tag]
    load_server(template_dir())
    done = []
    with tempfile.TemporaryDirectory(prefix="dtmm-costfit-", dir=build_dir) as tmp, \
            ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = []
        for i, point in enumerate(plan):
            i = int(point.get("seed", i))  # a partial plan keeps the full plan's seeds
            path = Path(tmp) / f"{i:03d}.tar"
            with tvm_target:
                if point["kind"] == "fc":
                    mod, ishape = measure.build_fc_module(**point["shape"], seed=i)
                    kept = None
                else:
                    mod, ishape, kept = measure.build_conv_module(point["shape"], point["fmt"], point["sparsity"],
                                                                  seed=i, patterns=point.get("patterns"))
            measure.write_module(mod, path, tag)
            point = dict(point, seed=i)
            if point["fmt"] == UNSTRUCTURED:
                point = dict(point, shape=ConvShape(**dict(asdict(point["shape"]), nonzero_weights=kept)))
            if point["fmt"] == "pattern":  # the pattern count the layer really has
                used = measure.pattern_layer(point["shape"], point["sparsity"], i, point["patterns"]).patterns
                point = dict(point, kept_kernels=int(kept), patterns=int(used), patterns_requested=point["patterns"])
            elif kept is not None and point["kind"] == "conv":
                point = dict(point, shape=ConvShape(**dict(asdict(point["shape"]), kept_filterlets=kept)))
                point = dict(point, shape=_conv_shape(point))
            futures.append((point, pool.submit(measure.run_module, path, board, ishape, tmp, i)))
        for point, fut in futures:
            point = dict(point, instructions=int(fut.result()))
            done.append(point)
            if progress:
                progress(point)
    return done


def fit_target(target: str, *, seed: int = 0, conv_points: int = 14, small_points: int = 8, workers: int = 2,
               progress=None, build_dir=None, groups=None) -> dict:
    """Measure, fit and evaluate; returns the coefficients document (see :func:`write`).

    ``groups`` (e.g. ``["conv/pattern"]``): measure only the plan's points of those groups and
    keep every other group's measured points from the shipped document (a partial refit)."""
    from ..target import DEFAULT_BOARD, resolve_target, target_tag

    tag = target_tag(resolve_target(target))
    started = time.time()
    plan = sample_plan(seed, conv_points, small_points)
    kept_points = []
    if groups is not None:
        from . import load_coefficients

        plan = [p for p in plan if group_of(p) in groups]
        kept_points = [p for p in load_coefficients(tag)["points"] if group_of(p) not in groups]
    points = measure_plan(plan, tag, workers=workers, progress=progress, build_dir=build_dir)
    if groups is None:
        return document(points, tag, DEFAULT_BOARD[tag], seed=seed, seconds=time.time() - started)
    seconds = time.time() - started
    doc = document(kept_points + points, tag, DEFAULT_BOARD[tag], seed=seed,
                   seconds=float(load_coefficients(tag).get("seconds") or 0.0) + seconds)
    doc["partial_refit"] = {"groups": sorted(groups), "seconds": round(seconds, 1)}
    return doc


def document(points: list, tag: str, board: str, seed: int = 0, seconds: float = 0.0) -> dict:
    coefficients = fit_points(points, tag)
    held = errors(points, coefficients, tag, heldout=True)
    fitted = errors(points, coefficients, tag, heldout=False)
    return {
        "target": tag,
        "board": board,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seed": seed,
        "seconds": round(seconds, 1),
        "measure": "instructions per inference (QEMU -icount), one-layer artifacts, default schedules",
        "features": {"conv": CONV_FEATURES, f"conv/{UNSTRUCTURED}": UNSTRUCTURED_FEATURES,
                     "conv/pattern": PATTERN_FEATURES,
                     "depthwise": ["macs", "outputs", "pixels", "call"],
                     "fc": ["mac_chunks", "outputs", "inputs", "call"]},
        "coefficients": coefficients,
        "heldout_max_abs_error": max((abs(r["error"]) for r in held), default=None),
        "heldout_mean_abs_error": float(np.mean([abs(r["error"]) for r in held])) if held else None,
        "fit_max_abs_error": max((abs(r["error"]) for r in fitted), default=None),
        "heldout": [dict(r, shape=_shape_json(r["shape"])) for r in held],
        "points": [dict(p, shape=_shape_json(p["shape"])) for p in points],
    }


def refit_formats(doc: dict, formats, *, seed: int | None = None, conv_points: int = 14, small_points: int = 8,
                  workers: int = 2, progress=None, build_dir=None) -> dict:
    """Measure only the conv points of ``formats`` (e.g. a new or changed kernel) and refit
    with the other groups' stored points of ``doc`` (the same plan and seeds as a full fit,
    so the result equals a full fit's whenever the other kernels are unchanged)."""
    formats = tuple(formats)
    tag = doc["target"]
    seed = doc.get("seed", 0) if seed is None else seed
    started = time.time()
    plan = [dict(p, seed=i) for i, p in enumerate(sample_plan(seed, conv_points, small_points))]
    todo = [p for p in plan if p["kind"] == "conv" and p["fmt"] in formats]
    measured = measure_plan(todo, tag, workers=workers, progress=progress, build_dir=build_dir)
    kept = [p for p in doc["points"] if not (p["kind"] == "conv" and p["fmt"] in formats)]
    return document(kept + measured, tag, doc["board"], seed=seed,
                    seconds=float(doc.get("seconds") or 0.0) + time.time() - started)


def coefficients_path(tag: str) -> Path:
    return Path(__file__).resolve().parent / "coefficients" / f"{tag.replace('/', '_')}.json"


def write(doc: dict, path: Path | None = None) -> Path:
    path = Path(path) if path is not None else coefficients_path(doc["target"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)
    return path
