"""Keras side of the pruner (imports TensorFlow / Keras lazily, only when called).

- :func:`parse_model`: a Keras 3 functional or sequential model -> :class:`PruneGraph`;
- :func:`compute_importance`: filterlet and filter importance (Taylor over the validation
  split, or L1 / L2);
- :func:`layer_sensitivity`: the validation loss increase of each layer pruned alone (the
  search's accuracy term);
- :func:`build_pruned`: a new Keras model with removed filters physically gone (consumers' input
  channels, batch norms and dense input features sliced; batch norms that directly follow a conv
  folded into it, or kept for fine-tuning) and pruned filterlets zeroed;
- :func:`mask_enforcer`: a callback keeping the filterlet masks applied after every training step.

Understood layers: InputLayer, Conv2D (groups 1, dilation 1, channels_last), DepthwiseConv2D
(depth multiplier 1), Dense (on a flat input), BatchNormalization, Add, ReLU, Activation,
LeakyReLU, Softmax, Dropout, SpatialDropout2D, GaussianNoise, MaxPooling2D, AveragePooling2D,
GlobalAveragePooling2D, GlobalMaxPooling2D, Flatten. Any other layer is kept as it is (its
weights copied) and named in the report; channels it reads or produces are not filter-pruned.
"""

from __future__ import annotations

import os

import numpy as np

from .graph import Layer, PruneGraph
from .importance import depthwise_channel_importance, filter_importance, filterlet_importance
from .masks import dense_flat_keep

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PASSTHROUGH = {"ReLU", "Activation", "LeakyReLU", "Softmax", "Dropout", "SpatialDropout2D", "GaussianNoise",
               "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D"}


def _keras():
    import keras

    return keras


def _inputs_of(layer) -> list:
    nodes = layer._inbound_nodes
    if not nodes:
        return []
    return [t._keras_history.operation.name for t in nodes[0].input_tensors]


def _shape(t) -> tuple:
    return tuple(int(d) for d in t.shape[1:])


def parse_model(model) -> PruneGraph:
    """The model's layers in order with their kinds (see the module docstring)."""
    layers = []
    names = {l.name for l in model.layers}
    input_names = []
    for t in model.inputs:
        op = t._keras_history.operation
        input_names.append(op.name)
        if op.name not in names:
            layers.append(Layer(op.name, "input", [], _shape(t), class_name="InputLayer"))
    for l in model.layers:
        cls = type(l).__name__
        if len(l._inbound_nodes) > 1:
            kind, reason = "unknown", "layer used more than once"
        else:
            kind, reason = _kind(l, cls)
        ins = _inputs_of(l)
        try:
            out_shape = _shape(l.output)
        except (AttributeError, ValueError):
            out_shape = ()
        layer = Layer(l.name, kind, ins, out_shape, class_name=cls, unknown_reason=reason)
        if kind in ("conv", "depthwise"):
            layer.kernel_shape = tuple(int(d) for d in l.kernel.shape)
            layer.strides = tuple(int(s) for s in l.strides)
            layer.padding = l.padding
        elif kind == "dense":
            layer.kernel_shape = tuple(int(d) for d in l.kernel.shape)
        elif cls in ("MaxPooling2D", "AveragePooling2D"):
            layer.pool_size = tuple(int(d) for d in l.pool_size)
            layer.strides = tuple(int(d) for d in (l.strides or l.pool_size))
            layer.padding = l.padding
        if cls in ("Conv2D", "DepthwiseConv2D", "Dense", "Activation"):
            act = l.get_config().get("activation", "linear")
            layer.activation = act if isinstance(act, str) else ""
        layers.append(layer)
    outputs = [t._keras_history.operation.name for t in model.outputs]
    return PruneGraph(layers, outputs)


def _kind(l, cls) -> tuple:
    cfg = l.get_config()
    if cls == "InputLayer":
        return "input", ""
    if cls == "Conv2D":
        if cfg.get("groups", 1) != 1:
            return "unknown", "grouped conv"
        if tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1):
            return "unknown", "dilated conv"
        if cfg.get("data_format", "channels_last") != "channels_last":
            return "unknown", "channels_first"
        return "conv", ""
    if cls == "DepthwiseConv2D":
        if cfg.get("depth_multiplier", 1) != 1:
            return "unknown", "depth multiplier > 1"
        if tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1):
            return "unknown", "dilated depthwise conv"
        return "depthwise", ""
    if cls == "Dense":
        if len(l.input.shape) != 2:
            return "unknown", "dense on a non-flat input"
        return "dense", ""
    if cls == "BatchNormalization":
        axis = cfg.get("axis", -1)
        axis = axis[0] if isinstance(axis, (list, tuple)) else axis
        if axis not in (-1, len(l.input.shape) - 1):
            return "unknown", "batch norm over a non-channel axis"
        return "batchnorm", ""
    if cls == "Add":
        return "add", ""
    if cls == "Flatten":
        return "flatten", ""
    if cls in PASSTHROUGH:
        return "passthrough", ""
    return "unknown", "layer type not understood by the pruner"


# ---- importance -------------------------------------------------------------------------
def compute_importance(model, graph: PruneGraph, x_val, y_val, criterion: str = "taylor", batch: int = 64):
    """``(filterlet_importance {conv: (Cout,KH,KW)}, filter_importance {group id: (C,)})``; taylor
    averages each unit's per-batch estimate over the validation split in batches of ``batch``."""
    convs = [model.get_layer(l.name) for l in graph.layers.values() if l.kind in ("conv", "depthwise")]
    # Magnitudes of the kernels with their batch norms folded in (a BN scale is part of the
    # filter's weight); Taylor's w * dL/dw is the same either way.
    source = model if criterion == "taylor" else build_pruned(model, graph, {}, {})[0]
    kernels = {l.name: source.get_layer(l.name).kernel.numpy() for l in convs}
    fl, per_filter = {}, {}

    def accumulate(grads, weight):
        for l in convs:
            k, g = kernels[l.name], grads.get(l.name)
            if graph.layers[l.name].kind == "conv":
                fl[l.name] = fl.get(l.name, 0.0) + weight * filterlet_importance(k, g, criterion)
                per_filter[l.name] = per_filter.get(l.name, 0.0) + weight * filter_importance(k, g, criterion)
            else:
                per_filter[l.name] = per_filter.get(l.name, 0.0) + weight * depthwise_channel_importance(k, g,
                                                                                                        criterion)

    if criterion == "taylor":
        n = len(x_val)
        for start, grads in _batch_gradients(model, convs, x_val, y_val, batch):
            accumulate(grads, min(batch, n - start) / n)
    else:
        accumulate({}, 1.0)
    groups = {}
    for g in graph.groups():
        if not g.prunable:
            continue
        total = np.zeros(g.channels)
        for name in g.producers + [f for f in g.followers if graph.layers[f].kind == "depthwise"]:
            v = per_filter[name]
            total += v / max(v.sum(), 1e-30)   # each layer's share, so big layers do not dominate
        groups[g.id] = total
    return fl, groups


SENSITIVITY_RATIOS = (0.25, 0.5, 0.75, 0.9)


def layer_sensitivity(model, graph: PruneGraph, filterlet_importance: dict, filter_importance: dict, x, y,
                      ratios=SENSITIVITY_RATIOS) -> dict:
    """Measured sensitivity of each prunable unit kind, one layer at a time (Han et al.'s
    sensitivity analysis): the validation loss increase when only that channel group loses
    ``ratio`` of its filters (physically removed, as :func:`build_pruned` does) or only that conv
    loses ``ratio`` of its filterlets (least important first). Returns
    ``{("f", group id) | ("l", conv): (ratios, loss increases)}`` with ratio 0 -> 0 first."""
    from .masks import filter_keep, filterlet_keep

    def loss_of(m):  # mean cross entropy; a model without a final softmax gives logits
        out = m.predict(x, batch_size=512, verbose=0).astype(np.float64)
        if _ends_in_softmax(m):
            p = np.clip(out, 0.0, None)
        else:
            p = np.exp(out - out.max(axis=1, keepdims=True))
        p = p / p.sum(axis=1, keepdims=True)
        return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))

    base = loss_of(model)
    grid = (0.0, *ratios)
    out = {}
    for g in graph.groups():
        if g.prunable and g.id in filter_importance:
            rises = [0.0]
            for r in ratios:
                pruned, _ = build_pruned(model, graph, {g.id: filter_keep(filter_importance[g.id], r)}, {},
                                         fold_batchnorm=False)
                rises.append(max(loss_of(pruned) - base, 0.0))
            out[("f", g.id)] = (grid, tuple(rises))
    for name, imp in filterlet_importance.items():
        if imp.shape[1] * imp.shape[2] <= 1:
            continue
        kernel = model.get_layer(name).kernel
        saved = kernel.numpy()
        rises = [0.0]
        try:  # the caller's model gets its kernel back whatever happens
            for r in ratios:
                keep = filterlet_keep(imp, r)  # (Cout, KH, KW) -> HWIO
                kernel.assign(saved * keep.transpose(1, 2, 0)[:, :, None, :])
                rises.append(max(loss_of(model) - base, 0.0))
        finally:
            kernel.assign(saved)
        out[("l", name)] = (grid, tuple(rises))
    return out


def _batch_gradients(model, layers, x, y, batch):
    """Yields ``(start, {layer: dL/dkernel})`` for each batch of ``x`` (the batch's mean loss)."""
    import tensorflow as tf

    loss_fn = _keras().losses.SparseCategoricalCrossentropy(from_logits=not _ends_in_softmax(model))
    variables = [l.kernel for l in layers]
    for i in range(0, len(x), batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=False))
        # A kernel off the loss's path (e.g. a branch to another output) has no gradient: no
        # first-order effect, importance 0.
        yield i, {l.name: (np.zeros(v.shape, np.float32) if g is None else g.numpy())
                  for l, v, g in zip(layers, variables, tape.gradient(loss, variables))}


def _ends_in_softmax(model) -> bool:
    last = model.layers[-1]
    cls = type(last).__name__
    if cls == "Softmax":
        return True
    act = getattr(last, "activation", None)
    return getattr(act, "__name__", "") == "softmax"


# ---- rebuild ----------------------------------------------------------------------------
def build_pruned(model, graph: PruneGraph, channel_keep: dict, filterlet_keep: dict, fold_batchnorm: bool = True):
    """A new Keras model: filters removed per ``channel_keep`` ({group id: bool (C,)}), BN after a
    conv folded into it (``fold_batchnorm``; else the BN is sliced like its conv), filterlets zeroed per ``filterlet_keep`` ({conv: bool (Cout_kept,KH,KW)},
    indexed over the *kept* filters). Returns ``(model, kernel_masks {layer: mask})``."""
    keras = _keras()
    keep_of = {}
    for g in graph.groups():
        keep = channel_keep.get(g.id)
        for name in g.carriers:
            keep_of[name] = keep if keep is not None else np.ones(graph.layers[name].channels, dtype=bool)
    folded = {}   # bn name -> conv name it is folded into
    for name in graph.order:
        layer = graph.layers[name]
        if layer.kind == "batchnorm" and layer.inputs:
            src = graph.layers[layer.inputs[0]]
            if fold_batchnorm and src.kind in ("conv", "depthwise") and len(graph.consumers_of(src.name)) == 1 and \
                    model.get_layer(src.name).get_config().get("activation", "linear") == "linear":
                folded[name] = src.name
    fold_into = {v: k for k, v in folded.items()}
    tensors = {}
    new_inputs = []
    for t in model.inputs:
        op = t._keras_history.operation
        inp = keras.Input(shape=_shape(t), name=op.name, dtype=t.dtype)
        tensors[op.name] = inp
        new_inputs.append(inp)
    masks = {}
    for name in graph.order:
        layer = graph.layers[name]
        if layer.kind == "input":
            continue
        old = model.get_layer(name)
        ins = [tensors[i] for i in layer.inputs]
        if name in folded:
            tensors[name] = tensors[layer.inputs[0]]
            continue
        cfg = old.get_config()
        weights = [w.numpy() for w in old.weights]
        in_keep = keep_of.get(layer.inputs[0]) if layer.inputs else None
        if layer.kind == "conv":
            out_keep = keep_of[name]
            kernel = weights[0][:, :, in_keep if in_keep is not None else slice(None), :][..., out_keep]
            bias = weights[1][out_keep] if cfg.get("use_bias", True) else np.zeros(int(out_keep.sum()), np.float32)
            if name in fold_into:
                kernel, bias = _fold_bn(model.get_layer(fold_into[name]), kernel, bias, out_keep)
            cfg.update(filters=int(out_keep.sum()), use_bias=True)
            new = type(old).from_config(cfg)
            out = new(ins[0])
            mask = None
            if name in filterlet_keep:
                fk = filterlet_keep[name]  # (Cout_kept, KH, KW)
                mask = np.broadcast_to(fk.transpose(1, 2, 0)[:, :, None, :], kernel.shape).astype(np.float32)
                kernel = kernel * mask
                masks[name] = mask
            new.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
        elif layer.kind == "depthwise":
            keep = keep_of[name]
            kernel = weights[0][:, :, keep, :]
            bias = weights[1][keep] if cfg.get("use_bias", True) else np.zeros(int(keep.sum()), np.float32)
            if name in fold_into:
                k2, bias = _fold_bn(model.get_layer(fold_into[name]), kernel.transpose(0, 1, 3, 2), bias, keep)
                kernel = k2.transpose(0, 1, 3, 2)
            cfg.update(use_bias=True)
            new = type(old).from_config(cfg)
            out = new(ins[0])
            new.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
        elif layer.kind == "batchnorm":
            keep = keep_of[name]
            new = type(old).from_config(cfg)
            out = new(ins[0])
            new.set_weights([w[keep] for w in weights])
        elif layer.kind == "dense":
            src = graph.feature_source(name)
            if src.kind == "flatten":
                ckeep = keep_of.get(src.inputs[0])
                rows = (dense_flat_keep(ckeep, int(np.prod(graph.layers[src.inputs[0]].output_shape[:-1])))
                        if ckeep is not None else None)
            else:
                rows = keep_of.get(layer.inputs[0])
            kernel = weights[0] if rows is None else weights[0][rows]
            new = type(old).from_config(cfg)
            out = new(ins[0])
            new.set_weights([kernel] + weights[1:])
        else:  # passthrough, add, flatten, unknown: same layer config, same weights
            new = type(old).from_config(cfg)
            out = new(ins if layer.kind == "add" or len(ins) > 1 else ins[0])
            if weights:
                new.set_weights(weights)
        tensors[name] = out
    outputs = [tensors[t._keras_history.operation.name] for t in model.outputs]
    pruned = keras.Model(new_inputs if len(new_inputs) > 1 else new_inputs[0],
                         outputs if len(outputs) > 1 else outputs[0], name=model.name)
    return pruned, masks


def _fold_bn(bn, kernel_hwio, bias, keep):
    """Fold an inference-mode batch norm into the preceding conv's (sliced) kernel and bias."""
    cfg = bn.get_config()
    w = {v.path.split("/")[-1]: v.numpy() for v in bn.weights}
    gamma = w.get("gamma", np.ones_like(w["moving_mean"]))[keep]
    beta = w.get("beta", np.zeros_like(w["moving_mean"]))[keep]
    mean, var = w["moving_mean"][keep], w["moving_variance"][keep]
    scale = gamma / np.sqrt(var + cfg.get("epsilon", 1e-3))
    return kernel_hwio * scale, (bias - mean) * scale + beta


def mask_enforcer(masks: dict):
    """A Keras callback keeping each masked kernel multiplied by its mask after every training step.

    The masks live in non-trainable variables that a constraint on each kernel multiplies in;
    Keras applies constraints inside the compiled train step right after the optimizer's
    update, so the masks hold after every step without a Python round trip per batch. The
    callback installs the constraints (before the first step is traced) and ``masks = {...}``
    swaps in new masks between epochs (a gradual schedule).
    """
    keras = _keras()

    class KernelMask(keras.constraints.Constraint):
        """The kernel's own constraint (e.g. MaxNorm), if any, then the mask."""

        def __init__(self, mask, inner=None):
            self.mask = mask
            self.inner = inner

        def __call__(self, w):
            return (w if self.inner is None else self.inner(w)) * self.mask

    class MaskEnforcer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self._masks = dict(masks)
            self._variables = {}

        @property
        def masks(self):
            return self._masks

        @masks.setter
        def masks(self, value):
            self._masks = dict(value)
            if self._variables:
                self.apply()

        def install(self, model):
            """Put a mask constraint on every masked kernel of ``model`` (call before ``fit``)."""
            for name, mask in self._masks.items():
                kernel = model.get_layer(name).kernel
                var = keras.Variable(np.asarray(mask, np.float32), trainable=False, name=f"{name}_mask")
                self._variables[name] = (kernel, var, kernel.constraint)
                kernel.constraint = KernelMask(var, kernel.constraint)
            self.apply()

        def apply(self):
            for name, mask in self._masks.items():
                kernel, var, _ = self._variables[name]
                var.assign(np.asarray(mask, np.float32))
                kernel.assign(kernel * var)

        def uninstall(self):
            for kernel, _, own in self._variables.values():
                kernel.constraint = own
            self._variables = {}

        def on_train_begin(self, logs=None):
            if not self._variables:
                self.install(self.model)

    return MaskEnforcer()
