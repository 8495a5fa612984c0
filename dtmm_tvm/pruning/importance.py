"""Importance of filterlets and filters (numpy).

Per weight: first-order Taylor ``|w * g|`` (``g`` the loss gradient averaged over the validation
split: the paper's criterion), or magnitude ``|w|`` (L1) / ``w**2`` (L2). A filterlet's
importance is the sum over its ``Cin`` weights, a filter's the sum over the whole filter.
Kernels are Keras HWIO ``(KH, KW, Cin, Cout)``; results are indexed like the filterlet mask,
``(Cout, KH, KW)``, and per filter ``(Cout,)``.
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


def filterlet_importance(kernel_hwio: np.ndarray, grad=None, criterion: str = "taylor") -> np.ndarray:
    """``(Cout, KH, KW)``: each filterlet's summed importance."""
    imp = weight_importance(kernel_hwio, grad, criterion)
    return imp.sum(axis=2).transpose(2, 0, 1)


def filter_importance(kernel_hwio: np.ndarray, grad=None, criterion: str = "taylor") -> np.ndarray:
    """``(Cout,)``: each filter's summed importance."""
    return weight_importance(kernel_hwio, grad, criterion).sum(axis=(0, 1, 2))


def depthwise_channel_importance(kernel_hwcm: np.ndarray, grad=None, criterion: str = "taylor") -> np.ndarray:
    """``(C * M,)`` of a depthwise kernel ``(KH, KW, C, M)`` (output channel ``c * M + m``)."""
    imp = weight_importance(kernel_hwcm, grad, criterion)
    return imp.sum(axis=(0, 1)).reshape(-1)
