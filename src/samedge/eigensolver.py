"""Top-k (largest algebraic) eigenpairs of a symmetric operator from matrix-vector products.

The method is a thick-restarted block Davidson iteration without preconditioner, i.e. block
Lanczos with full reorthogonalisation: the search space starts from `init` (the previous
measurement's vectors, for warm starts) plus `guard` extra vectors, and each iteration adds the
residuals of the not yet converged Ritz pairs, so one iteration costs one batched pass of the
operator over as many vectors as there are unconverged pairs.

Convergence: every one of the k residual norms ||H v_i - lambda_i v_i|| (v_i unit) is at most
tol * max_i |lambda_i| over the k returned eigenvalues. Eigenvalue errors are then at most
that bound, and typically its square divided by the spectral gap.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import Tensor


class Operator(Protocol):
    dim: int
    dtype: torch.dtype
    device: torch.device

    def matmat(self, vectors: Tensor) -> Tensor: ...


@dataclass
class EigResult:
    """values, residuals: float64 CPU tensors (k,), values descending; vectors: (dim, k) unit
    eigenvectors in the operator's dtype and device; basis: (dim, k + guard) top Ritz vectors,
    the warm start for the next measurement; hvps: operator applications spent; iterations:
    batched operator passes."""
    values: Tensor
    vectors: Tensor
    residuals: Tensor
    hvps: int
    iterations: int
    converged: bool
    basis: Tensor


class MatrixOperator:
    """A dense symmetric matrix as an operator (tests, small problems)."""

    def __init__(self, matrix: Tensor) -> None:
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"matrix: expected a square matrix, got shape {tuple(matrix.shape)}")
        self.matrix = matrix
        self.dim, self.dtype, self.device = matrix.shape[0], matrix.dtype, matrix.device
        self.hvps = 0

    def matmat(self, vectors: Tensor) -> Tensor:
        self.hvps += vectors.shape[1]
        return self.matrix @ vectors.to(self.device, self.dtype)

    def as_linear_operator(self) -> LinearOperator:
        return LinearOperator(tuple(self.matrix.shape), matvec=self._apply, matmat=self._apply, dtype=np.float64)

    def _apply(self, x: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(x, dtype=np.float64).reshape(self.dim, -1))
        return self.matmat(x).double().cpu().numpy()


class _Basis:
    """An orthonormal basis V (dim, <= size) with A V, kept in preallocated storage."""

    def __init__(self, op: Operator, size: int) -> None:
        self.op, self.m, self.hvps, self.passes = op, 0, 0, 0
        self.V = torch.zeros(op.dim, size, dtype=op.dtype, device=op.device)
        self.AV = torch.zeros_like(self.V)
        # A column whose norm falls below this fraction on projection is numerically dependent.
        self.drop = (100 * torch.finfo(op.dtype).eps) ** 0.5

    def extend(self, block: Tensor, limit: int | None = None) -> int:
        """Orthonormalise `block` against V (Gram-Schmidt twice), keep at most `limit` columns
        (default: as many as fit), apply A to the kept columns in one pass."""
        start, limit = self.m, min(self.V.shape[1], self.m + (limit or self.V.shape[1]))
        W = block.to(self.op.device, self.op.dtype)
        norms = W.norm(dim=0)
        for _ in range(2):  # block products: the matrix-vector ones stall on shared cores
            W = W - self.V[:, :start] @ (self.V[:, :start].T @ W)
        for w, norm0 in zip(W.T, norms):
            if self.m == limit:
                break
            for _ in range(2):  # against the columns accepted from this block
                w = w - self.V[:, start:self.m] @ (self.V[:, start:self.m].T @ w)
            if w.norm() > self.drop * norm0:
                self.V[:, self.m] = w / w.norm()
                self.m += 1
        if self.m > start:
            self.AV[:, start:self.m] = self.op.matmat(self.V[:, start:self.m])
            self.hvps += self.m - start
            self.passes += 1
        return self.m - start

    def ritz(self, r: int) -> tuple[Tensor, Tensor, Tensor]:
        """The r largest Ritz values (float64, descending), Ritz vectors X and A X."""
        V, AV = self.V[:, :self.m], self.AV[:, :self.m]
        T = (V.T @ AV).double().cpu()
        theta, Y = torch.linalg.eigh((T + T.T) / 2)
        theta, Y = theta.flip(0)[:r], Y.flip(1)[:, :r].to(V.device, V.dtype)
        return theta, V @ Y, AV @ Y

    def restart(self, X: Tensor, AX: Tensor) -> None:
        """Keep only the Ritz vectors X (orthonormal, in span V) and A X: no operator cost."""
        self.m = X.shape[1]
        self.V[:, :self.m], self.AV[:, :self.m] = X, AX


def top_eigenpairs(op: Operator, k: int = 3, tol: float = 1e-3, max_iters: int = 100,
                   init: Tensor | None = None, seed: int = 0, guard: int = 7,
                   max_basis: int | None = None) -> EigResult:
    """The k largest-algebraic eigenpairs of the symmetric operator `op`.

    init: (dim, j) starting vectors, 1 <= j <= k + guard (e.g. a previous result's `basis`);
    the rest of the starting block is Gaussian noise drawn from `seed`. guard: extra vectors
    carried beside the k wanted ones; k + guard = 10 spans the cluster of C - 1 = 9 outlier
    eigenvalues of a 10-class squared loss, so a warm start need not rediscover the members of
    the cluster that overtook each other (measured: fewer HVPs than guard 2 or 5 along a SAM run).
    One iteration is one batched pass of the operator; `max_iters` bounds them. max_basis
    (default max(3 (k + guard), 20)) bounds the search space before a thick restart.
    """
    _check_args(op, k, tol, max_iters, init, guard)
    block = min(k + guard, op.dim)
    size = min(op.dim, max_basis or max(3 * block, 20))
    if size < 2 * block and size < op.dim:
        raise ValueError(f"max_basis: expected at least 2 (k + guard) = {2 * block}, got {max_basis}")
    basis = _Basis(op, size)
    generator = torch.Generator().manual_seed(seed)
    start = torch.empty(op.dim, 0, dtype=op.dtype) if init is None else init
    while basis.m < block:  # more than once only if columns of `init` were dependent
        noise = torch.randn(op.dim, block - basis.m, dtype=torch.float64, generator=generator)
        basis.extend(torch.cat([start.to(op.device, op.dtype), noise.to(op.device, op.dtype)], dim=1), limit=block)
        start = start[:, :0]
    while True:
        theta, X, AX = basis.ritz(block)
        R = AX[:, :k] - X[:, :k] * theta[:k].to(X.device, X.dtype)
        res = R.norm(dim=0).double().cpu()
        open_ = res > tol * theta[:k].abs().max()
        if not open_.any() or basis.passes >= max_iters:
            break
        if basis.m + int(open_.sum()) > size:
            basis.restart(X, AX)
        if basis.extend(R[:, open_.to(R.device)]) == 0:  # residuals numerically inside the space
            break
    return EigResult(theta[:k], X[:, :k], res, basis.hvps, basis.passes, not bool(open_.any()), X)


def _check_args(op: Operator, k: int, tol: float, max_iters: int, init: Tensor | None, guard: int) -> None:
    if not 1 <= k <= op.dim:
        raise ValueError(f"k: expected 1 <= k <= dim = {op.dim}, got {k}")
    if not tol > 0:
        raise ValueError(f"tol: expected a positive tolerance, got {tol}")
    if max_iters < 1:
        raise ValueError(f"max_iters: expected a positive integer, got {max_iters}")
    if guard < 0:
        raise ValueError(f"guard: expected a non-negative integer, got {guard}")
    if init is not None:
        if init.ndim != 2 or init.shape[0] != op.dim or not 1 <= init.shape[1] <= k + guard:
            raise ValueError(
                f"init: expected shape ({op.dim}, j) with 1 <= j <= k + guard = {k + guard}, got {tuple(init.shape)}"
            )
        if not torch.isfinite(init).all():
            raise ValueError("init: contains NaN or Inf")
