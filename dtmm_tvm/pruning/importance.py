"""Importance of filterlets and filters (numpy).

First-order Taylor (the paper's criterion): removing a unit (a filterlet's ``Cin`` weights, or
a whole filter) changes the loss by about ``sum over the unit of w * dL/dw``; its importance is
the absolute value of that sum for one batch's gradient, averaged over the validation split's
batches (Molchanov et al.: per-batch estimates, so the gradients of a trained model, whose mean
is near zero, do not cancel out). Magnitude criteria sum ``|w|`` (L1) or ``w**2`` (L2) over the
unit. Kernels are Keras HWIO ``(KH, KW, Cin, Cout)``; results are indexed like the filterlet
mask, ``(Cout, KH, KW)``, and per filter ``(Cout,)``.
"""

from __future__ import annotations

import numpy as np

CRITERIA = ("taylor", "l1", "l2")


def weight_importance(kernel: np.ndarray, grad: np.ndarray | None = None, criterion: str = "taylor") -> np.ndarray:
    """Per-weight importance, same shape as ``kernel``."""
    kernel = np.asarray(kernel, dtype=np.float64)
    if criterion == "taylor":
        if grad is None:
            raise ValueError("taylor importance needs the loss gradient")
        grad = np.asarray(grad, dtype=np.float64)
        if grad.shape != kernel.shape:
            raise ValueError(f"gradient shape {grad.shape} != kernel shape {kernel.shape}")
        return np.abs(kernel * grad)
    if criterion == "l1":
        return np.abs(kernel)
    if criterion == "l2":
        return kernel * kernel
    raise ValueError(f"unknown importance {criterion!r}; choose one of {CRITERIA}")


def _unit_sums(kernel: np.ndarray, grad, criterion: str, axes: tuple) -> np.ndarray:
    if criterion == "taylor":
        if grad is None:
            raise ValueError("taylor importance needs the loss gradient")
        kernel = np.asarray(kernel, dtype=np.float64)
        grad = np.asarray(grad, dtype=np.float64)
        if grad.shape != kernel.shape:
            raise ValueError(f"gradient shape {grad.shape} != kernel shape {kernel.shape}")
        return np.abs((kernel * grad).sum(axis=axes))
    return weight_importance(kernel, grad, criterion).sum(axis=axes)


def filterlet_importance(kernel_hwio: np.ndarray, grad=None, criterion: str = "taylor") -> np.ndarray:
    """``(Cout, KH, KW)``: each filterlet's importance (taylor: ``|sum over Cin of w * g|`` for
    one gradient ``g``; average it over batches for the criterion)."""
    return _unit_sums(kernel_hwio, grad, criterion, (2,)).transpose(2, 0, 1)


def filter_importance(kernel_hwio: np.ndarray, grad=None, criterion: str = "taylor") -> np.ndarray:
    """``(Cout,)``: each filter's importance (taylor: ``|sum over the filter of w * g|``)."""
    return _unit_sums(kernel_hwio, grad, criterion, (0, 1, 2))


def depthwise_channel_importance(kernel_hwcm: np.ndarray, grad=None, criterion: str = "taylor") -> np.ndarray:
    """``(C * M,)`` of a depthwise kernel ``(KH, KW, C, M)`` (output channel ``c * M + m``)."""
    return _unit_sums(kernel_hwcm, grad, criterion, (0, 1)).reshape(-1)
