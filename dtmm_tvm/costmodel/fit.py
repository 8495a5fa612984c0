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

from .features import (CONV_FEATURES, CONV_FORMATS, OTHER_OP_FEATURES, PATTERN_FEATURES, ConvShape,
                       add_features, conv_features, depthwise_features, expand_features, fc_features, mean_features,
                       pattern_features, pool_features, softmax_features)

from .features import (DEPTHWISE_FEATURES, FC_FEATURES, SHARED_CONV_FEATURES, UNSTRUCTURED,
                       UNSTRUCTURED_FEATURES)

SPARSE_FORMATS = tuple(f for f in CONV_FORMATS[1:] if f != UNSTRUCTURED)
#: Element sparsities of the unstructured format's points (two per conv shape, 1x1 included).
UNSTRUCTURED_SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95)


def _same_padding(h, w, k, s):
    from ..quant.conv import same_padding

    return same_padding((h, w), (k, k), (s, s))


#: Fully connected shapes measured (in_features, out_features).
FC_SHAPES = ((64, 10), (576, 10), (256, 64), (100, 32), (32, 32), (1024, 10), (400, 16), (128, 128))

#: Shapes measured per non-conv operator (pool: H = W, channels, window = stride, VALID).
OTHER_OP_SHAPES = {
    "max_pool2d": [{"height": h, "width": h, "channels": c, "window": k, "stride": k}
                   for h, c, k in ((14, 32, 2), (28, 16, 2), (7, 64, 2), (16, 24, 2), (12, 8, 3), (8, 48, 2))],
    "avg_pool2d": [{"height": h, "width": h, "channels": c, "window": k, "stride": k}
                   for h, c, k in ((14, 32, 2), (28, 16, 2), (7, 64, 2), (16, 24, 2), (12, 8, 3), (8, 48, 2))],
    "mean": [{"height": h, "width": h, "channels": c}
             for h, c in ((7, 64), (14, 16), (4, 32), (10, 24), (2, 128), (7, 32))],
    "softmax": [{"depth": d} for d in (10, 2, 32, 16, 100, 64)],
    "add": [{"elements": n} for n in (784, 3136, 64, 1568, 6272, 2048)],
}


#: Shapes of pruned layers appended to the plan (see :func:`sample_plan`): filter pruning leaves
#: any Cout, and the next layer any Cin, so the kernels' partial-chunk, odd-channel and
#: partial-block paths are measured, not only the multiples of 4 / 8 of the regular shapes.
PRUNED_CONV_POINTS = 16
#: Fully connected (in, out) after filter pruning: odd feature counts.
PRUNED_FC_SHAPES = ((200, 10), (49, 20), (300, 7), (72, 24), (36, 100), (490, 10), (20, 5), (162, 48))
#: Pooling and mean after filter pruning: odd channel counts and sizes.
PRUNED_OTHER_SHAPES = {
    "max_pool2d": [{"height": h, "width": h, "channels": c, "window": k, "stride": k}
                   for h, c, k in ((15, 13, 2), (9, 20, 3), (10, 37, 2), (6, 5, 2), (4, 6, 2), (6, 3, 3))],
    "avg_pool2d": [{"height": h, "width": h, "channels": c, "window": k, "stride": k}
                   for h, c, k in ((15, 13, 2), (9, 20, 3), (10, 37, 2), (6, 5, 2), (4, 6, 2), (6, 3, 3))],
    "mean": [{"height": h, "width": h, "channels": c}
             for h, c in ((5, 13), (9, 40), (3, 7), (12, 20), (2, 9), (6, 3))],
}
#: Depthwise channel counts after filter pruning (H = W, stride per shape).
PRUNED_DEPTHWISE = ((8, 13, 1), (12, 20, 2), (6, 37, 1), (10, 44, 1), (14, 7, 2), (7, 27, 1))
#: The filter-compacted conv's expansion step (pixels, output channels, kept channels): the
#: 1x1 layers of DS-CNN / MobileNet-style models with most filters dropped, odd channel counts
#: (the word path's tail bytes), more kept channels than one MVE scatter, a partial last block.
EXPAND_SHAPES = ((125, 64, 6), (100, 32, 3), (144, 16, 9), (49, 100, 20), (64, 37, 11), (196, 24, 2), (36, 64, 40),
                 (257, 8, 1), (75, 48, 17), (30, 130, 9), (90, 20, 5), (121, 72, 30))
#: Depthwise (H = W, channels, stride, kernel) on each side of the kernel's path conditions
#: (features.depthwise_path): channels not a multiple of 4 and 5x5 kernels take the generic
#: loop (DSP) / the lane path (MVE, more than 16 taps), 4 and 8 channels at stride 1 the MVE
#: transposed path's packed pixels.
PATH_DEPTHWISE = ((10, 10, 1, 3), (11, 8, 1, 3), (9, 22, 2, 3), (12, 6, 1, 3), (7, 16, 1, 5), (8, 4, 1, 3),
                  (9, 15, 1, 5), (12, 36, 2, 5), (5, 64, 1, 3), (14, 20, 1, 3), (6, 40, 2, 3), (13, 4, 1, 3),
                  (10, 24, 2, 5), (8, 20, 1, 5), (11, 12, 2, 5), (9, 28, 1, 5))


def sample_plan(seed: int = 0, conv_points: int = 20, small_points: int = 8, heldout_every: int = 4,
                pruned_points: int = PRUNED_CONV_POINTS):
    """The measurement plan: a list of dicts ``{kind, fmt, shape, sparsity, heldout}``.

    Regular convs: ``conv_points`` (shape, sparsity) pairs, each measured dense (at its sparsity:
    the dense kernel's cost does not depend on it) and in every sparse format. Every
    ``heldout_every``-th pair is held out of the fit. Depthwise: ``small_points``; FC: the fixed
    :data:`FC_SHAPES`; pooling, mean, softmax and add: :data:`OTHER_OP_SHAPES`.

    Then (appended, from their own generator, so the points before keep their seeds and stored
    counts) ``pruned_points`` conv shapes of pruned layers - any Cin in 1..64, any Cout in 4..48,
    odd output sizes - in the dense, filterlet and unstructured formats and one pattern point per
    3x3 shape, with :data:`PRUNED_DEPTHWISE`, :data:`PRUNED_FC_SHAPES` and
    :data:`PRUNED_OTHER_SHAPES`; every
    ``heldout_every``-th of each held out.
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
    # Fully connected: a fixed spread (in, out) (a random draw repeated shapes and missed the
    # wide-input, few-output classifier heads), held out like the rest: every fourth.
    for i, (fin, fout) in enumerate(FC_SHAPES):
        plan.append(dict(kind="fc", fmt="dense", shape={"in_features": fin, "out_features": fout},
                         sparsity=0.0, heldout=i % heldout_every == heldout_every - 1))
    # Non-conv operators: a fixed spread of shapes (those of the demo and VGG-style models
    # first), the fourth of each held out (an interior shape, not an extreme).
    for kind, shapes in OTHER_OP_SHAPES.items():
        for i, shape in enumerate(shapes):
            plan.append(dict(kind=kind, fmt="dense", shape=dict(shape), sparsity=0.0, heldout=i == 3))
    # The unstructured format last, from its own generator: the points above (and their seeds,
    # the index in the plan) stay those of the earlier fits.
    urng = np.random.default_rng(seed + 1)
    for i, shape in enumerate(conv_shapes):
        for j, sparsity in enumerate(urng.choice(UNSTRUCTURED_SPARSITIES, size=2, replace=False)):
            plan.append(dict(kind="conv", fmt=UNSTRUCTURED, shape=shape, sparsity=float(sparsity),
                             heldout=(2 * i + j) % heldout_every == heldout_every - 1))
    plan += _pruned_plan(seed, pruned_points, heldout_every)
    # Appended last (the points above keep their seeds and stored counts).
    for i, (hw, c, s, k) in enumerate(PATH_DEPTHWISE):
        shape = ConvShape(hw, hw, c, c, k, k, (s, s), _same_padding(hw, hw, k, s), depthwise=True)
        plan.append(dict(kind="depthwise", fmt="dense", shape=shape, sparsity=0.0,
                         heldout=i % heldout_every == heldout_every - 1))
    for i, (pixels, channels, kept) in enumerate(EXPAND_SHAPES):
        plan.append(dict(kind="expand_channels", fmt="dense", shape={"pixels": pixels, "channels": channels,
                                                                      "kept": kept},
                         sparsity=0.0, heldout=i % heldout_every == heldout_every - 1))
    return plan


def _pruned_plan(seed: int, points: int, heldout_every: int) -> list:
    """The pruned-layer part of :func:`sample_plan`."""
    rng = np.random.default_rng(seed + 2000)
    plan = []
    for i in range(points):
        hw = int(rng.choice([5, 7, 8, 9, 11, 12, 14, 16]))
        cin = int(rng.integers(1, 65))
        cout = int(rng.integers(4, 49))
        k = int(rng.choice([3, 3, 3, 1, 5]))
        s = int(rng.choice([1, 1, 2]))
        sparsity = 0.0 if k == 1 else float(rng.choice([0.3, 0.5, 0.7, 0.85, 0.95]))
        shape = ConvShape(hw, hw, cin, cout, k, k, (s, s), _same_padding(hw, hw, k, s))
        heldout = i % heldout_every == heldout_every - 1
        for fmt in ("dense", *SPARSE_FORMATS) if k > 1 else ("dense",):
            plan.append(dict(kind="conv", fmt=fmt, shape=shape, sparsity=sparsity, heldout=heldout))
        for sp in rng.choice(UNSTRUCTURED_SPARSITIES, size=2, replace=False):
            plan.append(dict(kind="conv", fmt=UNSTRUCTURED, shape=shape, sparsity=float(sp), heldout=heldout))
        if k == 3:
            plan.append(dict(kind="conv", fmt="pattern", shape=shape, sparsity=float(rng.choice([0.0, 0.3, 0.5, 0.7])),
                             patterns=int(rng.choice([4, 6, 8, 12, 16])), heldout=heldout))
    for i, (hw, c, s) in enumerate(PRUNED_DEPTHWISE):
        shape = ConvShape(hw, hw, c, c, 3, 3, (s, s), _same_padding(hw, hw, 3, s), depthwise=True)
        plan.append(dict(kind="depthwise", fmt="dense", shape=shape, sparsity=0.0,
                         heldout=i % heldout_every == heldout_every - 1))
    for i, (fin, fout) in enumerate(PRUNED_FC_SHAPES):
        plan.append(dict(kind="fc", fmt="dense", shape={"in_features": fin, "out_features": fout},
                         sparsity=0.0, heldout=i % heldout_every == heldout_every - 1))
    for kind, shapes in PRUNED_OTHER_SHAPES.items():
        for i, shape in enumerate(shapes):
            plan.append(dict(kind=kind, fmt="dense", shape=dict(shape), sparsity=0.0,
                             heldout=i % heldout_every == heldout_every - 1))
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
    if point["kind"] == "fc":
        return fc_features(point["shape"]["in_features"], point["shape"]["out_features"], target)
    if point["kind"] == "expand_channels":
        return expand_features(point["shape"]["pixels"], point["shape"]["channels"], point["shape"]["kept"], target)
    return other_features(point["kind"], point["shape"])


def other_features(kind: str, shape: dict) -> list:
    """Features of a pooling / mean / softmax / add point (see :func:`sample_plan`)."""
    if kind in ("max_pool2d", "avg_pool2d"):
        k, st = shape["window"], shape["stride"]
        out_hw = ((shape["height"] - k) // st + 1, (shape["width"] - k) // st + 1)
        return pool_features(out_hw, shape["channels"], (k, k))
    if kind == "mean":
        return mean_features(shape["height"], shape["width"], shape["channels"])
    if kind == "softmax":
        return softmax_features(1, shape["depth"])
    if kind == "add":
        return add_features(shape["elements"])
    raise ValueError(f"no features for {kind!r}")


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


#: The regular conv formats share one kernel pair (dtmm_conv_im2col_s8 + dtmm_conv_block_s8):
#: their :data:`~dtmm_tvm.costmodel.features.SHARED_CONV_FEATURES` get one coefficient each,
#: fitted on all of their points together; the other features one per format.
JOINT_CONV_GROUPS = tuple(f"conv/{f}" for f in CONV_FORMATS if f != UNSTRUCTURED)


def fit_points(points: list, target: str) -> dict:
    """``{group: coefficients}`` fitted on the points that are not held out (the regular conv
    formats jointly, see :data:`JOINT_CONV_GROUPS`)."""
    groups: dict = {}
    for p in points:
        if not p.get("heldout") and p.get("instructions"):
            groups.setdefault(group_of(p), []).append(p)
    out = {}
    for g, pts in groups.items():
        if g in JOINT_CONV_GROUPS:
            continue
        x = np.array([features_of(p, target) for p in pts])
        y = np.array([p["instructions"] for p in pts], dtype=np.float64)
        out[g] = [float(c) for c in nnls_relative(x, y)]
    joint = [g for g in JOINT_CONV_GROUPS if g in groups]
    if joint:
        out.update(_fit_joint({g: groups[g] for g in joint}, target))
    return out


def _fit_joint(groups: dict, target: str) -> dict:
    """One non-negative relative least squares over several groups with the same feature list:
    shared features one column for all, the others one column per group."""
    n = len(CONV_FEATURES)
    shared = [i for i, name in enumerate(CONV_FEATURES) if name in SHARED_CONV_FEATURES]
    own = [i for i in range(n) if i not in shared]
    names = list(groups)
    rows, ys = [], []
    for gi, g in enumerate(names):
        for p in groups[g]:
            f = features_of(p, target)
            row = [f[i] for i in shared] + [0.0] * (len(own) * len(names))
            for j, i in enumerate(own):
                row[len(shared) + gi * len(own) + j] = f[i]
            rows.append(row)
            ys.append(p["instructions"])
    coef = nnls_relative(np.array(rows), np.array(ys, dtype=np.float64))
    out = {}
    for gi, g in enumerate(names):
        c = [0.0] * n
        for j, i in enumerate(shared):
            c[i] = float(coef[j])
        for j, i in enumerate(own):
            c[i] = float(coef[len(shared) + gi * len(own) + j])
        out[g] = c
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


def _point_key(point: dict) -> str:
    shape = point["shape"]
    shape = {k: v for k, v in (asdict(shape) if isinstance(shape, ConvShape) else dict(shape)).items()
             if k not in ("kept_filterlets", "kept_runs", "nonzero_weights")}  # outcomes of the seed
    return json.dumps([point["kind"], point["fmt"], shape, point["sparsity"]], sort_keys=True,
                      default=lambda v: list(v))


def reusable_points(stored: list, remeasure=()) -> list:
    """The stored points (a coefficients file's ``points``) whose counts a refit may take over:
    those with a count, outside the groups in ``remeasure`` (groups whose kernels changed)."""
    remeasure = set(remeasure)
    return [p for p in stored if p.get("instructions") and group_of(p) not in remeasure]


def reused(plan: list, reuse: list | None) -> list:
    """Per plan point, the stored point it takes its count from (same kind, format, shape,
    sparsity and seed = plan index), or None: it is measured."""
    known = {(_point_key(p), p.get("seed")): p for p in (reuse or []) if p.get("instructions")}
    return [known.get((_point_key(point), i)) for i, point in enumerate(plan)]


def measure_plan(plan: list, target: str, *, workers: int = 2, progress=None, build_dir=None,
                 reuse: list | None = None) -> list:
    """Build and run every point of the plan; returns the points with ``instructions``.

    ``reuse``: points measured before (a coefficients file's ``points``); a plan point equal to
    one of them (kind, format, shape, sparsity and seed) takes its count instead of being run
    again. Only valid while the kernels are unchanged."""
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
        for i, (point, old) in enumerate(zip(plan, reused(plan, reuse))):
            if old is not None:
                point = dict(old, heldout=point["heldout"])
                futures.append((point, None))
                continue
            path = Path(tmp) / f"{i:03d}.tar"
            with tvm_target:
                if point["kind"] in OTHER_OP_FEATURES:
                    mod, ishape = measure.build_other_module(point["kind"], point["shape"], seed=i)
                    kept = None
                elif point["kind"] == "fc":
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
            if fut is not None:
                point = dict(point, instructions=int(fut.result()))
            done.append(point)
            if progress:
                progress(point)
    return done


def fit_target(target: str, *, seed: int = 0, conv_points: int = 20, small_points: int = 8, workers: int = 2,
               progress=None, build_dir=None, reuse: list | None = None) -> dict:
    """Measure, fit and evaluate; returns the coefficients document (see :func:`write`).

    ``reuse``: points measured before (see :func:`measure_plan`); a partial refit passes the
    shipped file's points minus those of the groups whose kernels changed."""
    from ..target import DEFAULT_BOARD, resolve_target, target_tag

    tag = target_tag(resolve_target(target))
    started = time.time()
    plan = sample_plan(seed, conv_points, small_points)
    points = measure_plan(plan, tag, workers=workers, progress=progress, build_dir=build_dir, reuse=reuse)
    doc = document(points, tag, DEFAULT_BOARD[tag], seed=seed, seconds=time.time() - started)
    if reuse:
        # "seconds" then times only the points measured in this run
        doc["reused_points"] = sum(old is not None for old in reused(plan, reuse))
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
                     "depthwise": DEPTHWISE_FEATURES, "fc": FC_FEATURES, **OTHER_OP_FEATURES},
        "coefficients": coefficients,
        "heldout_max_abs_error": max((abs(r["error"]) for r in held), default=None),
        "heldout_by_group": group_errors(held),
        "heldout_mean_abs_error": float(np.mean([abs(r["error"]) for r in held])) if held else None,
        "fit_max_abs_error": max((abs(r["error"]) for r in fitted), default=None),
        "heldout": [dict(r, shape=_shape_json(r["shape"])) for r in held],
        "points": [dict(p, shape=_shape_json(p["shape"])) for p in points],
    }


def group_errors(rows: list) -> dict:
    """``{group: {"points", "max_abs_error", "mean_abs_error"}}`` of :func:`errors` rows."""
    out: dict = {}
    for r in rows:
        out.setdefault(r["group"], []).append(abs(r["error"]))
    return {g: {"points": len(v), "max_abs_error": max(v), "mean_abs_error": float(np.mean(v))}
            for g, v in out.items()}


_COEFFICIENTS_DIR = Path(__file__).resolve().parent / "coefficients"


def coefficients_path(tag: str) -> Path:
    return _COEFFICIENTS_DIR / f"{tag.replace('/', '_')}.json"


def write(doc: dict, path: Path | None = None) -> Path:
    path = Path(path) if path is not None else coefficients_path(doc["target"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)
    return path
