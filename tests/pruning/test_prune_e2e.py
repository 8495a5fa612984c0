"""A small end-to-end prune (digits, one epoch), the Keras structure rules, the export check and
bad input. Needs TensorFlow (the [train] extra, also in [test])."""

import os
import shutil

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
try:
    import keras
    import tensorflow  # noqa: F401
except ImportError:  # under CI (DTMM_REQUIRE_TOOLS=1) this skip is a failure
    pytest.skip("tensorflow not installed (pip install 'dtmm-tvm[train]')", allow_module_level=True)

from dtmm_tvm.frontend.tflite_reader import read_tflite
from dtmm_tvm.pruning import Budget, prune
from dtmm_tvm.pruning.api import PruneError, write_outputs
from dtmm_tvm.pruning.data import DataError, digits
from dtmm_tvm.pruning.finetune import ExportError, TrainingError, check_export
from dtmm_tvm.pruning.keras_adapter import build_pruned, compute_importance, parse_model
from dtmm_tvm.pruning.masks import filter_keep as filter_keep_of
from dtmm_tvm.pruning.search import BudgetError, CostEvaluator, Plan

TOOLS = ("arm-none-eabi-gcc", "qemu-system-arm", "make")


def tiny_model(seed=0, depthwise=True):
    """Conv+BN, a residual pair, a depthwise conv, flatten -> dense: every structure rule.

    ``depthwise=False`` drops the depthwise conv: TFLite's converter quantizes the small pruned
    depthwise per-tensor with quantized dimension 3, which TVM's importer refuses (a frontend
    limit, not the pruner's), so the compiled end-to-end test uses the model without it."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((8, 8, 1), name="image")
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="r1")(x)
    y = L.Conv2D(8, 3, padding="same", activation="relu", name="c2")(x)
    y = L.Conv2D(8, 3, padding="same", name="c3")(y)
    x = L.Add(name="add")([x, y])
    if depthwise:
        x = L.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = L.Conv2D(12, 3, strides=2, padding="same", activation="relu", name="c4")(x)
    x = L.Flatten(name="flat")(x)
    out = L.Dense(10, activation="softmax", name="fc")(x)
    model = keras.Model(inp, out, name="tiny")
    return model


@pytest.fixture(scope="module")
def data():
    return digits()


def _train(model, data):
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(data.x_train, data.y_train, epochs=10, batch_size=16, verbose=0)
    return model


@pytest.fixture(scope="module")
def trained(data):
    return _train(tiny_model(), data)


@pytest.fixture(scope="module")
def trained_no_dw(data):
    return _train(tiny_model(depthwise=False), data)


def test_structure_rules_on_keras(trained):
    g = parse_model(trained)
    res = g.group_of("c1")
    assert set(res.producers) == {"c1", "c3"} and "dw" in res.followers and "bn1" in res.followers
    assert ("c4", "dense_flat") not in res.consumers and ("fc", "dense_flat") in g.group_of("c4").consumers
    keep_res = np.array([True, False] * 4)
    keep_c2 = np.array([True] * 5 + [False] * 3)
    keep_c4 = np.arange(12) % 3 != 0
    fl = {"c2": np.ones((5, 3, 3), bool)}
    fl["c2"][0, 0, 0] = False
    pruned, masks = build_pruned(trained, g, {res.id: keep_res, g.group_of("c2").id: keep_c2,
                                              g.group_of("c4").id: keep_c4}, fl)
    assert [l.name for l in pruned.layers if l.name == "bn1"] == []     # folded into c1
    assert pruned.get_layer("c1").kernel.shape == (3, 3, 1, 4)
    assert pruned.get_layer("c2").kernel.shape == (3, 3, 4, 5)
    assert pruned.get_layer("c3").kernel.shape == (3, 3, 5, 4)
    assert pruned.get_layer("dw").kernel.shape == (3, 3, 4, 1)
    assert pruned.get_layer("fc").kernel.shape == (4 * 4 * 8, 10)
    assert np.all(pruned.get_layer("c2").kernel.numpy()[0, 0, :, 0] == 0)
    # With nothing removed, the rebuilt model (BN folded) computes what the original does.
    same, _ = build_pruned(trained, g, {}, {})
    x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(same(x).numpy(), trained(x).numpy(), atol=1e-5)
    # Removing channels = zeroing them: the smaller model equals the masked original.
    bn = trained.get_layer("bn1")
    ref = keras.models.clone_model(trained)
    ref.set_weights(trained.get_weights())
    for name, keep in (("c1", keep_res), ("c3", keep_res), ("c2", keep_c2), ("c4", keep_c4)):
        layer = ref.get_layer(name)
        layer.kernel.assign(layer.kernel.numpy() * keep)
        if layer.use_bias:
            layer.bias.assign(layer.bias.numpy() * keep)
    rbn = ref.get_layer("bn1")
    w = [v.numpy() for v in bn.weights]  # gamma, beta, mean, var: beta and mean zeroed -> output 0
    rbn.set_weights([w[0], w[1] * keep_res, w[2] * keep_res, w[3]])
    small, _ = build_pruned(trained, g, {res.id: keep_res, g.group_of("c2").id: keep_c2,
                                         g.group_of("c4").id: keep_c4}, {})
    # The depthwise bias of removed channels is dropped in the small model; zero it in the reference.
    rdw = ref.get_layer("dw")
    rdw.bias.assign(rdw.bias.numpy() * keep_res)
    np.testing.assert_allclose(small(x).numpy(), ref(x).numpy(), atol=1e-4)


def test_batch_norms_kept_for_fine_tuning_are_sliced_with_their_conv(trained):
    g = parse_model(trained)
    res = g.group_of("c1")
    keep = np.array([True, False] * 4)
    kept, _ = build_pruned(trained, g, {res.id: keep}, {}, fold_batchnorm=False)
    bn = kept.get_layer("bn1")
    np.testing.assert_array_equal(bn.moving_mean.numpy(), trained.get_layer("bn1").moving_mean.numpy()[keep])
    assert kept.get_layer("c1").kernel.shape == (3, 3, 1, 4)
    # Removing channels with the BN kept computes what the folded rebuild computes.
    folded, _ = build_pruned(trained, g, {res.id: keep}, {})
    x = np.random.default_rng(1).uniform(size=(4, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(kept(x).numpy(), folded(x).numpy(), atol=1e-4)


def test_layer_sensitivity_measures_each_layer_alone_and_restores_the_model(trained, data):
    from dtmm_tvm.pruning.keras_adapter import SENSITIVITY_RATIOS, layer_sensitivity

    g = parse_model(trained)
    fl, f = compute_importance(trained, g, data.x_val, data.y_val, "taylor")
    before = [w.copy() for w in trained.get_weights()]
    sens = layer_sensitivity(trained, g, fl, f, data.x_val, data.y_val)
    for w0, w1 in zip(before, trained.get_weights()):
        np.testing.assert_array_equal(w0, w1)
    convs = [l.name for l in g.convs() if l.kernel_shape[0] * l.kernel_shape[1] > 1]
    assert {k for k in sens if k[0] == "l"} == {("l", n) for n in convs}
    assert {k for k in sens if k[0] == "f"} == {("f", gr.id) for gr in g.groups() if gr.prunable}
    for ratios, rises in sens.values():
        assert ratios == (0.0, *SENSITIVITY_RATIOS) and rises[0] == 0.0 and min(rises) >= 0.0
    # Pruning 90% of a layer of a trained model costs validation loss; check one value by hand.
    assert all(rises[-1] > 0 for _, rises in sens.values())
    keep = filter_keep_of(f[g.group_of("c4").id], 0.5)
    small, _ = build_pruned(trained, g, {g.group_of("c4").id: keep}, {}, fold_batchnorm=False)
    def loss(m):  # mean cross entropy of the softmax outputs
        p = m.predict(data.x_val, verbose=0).astype(np.float64)
        return -np.mean(np.log(np.clip(p[np.arange(len(data.y_val)), data.y_val] / p.sum(axis=1), 1e-12, None)))

    rise = loss(small) - loss(trained)
    assert sens[("f", g.group_of("c4").id)][1][2] == pytest.approx(max(rise, 0.0), abs=1e-4)


def test_layer_sensitivity_of_a_logits_model_equals_its_softmax_twin(trained, data):
    """A model ending in a linear Dense (logits, as users often train with from_logits=True)
    must get the same cross entropy as the same model with the softmax."""
    from dtmm_tvm.pruning.keras_adapter import layer_sensitivity

    cfg = trained.get_layer("fc").get_config()
    inp = trained.inputs[0]
    x = trained.get_layer("flat").output
    logits_model = keras.Model(inp, keras.layers.Dense(cfg["units"], name="fc_logits")(x))
    logits_model.get_layer("fc_logits").set_weights(trained.get_layer("fc").get_weights())
    g_soft, g_logit = parse_model(trained), parse_model(logits_model)
    fl, f = compute_importance(trained, g_soft, data.x_val, data.y_val, "l1")
    soft = layer_sensitivity(trained, g_soft, fl, f, data.x_val, data.y_val, ratios=(0.5,))
    logit = layer_sensitivity(logits_model, g_logit, fl, f, data.x_val, data.y_val, ratios=(0.5,))
    assert soft.keys() == logit.keys()
    for k in soft:
        assert logit[k][1] == pytest.approx(soft[k][1], abs=1e-4), k


def test_search_accuracy_term_sums_the_interpolated_sensitivities(trained, data):
    g = parse_model(trained)
    fl, f = compute_importance(trained, g, data.x_val, data.y_val, "l1")
    gid = g.group_of("c4").id
    sens = {("f", gid): ((0.0, 0.5, 1.0), (0.0, 1.0, 3.0)), ("l", "c2"): ((0.0, 0.25, 0.5), (0.0, 0.5, 0.6))}
    ev = CostEvaluator(g, "dtmm/cortex-m4", fl, f, sensitivity=sens)
    assert ev.evaluate(Plan()).accuracy_term == 0.0
    # c4's group: 2.0 interpolated; c2: its measured 0.6 at 0.5 is raised to 1.0 (the line through
    # 0.5 at 0.25, its steepest point), then 0.25 on the last slope (2.0)
    plan = Plan({gid: 0.75}, {"c2": 0.75})
    assert ev.evaluate(plan).accuracy_term == pytest.approx(2.0 + 1.5)


def test_a_saturated_sensitivity_curve_never_makes_a_deeper_cut_look_as_cheap():
    """Measured before fine-tuning, the loss of a deeply cut layer saturates (ResNet's trunk: 50%
    and 90% of its channels cost about the same): the curve keeps growing at least in proportion
    to the ratio, so the search does not take the deepest cut for free."""
    from dtmm_tvm.pruning.search import _interpolated

    lost = _interpolated((0.0, 0.25, 0.5, 0.75, 0.9), (0.0, 0.4, 1.9, 1.95, 1.97))
    assert lost(0.25) == pytest.approx(0.4) and lost(0.5) == pytest.approx(1.9)   # measured, kept
    assert lost(0.75) == pytest.approx(1.9 * 1.5) and lost(0.9) == pytest.approx(1.9 * 1.8)
    assert lost(0.9) / 0.9 >= lost(0.5) / 0.5
    convex = _interpolated((0.0, 0.5, 0.9), (0.0, 0.1, 1.0))   # already star-shaped: unchanged
    assert convex(0.5) == pytest.approx(0.1) and convex(0.9) == pytest.approx(1.0)


def test_dense_after_flatten_and_dropout_loses_the_removed_filters_features():
    keras.utils.set_random_seed(3)
    L = keras.layers
    inp = keras.Input((6, 6, 1))
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inp)
    x = L.Flatten(name="flat")(x)
    x = L.Dropout(0.3, name="drop")(x)
    model = keras.Model(inp, L.Dense(3, name="fc")(x))
    g = parse_model(model)
    keep = np.array([True, False, True, True])
    small, _ = build_pruned(model, g, {g.group_of("c1").id: keep}, {})
    assert small.get_layer("c1").kernel.shape == (3, 3, 1, 3) and small.get_layer("fc").kernel.shape == (36 * 3, 3)
    ref = keras.models.clone_model(model)
    ref.set_weights(model.get_weights())
    for w in ref.get_layer("c1").weights:
        w.assign(w.numpy() * keep)
    x = np.random.default_rng(0).uniform(size=(2, 6, 6, 1)).astype(np.float32)
    np.testing.assert_allclose(small(x).numpy(), ref(x).numpy(), atol=1e-5)


def test_taylor_importance_averages_per_batch_estimates(trained, data):
    """Each unit's importance is |sum of w * dL/dw| per validation batch, averaged over the
    batches weighted by their size (not one gradient of the whole split, which cancels)."""
    import tensorflow as tf

    graph = parse_model(trained)
    x, y = data.x_val[:40], data.y_val[:40]
    fl, _ = compute_importance(trained, graph, x, y, "taylor", batch=16)
    kernel = trained.get_layer("c2").kernel
    expected = np.zeros((8, 3, 3))
    for start in (0, 16, 32):
        with tf.GradientTape() as tape:
            loss = keras.losses.SparseCategoricalCrossentropy()(y[start:start + 16], trained(x[start:start + 16]))
        g = tape.gradient(loss, kernel).numpy()
        expected += len(x[start:start + 16]) / 40 * np.abs((kernel.numpy() * g).sum(axis=2)).transpose(2, 0, 1)
    np.testing.assert_allclose(fl["c2"], expected, rtol=1e-5, atol=1e-12)


def test_masks_hold_after_every_training_step_and_follow_a_new_schedule(data):
    """The enforcer's in-graph constraint zeroes the masked filterlets after every optimizer
    step (checked at each batch end, not only at the end), and new masks set between epochs
    take effect; the kernel's own constraint still applies, and uninstalling restores it alone."""
    from dtmm_tvm.pruning.keras_adapter import mask_enforcer

    model = tiny_model(seed=3, depthwise=False)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    kernel = model.get_layer("c2").kernel
    first = np.broadcast_to((rng.random((3, 3, 1, 8)) < 0.5), kernel.shape).astype(np.float32)
    second = first * np.broadcast_to((rng.random((3, 3, 1, 8)) < 0.5), kernel.shape).astype(np.float32)
    own = keras.constraints.MaxNorm(0.5, axis=(0, 1, 2))  # the user's constraint keeps working too
    kernel.constraint = own
    enforcer = mask_enforcer({"c2": first})
    enforcer.install(model)
    leaks = []

    class Check(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            leaks.append(float(np.abs(kernel.numpy() * (1.0 - enforcer.masks["c2"])).max()))

    x, y = data.x_train[:256], data.y_train[:256]
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[enforcer, Check()])
    assert len(leaks) == 8 and max(leaks) == 0.0
    assert np.abs(kernel.numpy() * first).max() > 0  # the kept weights did train
    enforcer.masks = {"c2": second}
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[enforcer, Check()])
    assert len(leaks) == 16 and max(leaks) == 0.0
    assert np.sqrt((kernel.numpy() ** 2).sum(axis=(0, 1, 2))).max() <= 0.5 + 1e-5
    enforcer.uninstall()
    assert kernel.constraint is own


def test_export_check_catches_a_nonzero_pruned_filterlet(trained, data):
    from dtmm_tvm.pruning.finetune import export_int8

    tfl = export_int8(trained, data.x_train[:20])
    keep = np.ones((8, 3, 3), bool)
    keep[0, 1, 1] = False           # claims a filterlet is pruned that the model still has
    convs = [("c1", 8, 8, None), ("c2", 8, 8, keep), ("c3", 8, 8, None), ("c4", 12, 12, None)]
    with pytest.raises(ExportError, match="c2: 1 pruned filterlets are non-zero"):
        check_export(tfl, convs)
    with pytest.raises(ExportError, match="filters in the int8 model"):
        check_export(tfl, [("c1", 6, 8, None)] + convs[1:])
    assert len(check_export(tfl, [("c1", 8, 8, None), ("c2", 8, 8, None)] + convs[2:])) == 4


def test_prune_digits_end_to_end_meets_budgets_on_the_compiled_artifact(trained_no_dw, data, tmp_path, monkeypatch):
    from dtmm_tvm.pruning.artifact import ArtifactMeasurer

    trained = trained_no_dw
    planned = []   # the int8 models the search's calibration compiled (the plan before fine-tuning)
    figures = ArtifactMeasurer.figures

    def spy(self, tflite, instructions, mode="dtmm"):
        if mode == "dtmm":
            planned.append(tflite)
        return figures(self, tflite, instructions, mode)

    monkeypatch.setattr(ArtifactMeasurer, "figures", spy)
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")
    path = tmp_path / "tiny.keras"
    trained.save(path)
    before = path.read_bytes()
    graph = parse_model(trained)
    fl, f = compute_importance(trained, graph, data.x_val, data.y_val, "l1")
    dense = CostEvaluator(graph, "dtmm/cortex-m4", fl, f).evaluate(Plan())
    budget = Budget(flash_bytes=int(dense.flash_bytes * 0.6), sram_bytes=dense.sram_bytes)
    result = prune(str(path), data, budget, "dtmm/cortex-m4", epochs=1, batch=16, lr=3e-3, eval_dense_int8=False,
                   distill=0.5, run_on_board=True, board_limit=4, search_kwargs={"t_min": 20.0, "moves": 20})
    rep = result.report
    print(rep["accuracy"], rep["predicted"], rep["compiled"])
    assert path.read_bytes() == before
    # The budgets hold on the compiled artifact's own figures.
    assert rep["compiled"]["constants_bytes"] <= budget.flash_bytes
    assert rep["compiled"]["arena_bytes"] <= budget.sram_bytes
    assert rep["accuracy"]["float_dense"] > 0.8
    assert rep["accuracy"]["int8_pruned_tflm"] > 0.6           # one epoch of fine-tuning: far above chance
    assert rep["distill"] == {"weight": 0.5, "temperature": 4.0}
    assert rep["compiled"]["bit_exact_vs_tflm"] and rep["compiled"]["board_images"] == 4
    # The plan was compiled before fine-tuning: the final model has the same masks (the same kept
    # filterlets in every conv), the same arena and the same constants but for the weights that
    # fine-tuning moved across int8 zero inside a kept filterlet.
    calibration = rep["search"]["calibration"]
    assert calibration and not calibration[-1]["missed"] and len(planned) == len(calibration)
    measured = calibration[-1]["measured"]
    assert rep["compiled"]["arena_bytes"] == measured["arena_bytes"]

    def conv_weights(tflite):
        g = read_tflite(tflite, name="t")
        return [g.tensor(op.inputs[1]).data for op in g.operators if op.opcode == "CONV_2D"]

    before_ft, after_ft = conv_weights(planned[-1]), conv_weights(result.tflite)
    for a, b in zip(before_ft, after_ft, strict=True):
        np.testing.assert_array_equal(np.any(a != 0, axis=3), np.any(b != 0, axis=3))   # same masks
    # the bytes differ by 3 per weight that rounds to zero on one side only, in the layers stored
    # per weight (unstructured CSR: int8 value + int16 column)
    formats = [l["format"] for l in result.artifact_metadata["layers"] if l["name"].startswith("conv2d")]
    per_weight = sum(int(np.count_nonzero(a)) - int(np.count_nonzero(b))
                     for a, b, fmt in zip(before_ft, after_ft, formats, strict=True) if fmt == "unstructured_csr")
    assert measured["constants_bytes"] - rep["compiled"]["constants_bytes"] == 3 * per_weight
    # Every priced layer has its measured instructions from the profiled run next to the prediction.
    rows = {r["layer"]: r for r in rep["layers"]}
    assert {"c1", "c2", "c3", "c4", "add", "fc", "fc/softmax"} <= set(rows)
    for row in rows.values():
        assert row["measured_instructions"] and row["measured_instructions"] > 0, row
        assert row["predicted_instructions"] > 0, row
    assert sum(r["measured_instructions"] for r in rows.values()) <= rep["compiled"]["profile_total_instructions"]
    out = tmp_path / "out.tflite"
    write_outputs(result, out)
    assert out.read_bytes() == result.tflite


@pytest.mark.parametrize("method", ["filter", "unstructured"])
def test_baselines_fine_tune_like_dtmm_with_the_unpruned_model_as_teacher(trained, data, method, monkeypatch):
    """Every method shares the fine-tuning (issue 9): a baseline asked to distill gets the unpruned
    model as its teacher, and its report says so."""
    import dtmm_tvm.pruning.finetune as ft

    seen, real = {}, ft.finetune
    monkeypatch.setattr(ft, "finetune", lambda *a, **kw: (seen.update(kw), real(*a, **kw))[1])
    res = prune(trained, data, Budget(flash_fraction=0.8), "dtmm/cortex-m4", method=method, epochs=1, lr=2e-3,
                distill=0.5, temperature=3.0, check_compiled=False, eval_dense_int8=False, int8_accuracy_images=20)
    assert seen["teacher"] is trained and seen["distill"] == 0.5 and seen["temperature"] == 3.0 and seen["lr"] == 2e-3
    assert res.report["distill"] == {"weight": 0.5, "temperature": 3.0}
    assert "loss" in res.report["finetune"][0]


def test_bad_input_one_clear_error_nothing_written(trained, data, tmp_path):
    path = tmp_path / "m.keras"
    trained.save(path)
    with pytest.raises(BudgetError, match="cannot be met.*flash") as err:
        prune(str(path), data, Budget(flash_bytes=100), "dtmm/cortex-m4", epochs=0, check_compiled=False)
    # the smallest achievable figures, for scripts (bench/pruning reports them as "not achievable")
    assert err.value.budget.flash_bytes == 100 and err.value.smallest.flash_bytes > 100
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x_train=np.zeros((20, 9, 9, 1), np.float32), y_train=np.zeros(20, np.int64),
             x_test=np.zeros((5, 9, 9, 1), np.float32), y_test=np.zeros(5, np.int64))
    with pytest.raises(DataError, match=r"\(9, 9, 1\) but .* takes \(8, 8, 1\)"):
        prune(str(path), str(wrong), None, epochs=0, check_compiled=False)
    dense_only = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    with pytest.raises(PruneError, match="no Conv2D"):
        prune(dense_only, data, None, epochs=0, check_compiled=False)
    with pytest.raises(PruneError, match="max_filter_ratio 1.0: must be at least 0 and below 1"):
        prune(str(path), data, None, epochs=0, check_compiled=False, max_filter_ratio=1.0)
    with pytest.raises(TrainingError, match="loss became"):
        prune(str(path), data, None, epochs=1, lr=1e12, check_compiled=False, eval_dense_int8=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras", "wrong.npz"]


def test_unknown_layers_are_named_and_the_rest_is_pruned(data):
    L = keras.layers
    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="a")(inp)
    x = L.UpSampling2D(1, name="odd")(x)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="b")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inp, L.Dense(10, name="fc")(x))
    g = parse_model(model)
    assert [u.name for u in g.unknown()] == ["odd"]
    assert not g.group_of("a").prunable and g.group_of("b").prunable
    result = prune(model, data, None, epochs=0, check_compiled=False, eval_dense_int8=False,
                   search_kwargs={"t_min": 50.0, "moves": 10})
    assert any("odd" in u for u in result.report["not_understood"])
