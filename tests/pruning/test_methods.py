"""The baseline pruning policies (numpy only): CHIP scores, unstructured masks, PatDNN pattern
selection / projection / connectivity pruning, and the per-method export check."""

import numpy as np
import pytest

from dtmm_tvm.pruning.methods import (
    PatternPolicy,
    UnstructuredPolicy,
    check_method_export,
    chip_scores,
    connectivity_mask,
    pattern_supports,
    policy,
    project_to_patterns,
    select_patterns,
    unstructured_mask,
)


def test_chip_score_of_a_duplicated_channel_is_lower_than_an_independent_one():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 5, 5, 1))
    b = rng.normal(size=(4, 5, 5, 1))
    # channel 2 is a copy of channel 0: removing it loses little of the rank; channel 1 is unique
    fm = np.concatenate([a, b, a * 1.0, a * 0.999 + 1e-3 * rng.normal(size=a.shape)], axis=-1)
    s = chip_scores(fm)
    assert s.shape == (4,)
    assert s[1] > max(s[0], s[2], s[3])


def test_chip_score_matches_nuclear_norm_by_svd():
    rng = np.random.default_rng(1)
    fm = rng.normal(size=(2, 3, 4, 5))
    want = np.zeros(5)
    for i in range(2):
        m = fm[i].reshape(-1, 5).T
        full = np.linalg.svd(m, compute_uv=False).sum()
        for c in range(5):
            want[c] += full - np.linalg.svd(np.delete(m, c, axis=0), compute_uv=False).sum()
    np.testing.assert_allclose(chip_scores(fm), want / 2, rtol=1e-8, atol=1e-9)


def test_unstructured_mask_removes_the_smallest_weights_per_layer():
    k = np.arange(1, 3 * 3 * 2 * 4 + 1, dtype=np.float32).reshape(3, 3, 2, 4) * np.where(
        np.arange(72).reshape(3, 3, 2, 4) % 2, 1, -1)
    m = unstructured_mask(k, 0.5)
    assert m.shape == k.shape and m.sum() == 36
    assert np.abs(k)[m == 0].max() < np.abs(k)[m == 1].min()
    assert unstructured_mask(k, 1.0).sum() == 1  # at least one weight stays
    masks = UnstructuredPolicy().masks({"a": k}, 0.25).element_masks
    assert masks["a"].sum() == 54


def _kernel_with_support(support, cin=3, cout=4, seed=0):
    rng = np.random.default_rng(seed)
    k = rng.uniform(0.01, 0.1, size=(3, 3, cin, cout))
    for t in support:
        k[t // 3, t % 3] += 10.0
    return k


def test_select_patterns_by_frequency_centre_kept():
    common = (0, 1, 4, 7)
    rare = (2, 4, 5, 8)
    ks = [_kernel_with_support(common, seed=1), _kernel_with_support(common, seed=2),
          _kernel_with_support(rare, seed=3)]
    pats = select_patterns(ks, n_patterns=2, taps=4)
    assert pats.shape == (2, 9)
    assert all(p[4] for p in pats) and all(p.sum() == 4 for p in pats)
    assert tuple(np.flatnonzero(pats[0])) == common     # most frequent first
    assert tuple(np.flatnonzero(pats[1])) == rare


def test_select_patterns_forces_the_centre_even_when_it_is_small():
    k = _kernel_with_support((0, 2, 6, 8))
    pats = select_patterns([k], n_patterns=8, taps=4)
    assert 1 <= len(pats) <= 4
    for p in pats:   # the centre plus three of the four strong corners
        assert p[4] and p.sum() == 4 and set(np.flatnonzero(p)) <= {0, 2, 4, 6, 8}


def test_project_to_patterns_keeps_the_most_energy():
    pats = np.zeros((2, 9), bool)
    pats[0, [0, 1, 4, 7]] = True
    pats[1, [2, 4, 5, 8]] = True
    k = np.zeros((3, 3, 1, 2))
    k[:, :, 0, 0] = np.array([[5, 5, 0], [0, 1, 0], [0, 5, 0]])   # fits pattern 0
    k[:, :, 0, 1] = np.array([[0, 0, 5], [0, 1, 5], [1, 0, 5]])   # fits pattern 1 (loses the 1 at tap 6)
    mask, idx = project_to_patterns(k, pats)
    assert idx.tolist() == [[0, 1]]
    assert np.array_equal(mask[:, :, 0, 0].reshape(-1).astype(bool), pats[0])
    assert np.array_equal(mask[:, :, 0, 1].reshape(-1).astype(bool), pats[1])


def test_connectivity_mask_zeroes_whole_kernels_by_norm_each_filter_keeps_one():
    k = np.ones((3, 3, 4, 2))
    k[:, :, :, 0] *= np.array([1, 2, 3, 4])
    k[:, :, :, 1] *= np.array([4, 3, 2, 1]) * 0.1
    m = connectivity_mask(k, 0.75)       # 6 of 8 kernels go; each filter keeps its strongest
    kept = m[0, 0] != 0                   # (Cin, Cout)
    assert kept.sum() == 2
    assert kept[3, 0] and kept[0, 1]
    assert np.all((m == 0) | (m == 1)) and np.all(m == m[:1, :1])   # whole kernels


def test_pattern_policy_masks_fit_the_pattern_format():
    rng = np.random.default_rng(0)
    kernels = {"c1": rng.normal(size=(3, 3, 1, 8)), "c2": rng.normal(size=(3, 3, 8, 16)),
               "pw": rng.normal(size=(1, 1, 16, 8))}
    lm = PatternPolicy(n_patterns=8).masks(kernels, 0.5)
    for name, k in kernels.items():
        w = np.round((k * lm.element_masks[name]) * 50).astype(np.int8).transpose(3, 0, 1, 2)
        row = check_method_export("pattern", w, name, lm.element_masks[name], max_patterns=8)
        if k.shape[0] == 3:
            assert row["patterns_used"] <= 8
            assert all(len(s) <= 4 for s in pattern_supports(w))
    # connectivity: half of c2's (in, out) kernels are all-zero
    assert pattern_supports(np.transpose(lm.element_masks["c2"], (3, 0, 1, 2)))[()] == 64


def test_export_check_per_method_fails_on_a_leak_and_on_too_many_patterns():
    rng = np.random.default_rng(0)
    k = rng.normal(size=(3, 3, 2, 4))
    m = unstructured_mask(k, 0.5)
    w = np.round(k * m * 40).astype(np.int8).transpose(3, 0, 1, 2)
    assert check_method_export("unstructured", w, "c", m)["weight_sparsity"] >= 0.5
    w2 = w.copy()
    z = np.argwhere(m.transpose(3, 0, 1, 2) == 0)[0]
    w2[tuple(z)] = 3
    with pytest.raises(ValueError, match="c: 1 pruned weights are non-zero"):
        check_method_export("unstructured", w2, "c", m)
    with pytest.raises(ValueError, match="4 filters in the int8 model, 3 kept"):
        check_method_export("filter", w, "c", None, filters_kept=3)
    dense = np.ones((4, 3, 3, 2), np.int8)
    with pytest.raises(ValueError, match="9 non-zero taps"):
        check_method_export("pattern", dense, "c")
    # 9 distinct 3-tap supports (none inside another) > 8 patterns
    pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3), (5, 6), (5, 7), (6, 7)]
    many = np.zeros((9, 3, 3, 1), np.int8)
    for i, (a, b) in enumerate(pairs):
        many[i].reshape(-1)[[a, b, 4]] = 1
    with pytest.raises(ValueError, match="supports"):
        check_method_export("pattern", many, "c", max_patterns=8)


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown method"):
        policy("magic")
