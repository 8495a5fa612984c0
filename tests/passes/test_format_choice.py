"""The per-layer weight-format decision (dense vs filterlet formats) by predicted instructions."""

import json

import numpy as np
import pytest
import tvm

from dtmm_tvm.costmodel.format_choice import DENSE_MARGIN, UNSTRUCTURED_MARGIN, decide_conv_format, kept_runs, pick
from dtmm_tvm.quant.conv import Conv2DParams


def _params(h, w, cin, cout, k, stride=1):
    pad = (k - 1) // 2
    return Conv2DParams(input_shape=(1, h, w, cin), weight_shape=(cout, k, k, cin), strides=(stride, stride),
                        padding=(pad, pad, k - 1 - pad, k - 1 - pad), dilation=(1, 1), input_zero_point=0,
                        output_zero_point=0, act_min=-128, act_max=127)


def _weights(cout, k, cin, sparsity, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.integers(1, 127, size=(cout, k, k, cin)).astype(np.int8)
    keep = rng.random((cout, k, k)) >= sparsity
    return w * keep[..., None]


def test_pick_rules():
    nbytes = {"dense": 1000, "filterlet_csr": 400, "filterlet_u8": 380}
    assert pick(nbytes, {}, 0.05, 0.1)[0] == "dense"  # below the threshold
    # speed: fastest; a format within 2% of the fastest with fewer bytes wins the tie
    assert pick(nbytes, {"dense": 100, "filterlet_csr": 50, "filterlet_u8": 51}, 0.5, 0.1)[0] == "filterlet_u8"
    assert pick(nbytes, {"dense": 100, "filterlet_csr": 50, "filterlet_u8": 60}, 0.5, 0.1)[0] == "filterlet_csr"
    # never a format that is not predicted clearly faster than dense
    slow = 100 * (1 - DENSE_MARGIN) + 1
    fmt, reason = pick(nbytes, {"dense": 100, "filterlet_csr": slow, "filterlet_u8": 200}, 0.9, 0.1)
    assert fmt == "dense" and "not 5% faster" in reason
    assert pick(nbytes, {"dense": 100, "filterlet_csr": 85, "filterlet_u8": 200}, 0.9, 0.1, margin=0.2)[0] == "dense"
    # size: fewest bytes, whatever the speed; no prediction falls back to size
    assert pick(nbytes, {"dense": 100, "filterlet_csr": 50, "filterlet_u8": 300}, 0.5, 0.1, "size")[0] == "filterlet_u8"
    assert pick(nbytes, {}, 0.5, 0.1, "speed")[0] == "filterlet_u8"
    with pytest.raises(ValueError, match="optimize"):
        pick(nbytes, {}, 0.5, 0.1, "fast")


def test_kept_runs_counts_consecutive_taps():
    # taps in row-major order 1 1 0 | 0 1 1 | 1 0 1: runs [0-1], [4-6] (across the row end), [8]
    keep = np.array([[[1, 1, 0], [0, 1, 1], [1, 0, 1]]], bool)
    assert kept_runs(keep) == 3
    assert kept_runs(np.ones((2, 3, 3), bool)) == 2


@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m55"])
def test_small_cin_first_conv_stays_dense_unless_sparse_is_predicted_faster(core):
    # DS-CNN-like first conv (Cin = 1, 10x4): the dense packed-patch kernel wins at 60%
    params = Conv2DParams(input_shape=(1, 49, 10, 1), weight_shape=(64, 10, 4, 1), strides=(2, 2),
                          padding=(4, 1, 5, 2), dilation=(1, 1), input_zero_point=0, output_zero_point=0,
                          act_min=-128, act_max=127)
    rng = np.random.default_rng(1)
    w = (rng.integers(1, 127, size=(64, 10, 4, 1)) * (rng.random((64, 10, 4, 1)) >= 0.6)).astype(np.int8)
    d = decide_conv_format(w, params, f"dtmm/{core}")
    assert d.format == "dense" and d.predicted and d.predicted["dense"] < min(
        v for f, v in d.predicted.items() if f.startswith("filterlet_"))
    # the per-weight format is predicted a little faster on M4 (the dense fit over-predicts this
    # packed-patch layer: measured 730 k dense vs 867 k unstructured), not by its 25% margin
    assert "unstructured_csr" in d.predicted and "unstructured_csr" in d.reason
    assert decide_conv_format(w, params, f"dtmm/{core}", optimize="size").format == "filterlet_u8"  # 40 taps: no bitmask


def test_paper_layer_at_90_percent_goes_sparse_and_records_why():
    params = _params(16, 16, 64, 64, 3)
    d = decide_conv_format(_weights(64, 3, 64, 0.9), params, "dtmm/cortex-m4")
    assert d.format.startswith("filterlet_") and d.predicted[d.format] < d.predicted["dense"] / 2
    doc = d.to_json()
    assert doc["chosen"] == d.format and doc["cost_model"] == "dtmm/cortex-m4"
    # at 90% a filter keeps ~1 tap: its (out, in) kernels also fit the pattern format's limits
    from dtmm_tvm.sparsity.pattern import detect_patterns

    pattern = {"pattern"} if detect_patterns(_weights(64, 3, 64, 0.9)) is not None else set()
    # at 90% some 3x3 filters lose every tap (0.9^9 = 39%): the filter-compacted conv is a candidate
    w = _weights(64, 3, 64, 0.9)
    compact = {"filter_compact"} if not w.reshape(64, -1).any(axis=1).all() else set()
    assert compact
    assert set(doc["predicted_instructions"]) == set(doc["bytes"]) == {"dense", "filterlet_csr", "filterlet_u8",
                                                                       "filterlet_bitmask", "unstructured_csr"} | pattern | compact
    json.dumps(doc)
    # without a target nothing is predicted: bytes decide, and the reason says so
    nod = decide_conv_format(_weights(64, 3, 64, 0.9), params, None)
    assert not nod.predicted and "no target" in nod.reason


def test_compile_flag_and_inspect(tmp_path, capsys):
    from dtmm_tvm.cli.main import main

    model = "tests/fixtures/fashion_filterlet/fashion_cnn_filterlet_int8.tflite"  # 60-85% filterlet-sparse
    speed, size = tmp_path / "speed.tar", tmp_path / "size.tar"
    assert main(["compile", model, "-o", str(speed)]) == 0
    assert main(["compile", model, "-o", str(size), "--optimize", "size"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(speed), "--json"]) == 0
    speed_doc = json.loads(capsys.readouterr().out)
    assert main(["inspect", str(size), "--json"]) == 0
    size_doc = json.loads(capsys.readouterr().out)
    assert speed_doc["optimize"] == "speed" and size_doc["optimize"] == "size"
    first_speed, first_size = speed_doc["layers"][0], size_doc["layers"][0]
    # the 28x28x1 first conv (60%, Cin 1): size takes the smallest format; speed takes the
    # per-weight kernel only when it is predicted 25% faster than every other candidate (the
    # dense kernel and the fit decide which, so the rule is checked, not one outcome)
    assert first_size["chosen"] == "filterlet_bitmask" == min(first_size["bytes"], key=first_size["bytes"].get)
    pred = first_speed["predicted_instructions"]
    csr_wins = pred["unstructured_csr"] < (1 - UNSTRUCTURED_MARGIN) * min(v for f, v in pred.items()
                                                                          if f != "unstructured_csr")
    assert (first_speed["chosen"] == "unstructured_csr") == csr_wins, first_speed["reason"]
    for row in speed_doc["layers"]:
        pred = row["predicted_instructions"]
        assert pred[row["chosen"]] <= pred["dense"]
    assert main(["inspect", str(speed)]) == 0
    assert f"* {first_speed['chosen']}" in capsys.readouterr().out


def test_unstructured_against_the_compact_conv_needs_only_the_ordinary_margin():
    # ResNet-8's Cin-3 stem at 90% on M4 (predicted; measured 0.937 M unstructured, 1.138 M compact)
    nbytes = {"dense": 432, "filterlet_csr": 300, "unstructured_csr": 194, "filter_compact": 277}
    pred = {"dense": 1_533_600, "filterlet_csr": 1_449_567, "unstructured_csr": 1_009_974, "filter_compact": 1_178_596}
    assert pick(nbytes, pred, 0.9, 0.1)[0] == "unstructured_csr"
    # only 3% faster than the compact conv: not enough
    assert pick(nbytes, dict(pred, unstructured_csr=1_145_000), 0.9, 0.1)[0] == "filter_compact"
    # still 25% faster than dense and every filterlet format, as before
    assert pick(nbytes, dict(pred, filterlet_csr=1_200_000, filter_compact=2_000_000), 0.9, 0.1)[0] == "filterlet_csr"
