"""The pruner's view of a model: layers, what they read, and which channels must move together.

Framework-free (numpy only). The Keras adapter (:mod:`dtmm_tvm.pruning.keras_adapter`) fills a
:class:`PruneGraph`; the structure rules live here:

- a regular conv's output channels ("filters") may be removed physically; its consumers lose the
  matching input channels;
- convs whose outputs meet in one residual ``add`` form one channel group (pruned jointly, same
  filters kept);
- a depthwise conv, batch norm, activation, pooling or dropout passes its input's channels
  through (a depthwise conv follows its input's channels);
- a dense layer after ``flatten`` (or global pooling) loses the input features of removed
  channels, also when feature-wise layers (dropout, noise, an elementwise activation) sit between
  the flatten and the dense;
- a group is filter-prunable only when every consumer of its channels is understood and the
  model output does not carry them; anything not understood stays untouched and is named.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Layer kinds the rules understand. "passthrough": channels in = channels out, elementwise per
#: channel or spatial (batch norm, activations, pooling, dropout, global pooling keeps channels).
KINDS = ("input", "conv", "depthwise", "dense", "batchnorm", "add", "passthrough", "flatten", "unknown")

#: Passthrough layers that act on each feature alone, so a flatten's features reach a dense layer
#: through them unchanged in order (an ``Activation`` only when it is not softmax).
FEATUREWISE_CLASSES = ("Dropout", "GaussianNoise", "ReLU", "LeakyReLU", "Activation")


@dataclass
class Layer:
    """One layer. Shapes are per example, NHWC (batch dimension dropped)."""

    name: str
    kind: str
    inputs: list
    output_shape: tuple
    kernel_shape: tuple | None = None   # conv: (KH, KW, Cin, Cout) (Keras HWIO); dense: (In, Out)
    strides: tuple = (1, 1)
    padding: str = "valid"
    class_name: str = ""
    unknown_reason: str = ""
    pool_size: tuple | None = None      # MaxPooling2D / AveragePooling2D window (strides in ``strides``)
    activation: str = ""                # Keras activation name (a Dense's "softmax" is its own op)

    @property
    def channels(self) -> int:
        return int(self.output_shape[-1])


@dataclass
class ChannelGroup:
    """Output channels that are pruned together.

    ``producers``: regular convs whose filters are these channels; ``followers``: depthwise convs
    and batch norms whose per-channel weights follow; ``consumers``: (layer, how) pairs reading the
    channels: ``"conv_in"``, ``"depthwise_in"``, ``"dense_flat"`` (flatten after an HxW map),
    ``"dense_in"``.
    """

    id: int
    channels: int
    producers: list = field(default_factory=list)
    followers: list = field(default_factory=list)
    consumers: list = field(default_factory=list)
    carriers: list = field(default_factory=list)   # every layer whose output carries the channels
    prunable: bool = True
    reason: str = ""


class PruneGraph:
    def __init__(self, layers: list, outputs: list):
        self.layers = {l.name: l for l in layers}
        self.order = [l.name for l in layers]
        self.outputs = list(outputs)
        self._groups = None
        self._group_of = None

    # ---- queries ---------------------------------------------------------------------------
    def convs(self) -> list:
        return [self.layers[n] for n in self.order if self.layers[n].kind == "conv"]

    def unknown(self) -> list:
        return [self.layers[n] for n in self.order if self.layers[n].kind == "unknown"]

    def consumers_of(self, name: str) -> list:
        return [self.layers[n] for n in self.order if name in self.layers[n].inputs]

    def is_featurewise(self, layer: Layer) -> bool:
        return (layer.kind == "passthrough" and layer.class_name in FEATUREWISE_CLASSES
                and layer.activation != "softmax")

    def feature_readers(self, name: str) -> list:
        """The layers reading ``name``'s features, past feature-wise passthrough layers."""
        readers = []
        for c in self.consumers_of(name):
            readers.extend(self.feature_readers(c.name) if self.is_featurewise(c) else [c])
        return readers

    def feature_source(self, name: str) -> Layer:
        """The layer whose features ``name`` reads, past feature-wise passthrough layers."""
        src = self.layers[self.layers[name].inputs[0]]
        while self.is_featurewise(src) and src.inputs:
            src = self.layers[src.inputs[0]]
        return src

    # ---- channel groups --------------------------------------------------------------------
    def groups(self) -> list:
        """The channel groups, computed once (union-find over channel-carrying tensors)."""
        if self._groups is None:
            self._build_groups()
        return self._groups

    def group_of(self, name: str) -> ChannelGroup | None:
        """The group whose channels ``name``'s output carries (None for dense / flatten / input)."""
        self.groups()
        gid = self._group_of.get(name)
        return None if gid is None else self._groups[gid]

    def _build_groups(self):
        parent: dict = {}

        def find(x):
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        def union(a, b):
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[rb] = ra

        # Which tensor's channels each output carries: a conv starts a new channel space;
        # passthrough / depthwise / batchnorm carry their input's; add merges its inputs'.
        carrier: dict = {}
        for name in self.order:
            layer = self.layers[name]
            if layer.kind in ("conv", "input", "unknown"):
                parent[name] = name
                carrier[name] = name
            elif layer.kind in ("depthwise", "batchnorm", "passthrough") and layer.inputs:
                src = carrier.get(layer.inputs[0])
                carrier[name] = src
            elif layer.kind == "add":
                srcs = [carrier.get(i) for i in layer.inputs]
                srcs = [s for s in srcs if s is not None]
                for s in srcs[1:]:
                    union(srcs[0], s)
                carrier[name] = srcs[0] if srcs else None
            else:  # dense, flatten: channels end here
                carrier[name] = None
        roots: dict = {}
        groups: list = []
        group_of: dict = {}
        for name in self.order:
            src = carrier.get(name)
            if src is None:
                continue
            root = find(src)
            if root not in roots:
                roots[root] = len(groups)
                groups.append(ChannelGroup(len(groups), self.layers[name].channels))
            g = groups[roots[root]]
            group_of[name] = g.id
            g.carriers.append(name)
            layer = self.layers[name]
            if layer.kind == "conv":
                g.producers.append(name)
            elif layer.kind in ("depthwise", "batchnorm"):
                g.followers.append(name)
            elif layer.kind == "input":
                g.prunable, g.reason = False, "model input channels"
            elif layer.kind == "unknown":
                g.prunable, g.reason = False, f"produced by {layer.class_name} '{name}' (not understood)"
        # Consumers and blockers.
        for name in self.order:
            layer = self.layers[name]
            for inp in layer.inputs:
                gid = group_of.get(inp)
                if gid is None:
                    continue
                g = groups[gid]
                if layer.kind == "conv":
                    g.consumers.append((name, "conv_in"))
                elif layer.kind == "flatten":
                    for c in self.feature_readers(name):
                        if c.kind == "dense":
                            g.consumers.append((c.name, "dense_flat"))
                        else:
                            g.prunable, g.reason = False, f"flatten '{name}' feeds {c.class_name} '{c.name}'"
                elif layer.kind == "dense":
                    g.consumers.append((name, "dense_in"))
                elif layer.kind == "unknown":
                    g.prunable, g.reason = False, f"read by {layer.class_name} '{name}' (not understood)"
        for out in self.outputs:
            gid = group_of.get(out)
            if gid is not None:
                groups[gid].prunable, groups[gid].reason = False, "carried to the model output"
        for g in groups:
            if not g.producers and g.prunable:
                g.prunable, g.reason = False, "no conv produces these channels"
        self._groups, self._group_of = groups, group_of
