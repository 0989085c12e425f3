"""The edges of stability of section 2: 2/eta for GD, the SAM edge of Proposition 2, Figure 1's ratio.

The SAM edge is ||g||/(2 rho) (sqrt(1 + 8 rho/(eta ||g||)) - 1). Written that way it cancels
catastrophically when rho -> 0 (or ||g|| -> inf). Multiplying by the conjugate gives the
equivalent, cancellation-free form 4 / (eta (1 + sqrt(1 + 8 rho/(eta ||g||)))), which is exactly
2/eta at rho = 0 and tends to sqrt(2 ||g||/(eta rho)) as ||g|| -> 0.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from samedge.errors import ConfigError


def _check_lr(lr: np.ndarray) -> None:
    if np.any(~((lr > 0) & np.isfinite(lr))):
        raise ConfigError(f"lr: expected a positive finite learning rate, got {lr}")


def gd_edge(lr: ArrayLike) -> np.ndarray | float:
    """2/eta, the edge of stability of gradient descent (Proposition 1)."""
    lr = np.asarray(lr, dtype=float)
    _check_lr(lr)
    return 2.0 / lr if lr.ndim else float(2.0 / lr)


def sam_edge(grad_norm: ArrayLike, lr: ArrayLike, rho: ArrayLike) -> np.ndarray | float:
    """SAM's edge of stability (Proposition 2), vectorised over arrays and pandas columns.

    rho = 0 gives exactly 2/eta; grad_norm = 0 with rho > 0 gives 0 (the limit of the formula).
    """
    g, lr, rho = (np.asarray(a, dtype=float) for a in (grad_norm, lr, rho))
    _check_lr(lr)
    if np.any(~((rho >= 0) & np.isfinite(rho))):
        raise ConfigError(f"rho: expected a finite rho >= 0, got {rho}")
    if np.any(~(g >= 0)):
        raise ConfigError(f"grad_norm: expected a non-negative gradient norm, got {g}")
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(rho > 0, 8.0 * rho / (lr * g), 0.0)  # +inf when g = 0 < rho
    edge = 4.0 / (lr * (1.0 + np.sqrt(1.0 + x)))
    return edge if edge.ndim else float(edge)


def alpha(grad_norm: ArrayLike, lr: ArrayLike, rho: ArrayLike) -> np.ndarray | float:
    """alpha = eta ||g|| / (2 rho), the one number the edge ratio depends on (inf at rho = 0)."""
    g, lr, rho = (np.asarray(a, dtype=float) for a in (grad_norm, lr, rho))
    with np.errstate(divide="ignore"):
        a = lr * g / (2.0 * rho)
    return a if a.ndim else float(a)


def edge_ratio(alpha: ArrayLike) -> np.ndarray | float:
    """Figure 1: (SAM edge)/(2/eta) = alpha/2 (sqrt(1 + 4/alpha) - 1), in cancellation-free form.

    Equal to 2/(1 + sqrt(1 + 4/alpha)): tends to 1 as alpha -> inf and to sqrt(alpha) as alpha -> 0.
    """
    a = np.asarray(alpha, dtype=float)
    if np.any(~(a >= 0)):
        raise ValueError(f"alpha: expected alpha >= 0, got {a}")
    with np.errstate(divide="ignore"):
        ratio = 2.0 / (1.0 + np.sqrt(1.0 + 4.0 / a))
    return ratio if ratio.ndim else float(ratio)
