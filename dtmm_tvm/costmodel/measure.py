"""Measure one layer's instructions on the emulated board: build it alone, run it on QEMU.

The layer is built with the same PrimFunc builders the compiler uses (default schedules, the
target's micro-kernels), wrapped in a one-layer Relax ``main`` as :mod:`dtmm_tvm.tuning.tuner`
does, written with :func:`dtmm_tvm.codegen.write_archive` and run with
:func:`dtmm_tvm.micro.run_artifact`. Weights are random int8 with whole filterlets zeroed by a
random mask of the requested sparsity (the kernels' work depends on the mask, not the values).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .features import ConvShape


@dataclass
class Measurement:
    kind: str            # "conv" | "depthwise" | "fc"
    fmt: str             # conv weight format, "dense" for depthwise / fc
    shape: dict          # ConvShape fields, or {"in_features", "out_features"}
    instructions: int


def random_filterlet_mask(shape: ConvShape, sparsity: float, rng) -> np.ndarray:
    """Boolean keep-mask ``(Cout, KH, KW)`` with ``round(sparsity * total)`` filterlets pruned."""
    total = shape.total_filterlets
    pruned = int(round(sparsity * total))
    keep = np.ones(total, dtype=bool)
    keep[rng.permutation(total)[:pruned]] = False
    return keep.reshape(shape.cout, shape.kh, shape.kw)


def kept_runs(keep_ohw: np.ndarray) -> int:
    """Runs of consecutive kept taps (row-major over KH*KW), summed over filters."""
    flat = np.asarray(keep_ohw, dtype=bool).reshape(keep_ohw.shape[0], -1)
    starts = flat & ~np.concatenate([np.zeros((flat.shape[0], 1), bool), flat[:, :-1]], axis=1)
    return int(starts.sum())


def conv_weights(shape: ConvShape, sparsity: float, seed: int):
    """The measured layer's constants: ``(weight OHWI, keep, bias, mult, shift)``, deterministic
    in ``seed`` (the fit replays it to recover each measured mask)."""
    rng = np.random.default_rng(seed)
    params = conv_params(shape)
    bias, mult, shift = _requant(params.output_shape[3], rng)
    weight = rng.integers(-127, 128, size=params.weight_shape).astype(np.int8)
    if shape.depthwise:
        return weight, None, bias, mult, shift
    weight[weight == 0] = 1
    keep = random_filterlet_mask(shape, sparsity, rng)
    return weight * keep[..., None].astype(np.int8), keep, bias, mult, shift


def element_sparse_weights(shape: ConvShape, sparsity: float, seed: int):
    """Like :func:`conv_weights`, but ``round(sparsity * size)`` single weights zeroed at random
    (the unstructured format's work depends on the non-zero count and rows, not the values)."""
    rng = np.random.default_rng(seed)
    params = conv_params(shape)
    bias, mult, shift = _requant(params.output_shape[3], rng)
    weight = rng.integers(-127, 128, size=params.weight_shape).astype(np.int8)
    weight[weight == 0] = 1
    flat = weight.reshape(-1)
    flat[rng.permutation(flat.size)[:int(round(sparsity * flat.size))]] = 0
    return weight, bias, mult, shift


#: A PatDNN-like set of 4-tap patterns of a 3x3 kernel (centre kept), for measuring the pattern
#: kernel; its cost depends on how many patterns a layer uses, not on which.
MEASURE_PATTERNS_3X3 = ((0, 1, 3, 4), (1, 2, 4, 5), (3, 4, 6, 7), (4, 5, 7, 8), (1, 3, 4, 5), (1, 4, 5, 7),
                        (3, 4, 5, 7), (1, 3, 4, 7), (0, 1, 4, 5), (1, 2, 3, 4), (3, 4, 7, 8), (4, 5, 6, 7),
                        (0, 4, 5, 8), (2, 3, 4, 6), (0, 3, 4, 5), (2, 4, 5, 8))


def random_pattern_weights(weight_shape, patterns, connectivity: float, rng) -> np.ndarray:
    """OHWI int8 weights whose (out, in) kernels are zero with probability ``connectivity``
    (connectivity pruning) and otherwise non-zero exactly on one of ``patterns`` (tap tuples,
    tap = kh*KW + kw), every pattern used at least once when there are enough kernels."""
    o, kh, kw, cin = weight_shape
    w = np.zeros((o, cin, kh * kw), np.int8)
    keep = rng.random((o, cin)) >= connectivity
    which = rng.integers(len(patterns), size=(o, cin))
    kept = np.flatnonzero(keep)
    which.reshape(-1)[kept[: len(patterns)]] = np.arange(min(len(patterns), kept.size))
    for flat in kept:
        taps = list(patterns[int(which.reshape(-1)[flat])])
        vals = rng.integers(-127, 128, size=len(taps)).astype(np.int8)
        vals[vals == 0] = 1
        w.reshape(o * cin, kh * kw)[flat, taps] = vals
    return np.ascontiguousarray(w.transpose(0, 2, 1).reshape(o, kh, kw, cin))


def pattern_layer(shape: ConvShape, connectivity: float, seed: int, patterns: int | None = None):
    """The packed pattern weights :func:`build_conv_module` measures (deterministic in ``seed``);
    ``.patterns`` is the count the layer really uses (at most ``patterns``, fewer when it has
    fewer kept kernels)."""
    from ..sparsity.pattern import pack_patterns

    rng = np.random.default_rng(seed + 7919)
    weight = random_pattern_weights(conv_params(shape).weight_shape, MEASURE_PATTERNS_3X3[: int(patterns or 8)],
                                    connectivity, rng)
    return pack_patterns(weight)


def conv_params(shape: ConvShape):
    from ..quant.conv import Conv2DParams

    weight_shape = (1, shape.kh, shape.kw, shape.cin) if shape.depthwise else (shape.cout, shape.kh, shape.kw,
                                                                             shape.cin)
    return Conv2DParams(input_shape=(1, shape.height, shape.width, shape.cin), weight_shape=weight_shape,
                        strides=tuple(shape.strides), padding=tuple(shape.padding), input_zero_point=-3,
                        output_zero_point=5, depthwise=shape.depthwise)


def _one_layer(func, input_shape, constants, out_shape, name):
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("input", relax.TensorType(list(input_shape), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            gvar = bb.add_func(func, name)
            out = bb.emit_output(relax.call_tir(gvar, [x, *[relax.const(c) for c in constants]],
                                                relax.TensorType(list(out_shape), "int8")))
        bb.emit_func_output(out)
    return bb.get()


def _requant(cout: int, rng):
    bias = rng.integers(-2000, 2000, size=cout).astype(np.int32)
    mult = np.full(cout, 1 << 30, dtype=np.int32)
    shift = np.full(cout, -7, dtype=np.int32)
    return bias, mult, shift


def build_conv_module(shape: ConvShape, fmt: str, sparsity: float, seed: int = 0, patterns: int | None = None):
    """(module, input shape) of one conv layer in ``fmt`` at ``sparsity``; the current target
    selects the kernels. Returns also the kept-filterlet count of the mask used (for
    ``"unstructured_csr"``: ``sparsity`` is the element sparsity, the count the non-zero weights;
    for the pattern format, ``fmt="pattern"``: ``sparsity`` is the connectivity-pruned fraction of
    kernels, the layer uses ``patterns`` patterns of :data:`MEASURE_PATTERNS_3X3`, and the count
    returned is the kept kernels)."""
    from ..ops.conv2d import conv2d_int8
    from ..ops.conv2d_filterlet import conv2d_filterlet_int8
    from ..ops.depthwise_conv2d import depthwise_conv2d_int8
    from ..sparsity import pack_filterlets_as

    params = conv_params(shape)
    weight, keep, bias, mult, shift = conv_weights(shape, sparsity, seed)
    if shape.depthwise:
        func = depthwise_conv2d_int8(params)
        mod = _one_layer(func, params.input_shape, [weight, bias, mult, shift], params.output_shape, "dw")
        return mod, params.input_shape, shape.total_filterlets
    if fmt == "unstructured_csr":
        # element-sparse weights; the third value returned is the non-zero count
        from ..ops.conv2d_unstructured import conv2d_unstructured_int8

        weight, bias, mult, shift = element_sparse_weights(shape, sparsity, seed)
        packed = pack_filterlets_as(weight, fmt)
        func = conv2d_unstructured_int8(params, packed.nonzero_weights)
        consts = [packed.values, *packed.index_arrays, bias, mult, shift]
        return (_one_layer(func, params.input_shape, consts, params.output_shape, "conv"), params.input_shape,
                packed.nonzero_weights)
    if fmt == "pattern":
        from ..ops.conv2d_pattern import conv2d_pattern_int8

        packed = pattern_layer(shape, sparsity, seed, patterns)
        func = conv2d_pattern_int8(params, packed.kept_kernels, packed.patterns)
        consts = [packed.values, *packed.index_arrays, bias, mult, shift]
        return (_one_layer(func, params.input_shape, consts, params.output_shape, "conv"), params.input_shape,
                packed.kept_kernels)
    if fmt == "dense":
        func = conv2d_int8(params)
        consts = [weight, bias, mult, shift]
        kept = int(keep.sum())
    else:
        packed = pack_filterlets_as(weight, fmt)
        func = conv2d_filterlet_int8(params, packed.kept_filterlets, fmt=fmt)
        consts = [packed.values, *packed.index_arrays, bias, mult, shift]
        kept = packed.kept_filterlets
    return _one_layer(func, params.input_shape, consts, params.output_shape, "conv"), params.input_shape, kept


def build_fc_module(in_features: int, out_features: int, seed: int = 0):
    from ..ops.fully_connected import fully_connected_int8
    from ..quant.conv import FullyConnectedParams

    rng = np.random.default_rng(seed)
    params = FullyConnectedParams(input_shape=(1, in_features), weight_shape=(out_features, in_features),
                                  input_zero_point=-3, output_zero_point=5)
    weight = rng.integers(-127, 128, size=params.weight_shape).astype(np.int8)
    bias, mult, shift = _requant(out_features, rng)
    func = fully_connected_int8(params)
    return _one_layer(func, params.input_shape, [weight, bias, mult, shift], params.output_shape, "fc"), \
        params.input_shape


def build_other_module(kind: str, shape: dict, seed: int = 0):
    """(module, input shape) of one non-conv operator as the TFLite lowering builds it
    (:mod:`dtmm_tvm.ops`): ``max_pool2d`` / ``avg_pool2d`` ``{height, width, channels, window,
    stride}`` (VALID), ``mean`` ``{height, width, channels}`` over H and W, ``softmax`` ``{depth}``
    (one row), ``add`` ``{elements}`` (two same-shape operands; the second a constant: the
    kernel's work is the same; a fused ReLU with output zero point -128, the reference models'
    residual ADD: per element ``dtmm_add_s8`` costs 3.25 (M55) / 13.5 (M4) instructions there, 3.75
    / 14.5 without activation, 3.5 / 21.5 with a narrower clamp (measured at 6272 elements))."""
    rng = np.random.default_rng(seed)
    if kind in ("max_pool2d", "avg_pool2d"):
        from ..ops.pooling import avg_pool2d_int8, max_pool2d_int8
        from ..quant.pooling import pool2d_params

        ishape = (1, shape["height"], shape["width"], shape["channels"])
        k, st = shape["window"], shape["stride"]
        params = pool2d_params(ishape, (k, k), (st, st), "VALID", 0.05, -3)
        func = (max_pool2d_int8 if kind == "max_pool2d" else avg_pool2d_int8)(params)
        return _one_layer(func, ishape, [], params.output_shape, kind), ishape
    if kind == "mean":
        from ..ops.mean import mean_int8
        from ..quant.mean import mean_params

        ishape = (1, shape["height"], shape["width"], shape["channels"])
        params = mean_params(ishape, False, 0.05, -3, 0.04, 2)
        return _one_layer(mean_int8(params), ishape, [], params.output_shape, kind), ishape
    if kind == "softmax":
        from ..ops.softmax import softmax_int8
        from ..quant.softmax import softmax_params

        ishape = (1, shape["depth"])
        params = softmax_params(1.0, 0.1, 1.0 / 256, -128)
        return _one_layer(softmax_int8(ishape, params), ishape, [], ishape, kind), ishape
    if kind == "add":
        from ..ops.add import add_int8
        from ..quant.add import add_params

        ishape = (1, shape["elements"])
        params = add_params(0.05, -3, 0.06, 4, 0.08, -128, -128, 127)
        other = rng.integers(-128, 128, size=ishape).astype(np.int8)
        return _one_layer(add_int8(ishape, ishape, params), ishape, [other], ishape, kind), ishape
    if kind == "expand_channels":  # as the compact conv of the current target calls it
        from ..ops.conv2d_compact import expand_channels_int8
        from ..schedules.conv import default_schedule

        pixels, channels, kept = shape["pixels"], shape["channels"], shape["kept"]
        ishape = (1, pixels, kept)
        ppb = default_schedule(None).pixels_per_block
        order = np.sort(rng.choice(channels, size=kept, replace=False)).astype(np.uint16)
        fill = rng.integers(-128, 128, size=channels).astype(np.int8)
        func = expand_channels_int8(pixels, kept, channels, ppb)
        return _one_layer(func, ishape, [order, fill], (1, pixels, channels), kind), ishape
    raise ValueError(f"no one-layer builder for {kind!r}")


def write_module(mod, path: Path, target_tag: str) -> None:
    from ..codegen import write_archive

    write_archive(mod, path, {"target": target_tag, "mode": "costmodel",
                              "model": {"name": path.stem, "source": None, "sha256": None}}, overwrite=True)


def run_module(path: Path, board: str, input_shape, build_dir, seed: int = 0) -> int:
    """Instructions per inference (max over 2 random inputs) of an archive on ``board``."""
    from ..micro import run_artifact

    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(2, *input_shape)).astype(np.int8)
    return int(run_artifact(path, board, x, build_dir=build_dir, timeout_s=600).instructions)
