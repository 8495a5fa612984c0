"""A regular int8 conv whose all-zero filters are dropped from the computation (weight format
``"filter_compact"``): the physically smaller conv of filter-pruned layers.

A dropped filter ``o`` produces the same value at every pixel, ``c_o = clamp(requantize(bias[o])
+ output_zero_point)`` (its accumulator is 0, whatever the input). The kernel therefore runs the
dense conv micro-kernels (:mod:`dtmm_tvm.ops.conv2d_micro`, the dense format's fast paths
included) over the ``K`` kept filters only, block by block into scratch, and
``dtmm_expand_channels_s8`` writes each block's full output rows: the constants from ``fill``, the
kept channels at their places. Unlike :class:`relay_passes.DropZeroFilters`, which removes the
channels from the graph, this needs nothing of the consumers (a depthwise conv, an add, a pool or
the model output may read the layer), at the price of the expansion's stores.

Arguments (destination-passing): ``x`` int8 NHWC; ``w`` int8 ``[K, KH, KW, Cin]`` (the kept
filters, OHWI, ascending ``o``); ``channels`` uint16 ``[K]`` (their filter numbers); ``fill`` int8
``[Cout]`` (``c_o`` at the dropped filters, the kept channels' bytes unused); ``bias`` / ``mult`` /
``shift`` int32 ``[K]`` (the kept filters' records); ``out`` int8 NHWC with all ``Cout``
channels. C targets only; bit-exact with the dense conv (and TFLM) by construction.
"""

from __future__ import annotations

from dataclasses import replace

from tvm import tirx

from ..quant.conv import Conv2DParams
from ..schedules.conv import resolve
from ..schedules.records import lookup_schedule
from ..sparsity.compact import COMPACT


def compact_params(params: Conv2DParams, kept_filters: int) -> Conv2DParams:
    """The dense conv the kernel runs: the layer with only ``kept_filters`` output channels."""
    _, kh, kw, cin = params.weight_shape
    return replace(params, weight_shape=(kept_filters, kh, kw, cin))


def conv2d_compact_int8(params: Conv2DParams, kept_filters: int, *, target=None, schedule=None) -> tirx.PrimFunc:
    """Build the filter-compacted conv of one layer (see the module docstring).

    Parameters
    ----------
    params
        The whole layer (regular conv, all ``Cout`` filters in ``weight_shape``).
    kept_filters
        ``K``, the filters that are not all zero: ``0 < K < Cout``.
    target, schedule
        A C target (default ``Target.current()``); the schedule of the dense conv of ``K``
        filters (default: tuning records of this layer, op ``"conv2d_compact"``, then the
        target's default for that conv).
    """
    from .conv2d_micro import build_conv_micro

    if params.depthwise:
        raise ValueError("filter_compact is for regular convs, not depthwise")
    if not 0 < kept_filters < params.weight_shape[0]:
        raise ValueError(f"filter_compact needs 0 < kept filters < {params.weight_shape[0]}, got {kept_filters}")
    inner = compact_params(params, kept_filters)
    if schedule is None:
        schedule = lookup_schedule("conv2d_compact", params, target, kept_filters=kept_filters)
    target, schedule = resolve(inner, target, schedule)
    if not schedule.micro_kernel:
        raise ValueError("filter_compact runs on the conv micro-kernels: it needs a C target and a micro-kernel "
                         "schedule")
    return build_conv_micro(params, kept_filters, target, schedule, "conv2d_compact", fmt=COMPACT)


def expand_channels_int8(pixels: int, kept: int, cout: int, pixels_per_block: int) -> tirx.PrimFunc:
    """The expansion step alone, as the compact conv calls it (one call per block of
    ``pixels_per_block`` rows): ``main(kept_rows, channels, fill, out)`` with ``kept_rows`` int8
    ``[1, pixels, kept]`` and ``out`` int8 ``[1, pixels, cout]``. The cost model measures it."""
    from tvm.script import tirx as T

    from ..kernels import with_c_kernels
    from .common import with_attrs

    nblocks = -(-pixels // pixels_per_block)

    @T.prim_func
    def expand(kept_rows: T.Buffer((1, pixels, kept), "int8"), channels: T.Buffer((kept,), "uint16"),
               fill: T.Buffer((cout,), "int8"), out: T.Buffer((1, pixels, cout), "int8")):
        for blk in range(nblocks):
            pix0: T.let = blk * pixels_per_block
            T.evaluate(T.call_extern("void", "dtmm_expand_channels_s8", T.address_of(kept_rows[0, pix0, 0]),
                                     T.min(pixels_per_block, pixels - pix0), kept, T.address_of(channels[0]),
                                     T.address_of(fill[0]), T.address_of(out[0, pix0, 0]), cout))

    return with_c_kernels(with_attrs(expand, "expand_channels"), ["dtmm_expand_channels_s8"])
