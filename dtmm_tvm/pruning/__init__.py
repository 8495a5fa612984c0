"""The DTMM pruner: choose, per layer, how many filters and filterlets to remove so a model fits
a board's flash and SRAM, runs fast, and keeps its accuracy.

Importable without TensorFlow: the core (:mod:`.graph` structure rules, :mod:`.importance`,
:mod:`.masks`, :mod:`.search`) is numpy; it asks the compiler about costs only through
:mod:`dtmm_tvm.costmodel`. The Keras side (:mod:`.keras_adapter`, :mod:`.finetune`) and
:func:`prune` import TensorFlow when called (``pip install 'dtmm-tvm[train]'``).

``prune(model, data, budget, target)`` -> :class:`PruneResult` (``.tflite`` bytes, ``.report``);
see :mod:`dtmm_tvm.pruning.api`.
"""

from __future__ import annotations

from .graph import ChannelGroup, Layer, PruneGraph
from .importance import filter_importance, filterlet_importance, weight_importance
from .masks import apply_filterlet_mask, dense_flat_keep, filter_keep, filterlet_keep
from .search import Budget, BudgetError, CostEvaluator, Plan, anneal

__all__ = ["Budget", "BudgetError", "ChannelGroup", "CostEvaluator", "Layer", "Plan", "PruneGraph", "anneal",
           "apply_filterlet_mask", "dense_flat_keep", "filter_importance", "filter_keep", "filterlet_importance",
           "filterlet_keep", "prune", "weight_importance"]


def prune(model, data, budget=None, target="dtmm/cortex-m4", **kwargs):
    """See :func:`dtmm_tvm.pruning.api.prune`."""
    from .api import prune as _prune

    return _prune(model, data, budget, target, **kwargs)
