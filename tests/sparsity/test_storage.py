import numpy as np
import pytest

from dtmm_tvm.errors import FormatError
from dtmm_tvm.sparsity import analyze_filterlets, pack_filterlets, storage_report


def _pruned_weights(shape, sparsity, seed=0):
    rng = np.random.default_rng(seed)
    weight = rng.integers(-127, 128, size=shape).astype(np.int8)
    weight[weight == 0] = 1  # so that only pruning makes zeros
    mask = rng.random(shape[:3]) < sparsity
    weight[mask] = 0
    return weight, mask


@pytest.mark.parametrize("shape", [(8, 3, 3, 4), (16, 5, 5, 3), (4, 10, 4, 1), (6, 1, 1, 32)])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 1.0])
def test_pack_roundtrip_and_layout(shape, sparsity):
    weight, mask = _pruned_weights(shape, sparsity)
    packed = pack_filterlets(weight)
    np.testing.assert_array_equal(packed.unpack(), weight)
    o, kh, kw, cin = shape
    assert packed.kept_filterlets == int((~mask).sum())
    assert packed.values.size == packed.kept_filterlets * cin
    assert packed.row_ptr.dtype == np.int16 and packed.col_idx.dtype == np.int16
    assert packed.row_ptr.size == o + 1 and packed.row_ptr[0] == 0 and packed.row_ptr[-1] == packed.kept_filterlets
    # Offsets point into an im2col row and are ascending inside each filter.
    assert (packed.col_idx % cin == 0).all() and (packed.col_idx <= (kh * kw - 1) * cin).all()
    for channel in range(o):
        row = packed.col_idx[packed.row_ptr[channel]:packed.row_ptr[channel + 1]]
        assert (np.diff(row) > 0).all()
    # Overhead: 2 bytes per kept filterlet + 2 * (Cout + 1).
    assert packed.index_bytes == 2 * packed.kept_filterlets + 2 * (o + 1)


def test_stats_count_filterlets_and_zero_filters():
    weight = np.ones((4, 3, 3, 2), np.int8)
    weight[0] = 0  # a whole zero filter
    weight[1, 0, 0, :] = 0
    weight[2, 1, 1, 0] = 0  # a single zero weight does not prune a filterlet
    stats = analyze_filterlets(weight)
    assert stats.kept_filterlets == 36 - 9 - 1
    assert stats.zero_filters == 1
    assert stats.filterlet_sparsity == pytest.approx(10 / 36)
    assert stats.filter_sparsity == 0.25


def test_offset_overflow_names_layer_and_limit():
    weight = np.ones((2, 11, 11, 300), np.int8)  # (121 - 1) * 300 = 36000 > 32767
    with pytest.raises(FormatError, match=r"layer 'big'.*36000.*32767"):
        pack_filterlets(weight, layer="big")


def test_report_dense_vs_packed_bytes():
    weight, _ = _pruned_weights((16, 3, 3, 8), 0.75, seed=3)
    (row,) = storage_report({"conv": weight})
    packed = pack_filterlets(weight)
    assert row["dense_bytes"] == weight.size
    assert row["packed_bytes"] == packed.nbytes < weight.size
    big = np.ones((2, 11, 11, 300), np.int8)
    (bad,) = storage_report({"big": big})
    assert bad["packable"] is False and "32767" in bad["reason"]


# ---- byte and bitmask index formats, per-layer choice ----------------------------------------
from dtmm_tvm.sparsity import FORMATS, choose_format, pack_filterlets_as  # noqa: E402


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("shape", [(8, 3, 3, 4), (16, 5, 5, 3), (4, 10, 2, 1), (6, 1, 1, 32), (3, 2, 2, 70)])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 1.0])
def test_every_format_roundtrips(fmt, shape, sparsity):
    weight, mask = _pruned_weights(shape, sparsity, seed=3)
    packed = pack_filterlets_as(weight, fmt)
    assert packed.format == fmt
    np.testing.assert_array_equal(packed.unpack(), weight)
    assert packed.kept_filterlets == int((~mask).sum())
    assert packed.nbytes == packed.values.nbytes + sum(a.nbytes for a in packed.index_arrays)
    o, kh, kw, _ = shape
    if fmt == "filterlet_u8":
        assert packed.taps.dtype == np.uint8 and packed.counts.dtype == np.uint8
        assert packed.index_bytes == packed.kept_filterlets + o
    if fmt == "filterlet_bitmask":
        assert packed.index_bytes == (o * kh * kw + 7) // 8 + 3
        np.testing.assert_array_equal(packed.kept_mask(), ~mask.reshape(o, kh * kw))


def test_format_limits():
    w = np.ones((2, 6, 5, 1), np.int8)  # 30 taps: no bitmask (<= 25)
    with pytest.raises(FormatError, match="filterlet_bitmask"):
        pack_filterlets_as(w, "filterlet_bitmask")
    assert choose_format(w).format == "filterlet_u8"
    w = np.ones((2, 16, 16, 1), np.int8)  # 256 taps: no u8
    with pytest.raises(FormatError, match="filterlet_u8"):
        pack_filterlets_as(w, "filterlet_u8")
    assert choose_format(w).format == "filterlet_csr"


def test_choice_is_fewest_bytes():
    weight, _ = _pruned_weights((64, 3, 3, 64), 0.5)
    sizes = {f: pack_filterlets_as(weight, f).nbytes for f in FORMATS}
    chosen = choose_format(weight)
    assert chosen.nbytes == min(sizes.values()) and chosen.format == "filterlet_bitmask"
    # a very sparse layer with many taps: one byte per kept filterlet beats KH*KW bits per filter
    w = np.zeros((8, 5, 5, 4), np.int8)
    w[0, 0, 0] = 1
    assert choose_format(w).format == "filterlet_u8"
    assert choose_format(weight, formats=("filterlet_csr",)).format == "filterlet_csr"
