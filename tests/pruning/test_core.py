"""The pruner's numpy core: importance, masks and the structure rules (no TensorFlow)."""

import numpy as np
import pytest

from dtmm_tvm.pruning import (Layer, PruneGraph, dense_flat_keep, filter_importance, filter_keep,
                              filterlet_importance, filterlet_keep)
from dtmm_tvm.pruning.importance import depthwise_channel_importance, weight_importance


def test_taylor_importance_sums_per_filterlet_and_filter():
    rng = np.random.default_rng(0)
    k = rng.normal(size=(3, 3, 4, 5))   # HWIO
    g = rng.normal(size=k.shape)
    fl = filterlet_importance(k, g, "taylor")
    assert fl.shape == (5, 3, 3)
    # Filterlet (o, kh, kw) = |sum over Cin of w * g|: the first-order loss change of removing it.
    assert fl[2, 1, 0] == pytest.approx(abs((k[1, 0, :, 2] * g[1, 0, :, 2]).sum()))
    assert filter_importance(k, g, "taylor") == pytest.approx(np.abs((k * g).sum(axis=(0, 1, 2))))
    # A filterlet whose contributions cancel for this gradient has no first-order effect.
    g2 = g.copy()
    g2[1, 0, :, 2] = 0.0
    assert filterlet_importance(k, g2, "taylor")[2, 1, 0] == 0.0
    assert filterlet_importance(k, None, "l1")[0, 0, 0] == pytest.approx(np.abs(k[0, 0, :, 0]).sum())
    assert filterlet_importance(k, None, "l2")[0, 0, 0] == pytest.approx((k[0, 0, :, 0] ** 2).sum())
    with pytest.raises(ValueError):
        weight_importance(k, None, "taylor")
    dw = depthwise_channel_importance(rng.normal(size=(3, 3, 6, 1)), None, "l1")
    assert dw.shape == (6,)


def test_filter_keep_removes_least_important_and_keeps_one():
    imp = np.array([5.0, 1.0, 3.0, 0.5])
    assert filter_keep(imp, 0.5).tolist() == [True, False, True, False]
    assert filter_keep(imp, 1.0).sum() == 1            # never an empty layer
    assert filter_keep(imp, 0.0).all()


def test_filterlet_keep_ratio_within_kept_filters():
    rng = np.random.default_rng(1)
    imp = rng.uniform(size=(4, 3, 3))
    kept_filters = np.array([True, False, True, True])
    keep = filterlet_keep(imp, 0.5, kept_filters)
    assert not keep[1].any()                            # removed filter: nothing kept
    assert keep[kept_filters].sum() == 27 - 14          # round(0.5 * 27) pruned among kept filters
    for o in np.flatnonzero(kept_filters):              # every kept filter keeps its best filterlet
        assert keep[o].reshape(-1)[imp[o].reshape(-1).argmax()]
    # The pruned ones are the least important candidates.
    pruned = imp[kept_filters][~keep[kept_filters]]
    kept = imp[kept_filters][keep[kept_filters]]
    assert pruned.max() <= np.sort(kept)[-1]


def test_filterlet_keep_1x1_gets_no_filterlet_pruning():
    keep = filterlet_keep(np.ones((8, 1, 1)), 0.9)
    assert keep.all()


def test_dense_flat_keep_is_channel_minor():
    # Flatten of an NHWC (2x1 spatial, 3 channels) map: feature p * C + c.
    keep = dense_flat_keep(np.array([True, False, True]), 2)
    assert keep.tolist() == [True, False, True, True, False, True]


def _residual_graph():
    L = Layer
    return PruneGraph([
        L("in", "input", [], (8, 8, 3)),
        L("c1", "conv", ["in"], (8, 8, 16), (3, 3, 3, 16)),
        L("bn1", "batchnorm", ["c1"], (8, 8, 16)),
        L("c2", "conv", ["bn1"], (8, 8, 16), (3, 3, 16, 16)),
        L("c3", "conv", ["c2"], (8, 8, 16), (3, 3, 16, 16)),
        L("add", "add", ["bn1", "c3"], (8, 8, 16)),
        L("dw", "depthwise", ["add"], (8, 8, 16), (3, 3, 16, 1)),
        L("c4", "conv", ["dw"], (8, 8, 8), (1, 1, 16, 8)),
        L("flat", "flatten", ["c4"], (512,)),
        L("fc", "dense", ["flat"], (10,), (512, 10)),
    ], outputs=["fc"])


def test_residual_add_groups_its_convs_jointly():
    g = _residual_graph()
    group = g.group_of("c1")
    assert group is g.group_of("c3") is g.group_of("add")
    assert set(group.producers) == {"c1", "c3"}
    assert group.prunable
    assert g.group_of("c2") is not group and g.group_of("c2").producers == ["c2"]


def test_depthwise_follows_its_input_channels():
    g = _residual_graph()
    group = g.group_of("dw")
    assert group is g.group_of("c1")
    assert "dw" in group.followers
    assert ("c4", "conv_in") in group.consumers


def test_dense_after_conv_loses_input_features():
    g = _residual_graph()
    group = g.group_of("c4")
    assert ("fc", "dense_flat") in group.consumers
    assert group.prunable
    assert g.group_of("fc") is None


def _flatten_then(*between):
    L = Layer
    layers = [L("in", "input", [], (4, 4, 1)), L("c1", "conv", ["in"], (4, 4, 8), (3, 3, 1, 8)),
              L("flat", "flatten", ["c1"], (128,))]
    for i, (cls, activation) in enumerate(between):
        layers.append(L(f"p{i}", "passthrough", [layers[-1].name], (128,), class_name=cls, activation=activation))
    layers.append(L("fc", "dense", [layers[-1].name], (10,), (128, 10)))
    return PruneGraph(layers, outputs=["fc"])


def test_dense_after_flatten_and_dropout_loses_input_features():
    g = _flatten_then(("Dropout", ""), ("Activation", "relu"))
    assert g.group_of("c1").prunable and ("fc", "dense_flat") in g.group_of("c1").consumers
    assert g.feature_source("fc").name == "flat"
    # A softmax between them mixes the features: the conv's filters stay.
    g = _flatten_then(("Dropout", ""), ("Activation", "softmax"))
    assert not g.group_of("c1").prunable and "Activation 'p1'" in g.group_of("c1").reason


def test_unknown_consumer_or_output_blocks_filter_pruning():
    L = Layer
    g = PruneGraph([
        L("in", "input", [], (8, 8, 3)),
        L("c1", "conv", ["in"], (8, 8, 4), (3, 3, 3, 4)),
        L("weird", "unknown", ["c1"], (8, 8, 4), class_name="Lambda"),
        L("c2", "conv", ["weird"], (8, 8, 4), (3, 3, 4, 4)),
    ], outputs=["c2"])
    assert not g.group_of("c1").prunable and "Lambda" in g.group_of("c1").reason
    assert not g.group_of("c2").prunable and "output" in g.group_of("c2").reason
    assert [l.name for l in g.unknown()] == ["weird"]


def test_core_imports_without_tensorflow():
    import subprocess
    import sys

    code = ("import sys, dtmm_tvm.pruning, dtmm_tvm.costmodel, dtmm_tvm.pruning.search, dtmm_tvm.pruning.data; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
