"""The pattern-pruning baseline's format in the per-layer format decision."""

import numpy as np
import pytest

from dtmm_tvm.costmodel.format_choice import decide_conv_format, pick
from dtmm_tvm.costmodel.measure import MEASURE_PATTERNS_3X3, random_pattern_weights
from dtmm_tvm.quant.conv import Conv2DParams


def _params(h, cin, cout):
    return Conv2DParams(input_shape=(1, h, h, cin), weight_shape=(cout, 3, 3, cin), padding=(1, 1, 1, 1),
                        input_zero_point=-3, output_zero_point=5)


def test_pick_considers_pattern_below_the_filterlet_threshold():
    nbytes = {"dense": 1000, "filterlet_csr": 1100, "pattern": 500}
    # filterlet sparsity 0: the filterlet format is no candidate, the pattern format is
    assert pick(nbytes, {}, 0.0, 0.1, "size")[0] == "pattern"
    assert pick(nbytes, {"dense": 100, "filterlet_csr": 30, "pattern": 40}, 0.0, 0.1)[0] == "pattern"
    # ... but it must still be predicted faster than dense by the margin
    assert pick(nbytes, {"dense": 100, "filterlet_csr": 30, "pattern": 97}, 0.0, 0.1)[0] == "dense"
    assert pick({"dense": 1000, "filterlet_csr": 1100}, {}, 0.0, 0.1, "size")[0] == "dense"


# M55: the dense MVE kernel is strong and the fit's held-out conv error is the dense margin, so
# the pattern kernel is chosen at high connectivity pruning (bench/results/pattern.md)
@pytest.mark.parametrize("target, cin, connectivity", [("dtmm/cortex-m4", 32, 0.3), ("dtmm/cortex-m55", 64, 0.7)])
def test_pattern_weights_get_the_pattern_format_by_prediction(target, cin, connectivity):
    params = _params(16, cin, cin)
    w = random_pattern_weights(params.weight_shape, MEASURE_PATTERNS_3X3[:8], connectivity, np.random.default_rng(0))
    d = decide_conv_format(w, params, target, "speed")
    assert d.format == "pattern", d.reason
    assert d.predicted["pattern"] < d.predicted["dense"]
    kept = int(np.any(w != 0, axis=(1, 2)).sum())
    assert d.bytes["pattern"] == 6 * kept + 2 * cin + 4 * 8
    # the same weights without connectivity pruning: pattern is still predicted, and whatever is
    # chosen is never predicted slower than dense
    w0 = random_pattern_weights(params.weight_shape, MEASURE_PATTERNS_3X3[:8], 0.0, np.random.default_rng(0))
    d0 = decide_conv_format(w0, params, target, "speed")
    assert "pattern" in d0.predicted and d0.predicted[d0.format] <= d0.predicted["dense"], d0.reason


def test_weights_outside_the_pattern_limits_are_not_given_the_format():
    params = _params(8, 8, 8)
    rng = np.random.default_rng(1)
    five = random_pattern_weights(params.weight_shape, [(0, 1, 3, 4, 5)], 0.3, rng)  # 5-tap supports
    d = decide_conv_format(five, params, "dtmm/cortex-m4", "size")
    assert "pattern" not in d.bytes and d.format != "pattern"
    dense = rng.integers(1, 100, size=params.weight_shape).astype(np.int8)
    assert "pattern" not in decide_conv_format(dense, params, "dtmm/cortex-m4", "size").bytes
    # the pattern format only when asked for
    w = random_pattern_weights(params.weight_shape, MEASURE_PATTERNS_3X3[:4], 0.3, rng)
    assert "pattern" in decide_conv_format(w, params, None, "size").bytes
    assert "pattern" not in decide_conv_format(w, params, None, "size", formats=("filterlet_csr",)).bytes
