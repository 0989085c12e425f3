"""Top-k (largest algebraic) eigenpairs of a symmetric operator from matrix-vector products.

The method is a thick-restarted block Davidson iteration without preconditioner, i.e. block
Lanczos with full reorthogonalisation: the search space starts from `init` (the previous
measurement's vectors, for warm starts) plus `guard` extra vectors, and each iteration adds the
residuals of the not yet converged Ritz pairs, so one iteration costs one batched pass of the
operator over as many vectors as there are unconverged pairs.

Exact in float32: the basis is stored as contiguous rows, and every inner product over
parameter-length vectors (projections, the Gram matrices of new blocks, V^T A V, the final
Rayleigh quotients) is accumulated in float64, so the basis is orthonormal to float32 rounding
and the returned values are the Rayleigh quotients of the returned vectors, free of the 1e-4
errors that float32 sums over millions of terms leave.

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

CHUNK = 1 << 15  # elements per row and chunk of a float64 inner product: the float64 copies stay in cache


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
    batched operator passes. resolved: whether the k-th Ritz value stands apart from the
    (k+1)-th by more than the residual norm ||H V - V diag(values)||_F, so that the returned
    vectors span the top-k eigenspace to within that ratio (Davis-Kahan); False inside a
    near-degenerate cluster, where the values are still accurate but the vectors are one basis of
    a larger, numerically degenerate eigenspace."""
    values: Tensor
    vectors: Tensor
    residuals: Tensor
    hvps: int
    iterations: int
    converged: bool
    basis: Tensor
    resolved: bool = False


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


def gram64(A: Tensor, B: Tensor) -> Tensor:
    """A B^T for rows A (a, dim) and B (b, dim), accumulated in float64; (a, b) float64 on the CPU."""
    if A.dtype == torch.float64:
        return (A @ B.T).cpu()
    out = torch.zeros(A.shape[0], B.shape[0], dtype=torch.float64, device=A.device)
    for s in range(0, A.shape[1], CHUNK):
        out.addmm_(A[:, s:s + CHUNK].double(), B[:, s:s + CHUNK].double().T)
    return out.cpu()


class _Space:
    """At most `size` orthonormal rows V (m, dim), their images A V and T = V A V^T (float64).

    V and A V are kept as the row blocks the operator passes produced, never gathered into larger
    storage: on a 2.8 M-parameter model, growing or copying parameter-length rows cost about as
    much as the solver's own products (and fresh storage is NaN-filled under deterministic mode)."""

    def __init__(self, op: Operator, size: int) -> None:
        self.op, self.hvps, self.passes, self.size = op, 0, 0, size
        self.V: list[Tensor] = []
        self.AV: list[Tensor] = []
        self.T = torch.zeros(size, size, dtype=torch.float64)
        eps = torch.finfo(op.dtype).eps
        # A row whose norm falls below this fraction on projection is numerically dependent.
        self.drop = (100 * eps) ** 0.5
        # Rows whose float64 Gram matrix is within this of I are orthonormal to working precision.
        self.orth = 4 * eps

    @property
    def m(self) -> int:
        return sum(len(B) for B in self.V)

    @property
    def free(self) -> int:
        return self.size - self.m

    def extend(self, W: Tensor) -> int:
        """Orthonormalise the rows of W against V and among themselves (products in float64), keep
        those that are not numerically dependent (at most as many as fit), apply A in one pass."""
        W = self._orthonormalise(W)[:self.free]
        start, n = self.m, W.shape[0]
        if n == 0:
            return 0
        self.V.append(W)
        self.AV.append(self.op.matmat(W.T).T.contiguous())
        self.hvps += n
        self.passes += 1
        end = start + n
        block = torch.cat([gram64(W, B) for B in self.AV], dim=1)  # (n, end): new rows of V A V^T
        self.T[start:end, :end] = block
        self.T[:start, start:end] = block[:, :start].T
        self.T[start:end, start:end] = (block[:, start:] + block[:, start:].T) / 2
        return n

    def _orthonormalise(self, W: Tensor) -> Tensor:
        """Two sweeps of projection against V and SVQB; SVQB leaves rows that are already
        orthonormal as they are, and with no V to project on, such rows need no second sweep
        (a warm start's previous basis costs one Gram matrix, no row combinations)."""
        norms = torch.linalg.vector_norm(W, dim=1).cpu().double()
        for sweep in range(2):
            for B in self.V:  # block by block: each block's coefficients see the earlier blocks' removal
                W = torch.addmm(W, gram64(W, B).to(W.device, W.dtype), B, alpha=-1)
            if sweep == 0:  # residuals already inside span V have lost almost all their norm
                keep = torch.linalg.vector_norm(W, dim=1).cpu().double() > self.drop * norms
                W = W[keep.to(W.device)]
            W, changed = self._svqb(W)
            if not changed and not self.V:
                break
        return W

    def _svqb(self, W: Tensor) -> tuple[Tensor, bool]:
        """Orthonormal rows spanning those of W (dropping dependent directions), by the
        eigendecomposition of their float64 Gram matrix (Stathopoulos & Wu's SVQB); W itself, and
        False, when its rows are already orthonormal."""
        if W.shape[0] == 0:
            return W, False
        G = gram64(W, W)
        if float((G - torch.eye(len(G), dtype=G.dtype)).abs().max()) <= self.orth:
            return W, False
        scale = G.diagonal().rsqrt()
        S, U = torch.linalg.eigh(G * scale[:, None] * scale[None, :])
        S, U = S.flip(0), U.flip(1)
        keep = S > self.drop ** 2 * S[0]
        C = (U[:, keep] * S[keep].rsqrt()).T * scale[None, :]
        return C.to(W.device, W.dtype) @ W, True

    def ritz(self) -> tuple[Tensor, Tensor]:
        """All Ritz values (float64, descending) and their coefficient vectors Y (m, m) in V."""
        theta, Y = torch.linalg.eigh(self.T[:self.m, :self.m])
        return theta.flip(0), Y.flip(1)

    def combine(self, Y: Tensor) -> tuple[Tensor, Tensor]:
        """Rows X = Y^T V and A X = Y^T A V for coefficient columns Y (m, r)."""
        return self._rows(Y, self.V), self._rows(Y, self.AV)

    @staticmethod
    def _rows(Y: Tensor, blocks: list[Tensor]) -> Tensor:
        Yt = Y.T.to(blocks[0].device, blocks[0].dtype)
        out, start = None, 0
        for B in blocks:
            part = Yt[:, start:start + len(B)]
            out = part @ B if out is None else out.addmm_(part, B)
            start += len(B)
        return out

    def restart(self, X: Tensor, AX: Tensor) -> None:
        """Keep only the Ritz vectors X (orthonormal, in span V) and A X: no operator cost."""
        self.V, self.AV = [X], [AX]
        block = gram64(X, AX)
        self.T[:len(X), :len(X)] = (block + block.T) / 2


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
    space = _Space(op, size)
    generator = torch.Generator().manual_seed(seed)
    start = torch.empty(0, op.dim, dtype=op.dtype, device=op.device) if init is None else init.T
    while space.m < block:  # more than once only if rows of `init` were dependent
        rows, need = start.to(op.device, op.dtype), block - space.m - len(start)
        if need > 0:
            noise = torch.randn(need, op.dim, dtype=torch.float64, generator=generator)
            rows = torch.cat([rows, noise.to(op.device, op.dtype)])
        space.extend(rows)
        start = start[:0]
    while True:
        theta, Y = space.ritz()
        X, AX = space.combine(Y[:, :k])
        R = torch.addcmul(AX, X, -theta[:k, None].to(X.device, X.dtype))
        res = torch.linalg.vector_norm(R, dim=1).cpu().double()
        open_ = res > tol * theta[:k].abs().max()
        if not open_.any() or space.passes >= max_iters:
            break
        if space.free < int(open_.sum()):
            space.restart(*space.combine(Y[:, :block]))
            continue
        if space.extend(R[open_.to(R.device)]) == 0:  # residuals numerically inside the space
            break
    converged = not bool(open_.any())
    basis = space.combine(Y[:, :block])[0]
    values = gram64(X, AX).diagonal() / gram64(X, X).diagonal()  # Rayleigh quotients, float64
    order = values.argsort(descending=True)
    values, X, AX = values[order], X[order.to(X.device)], AX[order.to(X.device)]
    res = torch.linalg.vector_norm(torch.addcmul(AX, X, -values[:, None].to(X.device, X.dtype)), dim=1).cpu().double()
    gap = theta[k - 1] - theta[k] if space.m > k else 0.0
    return EigResult(values, X.T, res, space.hvps, space.passes, converged, basis.T, bool(gap > res.norm()))


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
