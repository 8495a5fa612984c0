"""Per-layer pruning ratios under flash / SRAM / latency budgets (numpy + the cost model).

A *plan* gives every prunable channel group a filter ratio and every conv with a kernel larger
than 1x1 a filterlet ratio. :class:`CostEvaluator` prices a plan through the compiler's cost model
(:mod:`dtmm_tvm.costmodel`): predicted instructions, exact stored bytes in the format the compiler
will choose, and the arena the codegen planner lays out. :func:`anneal` is the paper's simulated
annealing (T0 = 100, cooling 0.9, 100 moves per temperature, every ratio perturbed by
U(-0.05, 0.05)); its energy is the objective (predicted instructions, or flash under a latency
budget) plus ``importance_weight`` times the accuracy term (with a measured sensitivity table,
the summed validation-loss increases of each layer's ratios, interpolated; else the share of
importance removed, averaged over layers), plus a steep penalty
for a budget exceeded. The accuracy guard caps each ratio at the share of the layer's units whose
importance is below a global threshold (a quantile of all units' layer-normalised importance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import DTMMError
from .graph import PruneGraph
from .masks import n_removed


class BudgetError(DTMMError):
    """A budget that cannot be met even at the most pruning allowed.

    ``smallest`` (when known) is the predicted :class:`Cost` at the most pruning allowed and
    ``budget`` the resolved :class:`Budget`, for scripts that report the figures."""

    def __init__(self, message: str, smallest=None, budget=None):
        super().__init__(message)
        self.smallest = smallest
        self.budget = budget


ALIAS_CLASSES = {"BatchNormalization", "ReLU", "Activation", "Dropout", "Flatten", "Reshape", "LeakyReLU",
                 "SpatialDropout2D", "GaussianNoise"}


@dataclass
class Budget:
    """Budgets in bytes / instructions; None = unconstrained."""

    flash_bytes: int | None = None
    sram_bytes: int | None = None
    instructions: int | None = None
    #: Alternatively, fractions of the dense model's predicted figures (resolved by the search).
    flash_fraction: float | None = None
    instructions_fraction: float | None = None

    def resolve(self, dense: "Cost") -> "Budget":
        """Absolute budgets: fractions turned into bytes / instructions of ``dense``."""
        flash = self.flash_bytes
        if self.flash_fraction is not None:
            flash = int(self.flash_fraction * dense.flash_bytes) if flash is None else \
                min(flash, int(self.flash_fraction * dense.flash_bytes))
        instr = self.instructions
        if self.instructions_fraction is not None:
            instr = int(self.instructions_fraction * dense.instructions) if instr is None else \
                min(instr, int(self.instructions_fraction * dense.instructions))
        return Budget(flash, self.sram_bytes, instr)

    @classmethod
    def from_kb(cls, flash_kb=None, sram_kb=None, instructions=None):
        return cls(None if flash_kb is None else int(flash_kb * 1024),
                   None if sram_kb is None else int(sram_kb * 1024),
                   None if instructions is None else int(instructions))


@dataclass
class Plan:
    filter_ratio: dict = field(default_factory=dict)      # group id -> ratio
    filterlet_ratio: dict = field(default_factory=dict)   # conv name -> ratio

    def copy(self):
        return Plan(dict(self.filter_ratio), dict(self.filterlet_ratio))

    def to_json(self):
        return {"filter_ratio": {str(k): round(v, 4) for k, v in self.filter_ratio.items()},
                "filterlet_ratio": {k: round(v, 4) for k, v in self.filterlet_ratio.items()}}


@dataclass
class Cost:
    instructions: int
    flash_bytes: int
    sram_bytes: int
    accuracy_term: float  # summed measured loss increases, or the share of importance removed
    layers: dict = field(default_factory=dict)  # name -> {format, instructions, bytes, kept_filters, ...}


def _same_pad(layer, in_hw):
    from .. import costmodel as cm

    return cm.padding_of(in_hw, layer.kernel_shape[:2], layer.strides, same=layer.padding == "same")


class CostEvaluator:
    """Prices plans for one graph and target through :mod:`dtmm_tvm.costmodel`."""

    def __init__(self, graph: PruneGraph, target: str, filterlet_importance: dict, filter_importance: dict,
                 threshold: float | None = None, sensitivity: dict | None = None):
        from .. import costmodel

        self.cm = costmodel
        self.graph = graph
        self.target = target
        self.threshold = threshold
        self.groups = graph.groups()
        self.fl_imp = filterlet_importance   # conv name -> (Cout, KH, KW)
        self.f_imp = filter_importance       # group id -> (C,)
        self._scratch_cache: dict = {}
        # Loaded once: the search prices thousands of plans, each conv in every format.
        self.coefficients = costmodel.load_coefficients(target)
        self.format_margin = costmodel.conv_heldout_error(self.coefficients)
        self._conv_cache: dict = {}
        self._other_cache: dict = {}
        # The accuracy term: measured loss increases per layer (summed) when a sensitivity table
        # is given, else the share of each layer's importance removed (averaged over layers).
        self.sensitivity = sensitivity
        if sensitivity:
            self._lost_fl = {n: _interpolated(*sensitivity[("l", n)]) for n in filterlet_importance
                             if ("l", n) in sensitivity}
            self._lost_f = {g: _interpolated(*sensitivity[("f", g)]) for g in filter_importance
                            if ("f", g) in sensitivity}
        else:
            self._lost_fl = {n: _cumulative(v.reshape(-1)) for n, v in filterlet_importance.items()}
            self._lost_f = {g: _cumulative(v) for g, v in filter_importance.items()}

    # -- plan helpers --------------------------------------------------------------------------
    def prunable_groups(self):
        return [g for g in self.groups if g.prunable]

    def filterlet_convs(self):
        return [l for l in self.graph.convs() if l.kernel_shape[0] * l.kernel_shape[1] > 1]

    def kept_channels(self, plan: Plan, name: str) -> int:
        """Channels of ``name``'s output under the plan."""
        layer = self.graph.layers[name]
        g = self.graph.group_of(name)
        if g is None or not g.prunable:
            return layer.channels
        return g.channels - n_removed(g.channels, plan.filter_ratio.get(g.id, 0.0))

    def _in_shape(self, name):
        layer = self.graph.layers[name]
        return self.graph.layers[layer.inputs[0]].output_shape

    # -- pricing ---------------------------------------------------------------------------
    def evaluate(self, plan: Plan, detail: bool = False) -> Cost:
        cm = self.cm
        instr = 0
        flash = 0
        layers = {}
        lost, n_lost = 0.0, 0
        calls = []
        index_of: dict = {}   # layer name -> ArenaCall index whose buffer its output is
        for name in self.graph.order:
            layer = self.graph.layers[name]
            src_calls = tuple(index_of.get(i, -1) for i in layer.inputs)
            if layer.kind == "input":
                index_of[name] = -1
                continue
            if layer.kind in ("batchnorm", "flatten") or (layer.kind == "passthrough" and
                                                          layer.class_name in ALIAS_CLASSES):
                index_of[name] = src_calls[0] if src_calls else -1
                if layer.activation == "softmax":  # Activation("softmax"): its own SOFTMAX op
                    i_ = self._other_instr("softmax", layer.channels)
                    instr += i_ or 0
                    if detail:
                        layers[name] = {"kind": "softmax", "format": None, "bytes": 0, "instructions": i_}
                continue
            out_c = self.kept_channels(plan, name) if layer.kind != "dense" else layer.channels
            out_elems = int(np.prod(layer.output_shape[:-1])) * out_c
            scratch = 0
            if layer.kind == "conv":
                h, w, cin_full = self._in_shape(name)
                cin = self.kept_channels(plan, layer.inputs[0])
                kh, kw = layer.kernel_shape[:2]
                cout = out_c
                taps = kh * kw
                ratio = plan.filterlet_ratio.get(name, 0.0)
                kept = cout * taps - n_removed(cout * taps, ratio, keep_at_least=cout)
                shape = cm.ConvShape(h, w, cin, cout, kh, kw, tuple(layer.strides), _same_pad(layer, (h, w)),
                                     kept_filterlets=kept)
                fmt, feats_i, nbytes, scratch = self._conv_choice(shape)
                instr += feats_i
                flash += nbytes
                if taps > 1 and name in self._lost_fl:
                    lost += self._lost_fl[name](ratio)
                    n_lost += 1
                if detail:
                    layers[name] = {"kind": "conv", "format": fmt, "cin": cin, "filters": cout,
                                    "filters_total": layer.channels, "kept_filterlets": kept,
                                    "filterlet_sparsity": 1 - kept / (cout * taps), "bytes": nbytes,
                                    "instructions": feats_i}
            elif layer.kind == "depthwise":
                h, w, _ = self._in_shape(name)
                kh, kw = layer.kernel_shape[:2]
                c = out_c
                shape = cm.ConvShape(h, w, c, c, kh, kw, tuple(layer.strides), _same_pad(layer, (h, w)),
                                     depthwise=True)
                i_, b_ = cm.predict_depthwise(shape, self.target)
                instr += i_
                flash += b_
                scratch = self._dw_scratch(shape)
                if detail:
                    layers[name] = {"kind": "depthwise", "format": "dense", "filters": c,
                                    "filters_total": layer.channels, "bytes": b_, "instructions": i_}
            elif layer.kind == "dense":
                fin = self._dense_in(plan, name)
                i_, b_ = cm.predict_fc(fin, layer.channels, self.target)
                instr += i_
                flash += b_
                if detail:
                    layers[name] = {"kind": "dense", "format": "dense", "in_features": fin,
                                    "in_features_total": layer.kernel_shape[0], "filters": layer.channels,
                                    "bytes": b_, "instructions": i_}
            elif layer.kind in ("passthrough", "add"):
                op, i_ = self._other_op(plan, name, out_c)
                if op is not None:
                    instr += i_ or 0
                    if detail:
                        layers[name] = {"kind": op, "format": None, "bytes": 0, "instructions": i_}
            if layer.kind == "dense" and layer.activation == "softmax":
                i_ = self._other_instr("softmax", layer.channels)
                instr += i_ or 0
                if detail:
                    layers[name + "/softmax"] = {"kind": "softmax", "format": None, "bytes": 0, "instructions": i_}
            index_of[name] = len(calls)
            calls.append(cm.ArenaCall(name, out_elems, tuple(i for i in src_calls), scratch,
                                      is_output=name in self.graph.outputs))
        for g in self.prunable_groups():
            r = plan.filter_ratio.get(g.id, 0.0)
            if g.id in self._lost_f:
                lost += self._lost_f[g.id](r)
                n_lost += 1
        # The model output is written by the last compute call (softmax etc. alias to it).
        last_compute = {index_of.get(o) for o in self.graph.outputs}
        calls = [cm.ArenaCall(c.name, c.output_bytes, c.reads, c.scratch_bytes, c.is_output or i in last_compute)
                 for i, c in enumerate(calls)]
        sram = cm.peak_sram(calls, self.target)
        return Cost(int(instr), int(flash), int(sram), lost if self.sensitivity else lost / max(n_lost, 1), layers)

    def _dense_in(self, plan, name):
        layer = self.graph.layers[name]
        src = self.graph.feature_source(name)
        if src.kind == "flatten":
            feeder = src.inputs[0]
            shape = self.graph.layers[feeder].output_shape
            g = self.graph.group_of(feeder)
            if g is not None and g.prunable:
                return int(np.prod(shape[:-1])) * self.kept_channels(plan, feeder)
            return layer.kernel_shape[0]
        g = self.graph.group_of(layer.inputs[0])
        if g is not None and g.prunable:
            return self.kept_channels(plan, layer.inputs[0])
        return layer.kernel_shape[0]

    def _other_op(self, plan, name, out_c):
        """(op, predicted instructions) of a pooling / global average / softmax / add layer as it
        lowers to TFLite (None, 0 for other passthrough layers: fused or free). Instructions are
        None when the shipped fit has no such group (an older coefficients file)."""
        layer = self.graph.layers[name]
        cls = layer.class_name
        if layer.kind == "add":
            return "add", self._other_instr("add", int(np.prod(layer.output_shape[:-1])) * out_c)
        if cls in ("MaxPooling2D", "AveragePooling2D") and layer.pool_size:
            op = "max_pool2d" if cls == "MaxPooling2D" else "avg_pool2d"
            return op, self._other_instr(op, tuple(layer.output_shape[:2]), out_c, layer.pool_size)
        if cls == "GlobalAveragePooling2D":
            h, w = self._in_shape(name)[:2]
            return "mean", self._other_instr("mean", h, w, out_c)
        if cls == "Softmax" or layer.activation == "softmax":
            return "softmax", self._other_instr("softmax", layer.channels)
        return None, 0

    def _other_instr(self, op, *args):
        key = (op, *args)
        if key not in self._other_cache:
            self._other_cache[key] = self._predict_other(op, *args)
        return self._other_cache[key]

    def _predict_other(self, op, *args):
        cm = self.cm
        fn = {"add": cm.predict_add, "max_pool2d": lambda *a, target: cm.predict_pool("max_pool2d", *a, target=target),
              "avg_pool2d": lambda *a, target: cm.predict_pool("avg_pool2d", *a, target=target),
              "mean": cm.predict_mean, "softmax": lambda d, target: cm.predict_softmax(d, 1, target)}[op]
        try:
            return fn(*args, target=self.target)
        except cm.CostModelError:
            return None

    def _conv_choice(self, shape):
        """(format, instructions, bytes, scratch) of a conv: the compiler's own decision
        (:mod:`dtmm_tvm.costmodel.format_choice`) over every format, memoised per shape."""
        key = (shape.height, shape.width, shape.cin, shape.cout, shape.kh, shape.kw, shape.strides, shape.padding,
               shape.kept_filterlets)
        if key not in self._conv_cache:
            cm = self.cm
            cout, kh, kw, cin, kept = shape.cout, shape.kh, shape.kw, shape.cin, shape.kept_filterlets
            by_format = {}
            for candidate in cm.CONV_FORMATS:
                weight_bytes = cm.format_bytes((cout, kh, kw, cin), kept, candidate)
                if weight_bytes is not None:
                    by_format[candidate] = (self._conv_instr(shape, candidate),
                                            weight_bytes + cm.REQUANT_BYTES_PER_CHANNEL * cout)
            fmt = cm.compiler_format(by_format, 1.0 - kept / (cout * kh * kw), self.threshold,
                                     margin=self.format_margin)
            self._conv_cache[key] = (fmt, *by_format[fmt], self._scratch(shape, fmt))
        return self._conv_cache[key]

    def _conv_instr(self, shape, fmt):
        from ..costmodel.features import conv_features

        coef = self.coefficients["coefficients"][f"conv/{fmt}"]
        return int(round(float(np.dot(coef, conv_features(shape, fmt, self.target)))))

    def _scratch(self, shape, fmt):
        key = (shape.height, shape.width, shape.cin, shape.cout, shape.kh, shape.kw, shape.strides, shape.padding,
               fmt)
        if key not in self._scratch_cache:
            self._scratch_cache[key] = self.cm.scratch_bytes(shape, "dense" if fmt == "dense" else fmt, self.target)
        return self._scratch_cache[key]

    def _dw_scratch(self, shape):
        key = ("dw", shape.height, shape.width, shape.cin, shape.kh, shape.kw, shape.strides, shape.padding)
        if key not in self._scratch_cache:
            self._scratch_cache[key] = self.cm.scratch_bytes(shape, "dense", self.target)
        return self._scratch_cache[key]

    # -- guard -----------------------------------------------------------------------------
    def caps(self, quantile: float = 0.9, max_filterlet: float = 0.95, max_filter: float = 0.9) -> Plan:
        """The accuracy guard: the largest ratio each layer / group may take."""
        normed = []
        for v in list(self.fl_imp.values()) + list(self.f_imp.values()):
            v = np.asarray(v, dtype=np.float64).reshape(-1)
            normed.append(v / max(v.mean(), 1e-30))
        tau = float(np.quantile(np.concatenate(normed), quantile)) if normed else 0.0
        cap = Plan()
        for layer in self.filterlet_convs():
            v = self.fl_imp[layer.name].reshape(-1)
            share = float((v / max(v.mean(), 1e-30) < tau).mean())
            cap.filterlet_ratio[layer.name] = min(share, max_filterlet)
        for g in self.prunable_groups():
            v = self.f_imp[g.id]
            share = float((v / max(v.mean(), 1e-30) < tau).mean())
            cap.filter_ratio[g.id] = min(share, max_filter)
        return cap


def _params(shape):
    from .. import costmodel as cm

    return cm.conv_params(shape)


def _cumulative(importance: np.ndarray):
    """``lost(ratio)``: the share of total importance held by the lowest ``ratio`` of units."""
    v = np.sort(np.asarray(importance, dtype=np.float64).reshape(-1))
    total = v.sum()
    cum = np.concatenate([[0.0], np.cumsum(v)]) / (total if total > 0 else 1.0)
    n = v.size

    def lost(ratio: float) -> float:
        return float(cum[n_removed(n, ratio, keep_at_least=0)])

    return lost


def _interpolated(ratios, rises):
    """``lost(ratio)``: a measured sensitivity curve, linearly interpolated, never below
    proportional growth from an earlier point (``lost(r) / r`` does not fall).

    Why the floor: the loss is measured before fine-tuning, and it saturates near a uniform
    guess's loss once a sensitive layer is cut deeply, so 50% and 90% of a layer look equally bad
    and a search would take the deepest cut (most bytes freed for the same term; ResNet's 32-channel
    trunk cut to 3 channels in the bench). Units go least important first, so the cost per unit
    removed does not fall: a saturated curve is raised to the line through its steepest point."""
    xs, ys = np.asarray(ratios, np.float64), np.asarray(rises, np.float64).copy()
    steepest = 0.0   # the largest lost(r) / r so far
    for i, x in enumerate(xs):
        if x > 0:
            ys[i] = max(ys[i], steepest * x)
            steepest = max(steepest, ys[i] / x)

    slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]) if len(xs) > 1 and xs[-1] > xs[-2] else 0.0

    def lost(ratio: float) -> float:
        if ratio > xs[-1]:  # beyond the last measured ratio: the last segment's slope
            return float(ys[-1] + max(slope, 0.0) * (ratio - xs[-1]))
        return float(np.interp(ratio, xs, ys))

    return lost


@dataclass
class SearchResult:
    plan: Plan
    cost: Cost
    dense: Cost
    evaluations: int
    caps: Plan
    budget: Budget = None


def _energy(cost: Cost, dense: Cost, budget: Budget, importance_weight: float, objective_weight: float = 1.0) -> float:
    penalty = 0.0
    if budget.flash_bytes is not None and cost.flash_bytes > budget.flash_bytes:
        penalty += cost.flash_bytes / budget.flash_bytes - 1.0
    if budget.sram_bytes is not None and cost.sram_bytes > budget.sram_bytes:
        penalty += cost.sram_bytes / budget.sram_bytes - 1.0
    if budget.instructions is not None:
        if cost.instructions > budget.instructions:
            penalty += cost.instructions / budget.instructions - 1.0
        objective = cost.flash_bytes / max(dense.flash_bytes, 1)
    else:
        objective = cost.instructions / max(dense.instructions, 1)
    return 100.0 * objective_weight * objective + 100.0 * importance_weight * cost.accuracy_term + 1e4 * penalty + \
        (1e3 if penalty > 0 else 0.0)


def feasible(cost: Cost, budget: Budget) -> bool:
    return ((budget.flash_bytes is None or cost.flash_bytes <= budget.flash_bytes)
            and (budget.sram_bytes is None or cost.sram_bytes <= budget.sram_bytes)
            and (budget.instructions is None or cost.instructions <= budget.instructions))


def describe_budget_failure(cost: Cost, budget: Budget) -> str:
    parts = []
    if budget.flash_bytes is not None:
        parts.append(f"flash {cost.flash_bytes / 1024:.1f} KB (budget {budget.flash_bytes / 1024:.1f} KB)")
    if budget.sram_bytes is not None:
        parts.append(f"SRAM {cost.sram_bytes / 1024:.1f} KB (budget {budget.sram_bytes / 1024:.1f} KB)")
    if budget.instructions is not None:
        parts.append(f"{cost.instructions} instructions (budget {budget.instructions})")
    return ", ".join(parts)


def anneal(evaluator: CostEvaluator, budget: Budget, *, t0: float = 100.0, cooling: float = 0.9,
           moves: int = 100, t_min: float = 0.05, step: float = 0.05, importance_weight: float = 1.0,
           objective_weight: float = 1.0, guard_quantile: float = 0.9, max_filter_ratio: float = 0.9, seed: int = 0,
           progress=None) -> SearchResult:
    """Simulated annealing over the plan (see the module docstring). Raises :class:`BudgetError`
    naming the smallest achievable figures when even the guard's largest ratios miss a budget."""
    rng = np.random.default_rng(seed)
    caps = evaluator.caps(guard_quantile, max_filter=max_filter_ratio)
    dense = evaluator.evaluate(Plan(), detail=True)
    budget = budget.resolve(dense)
    most = evaluator.evaluate(caps)
    if not feasible(most, budget):
        raise BudgetError("budget cannot be met: at the most pruning the accuracy guard allows, the model needs "
                          + describe_budget_failure(most, budget)
                          + "; raise the budget (or --guard to allow more pruning)", smallest=most, budget=budget)
    keys = [("f", g) for g in caps.filter_ratio] + [("l", n) for n in caps.filterlet_ratio]
    cap_of = {("f", g): caps.filter_ratio[g] for g in caps.filter_ratio}
    cap_of.update({("l", n): caps.filterlet_ratio[n] for n in caps.filterlet_ratio})

    def make(values):
        p = Plan()
        for (kind, k), v in zip(keys, values):
            (p.filter_ratio if kind == "f" else p.filterlet_ratio)[k] = float(v)
        return p

    upper = np.array([cap_of[k] for k in keys])
    current = upper * 0.5
    cur_cost = evaluator.evaluate(make(current))
    cur_e = _energy(cur_cost, dense, budget, importance_weight, objective_weight)
    best, best_cost, best_e = current.copy(), cur_cost, cur_e
    # The most-pruned plan is feasible: start from it if the midpoint is not.
    if not feasible(cur_cost, budget):
        current, cur_cost = upper.copy(), most
        cur_e = _energy(most, dense, budget, importance_weight, objective_weight)
        best, best_cost, best_e = current.copy(), cur_cost, cur_e
    temps = max(1, int(math.ceil(math.log(t_min / t0) / math.log(cooling))))
    evaluations = 0
    t = t0
    for ti in range(temps):
        for _ in range(moves):
            cand = np.clip(current + rng.uniform(-step, step, size=current.size), 0.0, upper)
            cost = evaluator.evaluate(make(cand))
            evaluations += 1
            e = _energy(cost, dense, budget, importance_weight, objective_weight)
            if e <= cur_e or rng.random() < math.exp(-(e - cur_e) / max(t, 1e-12)):
                current, cur_cost, cur_e = cand, cost, e
                if e < best_e and feasible(cost, budget):
                    best, best_cost, best_e = cand.copy(), cost, e
        t *= cooling
        if progress:
            progress(ti + 1, temps, best_cost)
    plan = make(best)
    return SearchResult(plan, evaluator.evaluate(plan, detail=True), dense, evaluations, caps, budget)
