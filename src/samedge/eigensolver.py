"""Top-k (largest algebraic) eigenpairs of a symmetric operator from matrix-vector products.

The method is a thick-restarted block Davidson iteration without preconditioner, i.e. block
Lanczos with full reorthogonalisation: the search space starts from `init` (the previous
measurement's vectors, for warm starts) and a probe: the sum of the caller's unit `fresh`
directions (the tracker passes the gradient and the SAM gradient, which at the edge of stability
align with the top eigenvector) and a seeded unit random vector. Each iteration adds the residuals
of the Ritz pairs that fail the stopping test, so one iteration costs one batched pass of the
operator over as many vectors.

Exact in float32: the basis is stored as contiguous rows, and every inner product over
parameter-length vectors (projections, the Gram matrices of new blocks, V^T A V, the final
Rayleigh quotients) is accumulated in float64, so the basis is orthonormal to float32 rounding
and the returned values are the Rayleigh quotients of the returned vectors, free of the 1e-4
errors that float32 sums over millions of terms leave.

Stopping test (what `converged` means): with Ritz pairs (theta_j, x_j) of the whole search space,
descending, and residuals s_j = ||H x_j - theta_j x_j||,
  - the top k pairs have s_j <= tol * |theta_1|, and
  - each of the next pairs up to k + guard (those a warm start carries on) has s_j <= tol *
    |theta_1| or s_j <= PROBE * (theta_k - theta_j); a pair within a residual of theta_k must
    therefore converge. They are tested once the top k have converged, and the highest failing
    one is expanded per pass.
For any eigenvector q of H with eigenvalue mu >= theta_k, |q . x_j| <= s_j / (mu - theta_j), so
the second condition bounds by PROBE the overlap of every eigenvector above theta_k that the
returned vectors miss with each of those Ritz vectors. The first pass holds the probe among
them, so a new top eigenvalue whose eigenvector overlaps the probe (the gradient, the SAM
gradient, or the random part) by more than PROBE times its share cannot be returned as
converged: the probe's Ritz pair fails the test and is expanded, and the Krylov space grows
towards it (Lanczos from a random vector reaches it with high probability in a few passes; no
finite method can find an eigenvector orthogonal to everything it multiplied).

Error bounds: each returned eigenvalue lies within its `bounds` entry of an eigenvalue of H:
min(s_i, s_i^2 / delta_i) (the residual bound, and Kato-Temple's with delta_i the certified
distance from theta_i to the intervals theta_j +- s_j of its neighbours).
`resolved` is True only when the (k+1)-th pair passed the stopping test (converged, or its
residual below PROBE times its distance to theta_k: it overlaps the eigenvectors above theta_k by
at most PROBE) and the gap to the interval theta_{k+1} +- s_{k+1}, which holds an eigenvalue,
theta_k - (theta_{k+1} + s_{k+1}) (theta_k <= lambda_k by interlacing), exceeds the residual norm
||H V - V diag(values)||_F, so that the returned vectors span the top-k eigenspace to within that
ratio (Davis-Kahan). A bare Ritz value theta_{k+1}, only a lower bound on lambda_{k+1}, is never used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import Tensor

CHUNK = 1 << 15  # elements per row and chunk of a float64 inner product: the float64 copies stay in cache
# A Ritz pair below the k-th passes the stopping test when its residual is at most this fraction of
# its distance to theta_k: eigenvectors above theta_k then overlap it by at most this much.
PROBE = 0.1


class Operator(Protocol):
    dim: int
    dtype: torch.dtype
    device: torch.device

    def matmat(self, vectors: Tensor) -> Tensor: ...


@dataclass
class EigResult:
    """values, residuals, bounds: float64 CPU tensors (k,), values descending, each value within
    its bound of an eigenvalue (residual or Kato-Temple bound, module docstring); vectors: (dim, k)
    unit eigenvectors in the operator's dtype and device; basis: (dim, k + guard) top Ritz
    vectors, the warm start for the next measurement; hvps: operator applications spent;
    iterations: batched operator passes; converged: the stopping test passed. resolved: the gap to
    lambda_{k+1} is certified by a converged (k+1)-th pair and exceeds ||H V - V diag(values)||_F,
    so the vectors span the top-k eigenspace to within that ratio (Davis-Kahan); False inside a
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
    bounds: Tensor | None = None


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
        self.G = torch.zeros(size, size, dtype=torch.float64)  # (A V)(A V)^T: every Ritz residual, no row combinations
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
        images = torch.cat([gram64(self.AV[-1], B) for B in self.AV], dim=1)
        self.G[start:end, :end] = images
        self.G[:start, start:end] = images[:, :start].T
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

    def ritz(self) -> tuple[Tensor, Tensor, Tensor]:
        """All Ritz values (float64, descending), their coefficient vectors Y (m, m) in V and their
        residual norms ||A x - theta x||^2 = y^T G y - theta^2 (float64; accurate to ~1e-8 |theta|)."""
        theta, Y = torch.linalg.eigh(self.T[:self.m, :self.m])
        theta, Y = theta.flip(0), Y.flip(1)
        square = ((self.G[:self.m, :self.m] @ Y) * Y).sum(0) - theta ** 2
        return theta, Y, square.clamp(min=0).sqrt()

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
        self.G[:len(X), :len(X)] = gram64(AX, AX)


def top_eigenpairs(op: Operator, k: int = 3, tol: float = 1e-3, max_iters: int = 100,
                   init: Tensor | None = None, seed: int = 0, guard: int = 7,
                   max_basis: int | None = None, fresh: Tensor | None = None) -> EigResult:
    """The k largest-algebraic eigenpairs of the symmetric operator `op`.

    init: (dim, j) starting vectors, 1 <= j <= k + guard (e.g. a previous result's `basis`). fresh: (dim, f)
    directions for the start (the tracker passes the gradient and the SAM gradient). A warm start
    is the first max(k, k + guard - 1) columns of init and the probe (module docstring), so its
    first pass costs k + guard products as before; a cold start is the fresh directions and
    Gaussian noise. Noise is drawn from `seed`. guard: extra vectors carried beside the k wanted ones; k + guard = 10 spans the cluster
    of C - 1 = 9 outlier eigenvalues of a 10-class squared loss, so a warm start need not
    rediscover the members of the cluster that overtook each other. One iteration is one batched
    pass of the operator; `max_iters` bounds them. max_basis (default max(3 (k + guard), 20))
    bounds the search space before a thick restart. The stopping test and the guarantee it gives
    are in the module docstring.
    """
    _check_args(op, k, tol, max_iters, init, guard, fresh)
    generator = torch.Generator().manual_seed(seed)
    rows = _start_rows(op, k, min(k + guard, op.dim), init, fresh, generator)
    block = max(min(k + guard, op.dim), min(len(rows), op.dim))
    size = min(op.dim, max_basis or max(3 * block, 20))
    if size < 2 * block and size < op.dim:
        raise ValueError(f"max_basis: expected at least 2 (k + guard) = {2 * block}, got {max_basis}")
    space = _Space(op, size)
    space.extend(rows)
    while space.m < block:  # only if starting rows were dependent
        noise = torch.randn(block - space.m, op.dim, dtype=torch.float64, generator=generator)
        space.extend(noise.to(op.device, op.dtype))
    while True:
        theta, Y, screen = space.ritz()
        top = min(k + 1, space.m)
        X, AX = space.combine(Y[:, :top])
        R = torch.addcmul(AX, X, -theta[:top, None].to(X.device, X.dtype))
        res = torch.linalg.vector_norm(R, dim=1).cpu().double()
        scale = tol * theta[:k].abs().max()
        open_top = _open_top(theta, res, k, scale)
        lower, R_lower = ([], R[:0]) if open_top.any() else _open_lower(space, theta, Y, screen, k, block, scale)
        n_open = int(open_top.sum()) + len(lower)
        if n_open == 0 or space.passes >= max_iters:
            break
        if space.free < n_open:
            space.restart(*space.combine(Y[:, :block]))
            continue
        if space.extend(torch.cat([R[open_top.to(R.device)], R_lower])) == 0:  # numerically inside the space
            break
    converged = n_open == 0
    basis = space.combine(Y[:, :block])[0]
    X, AX = X[:k], AX[:k]
    values = gram64(X, AX).diagonal() / gram64(X, X).diagonal()  # Rayleigh quotients, float64
    order = values.argsort(descending=True)
    values, X, AX = values[order], X[order.to(X.device)], AX[order.to(X.device)]
    res_k = torch.linalg.vector_norm(torch.addcmul(AX, X, -values[:, None].to(X.device, X.dtype)), dim=1).cpu().double()
    # The (k+1)-th pair, once it passed the stopping test, bounds an eigenvalue below lambda_k; else nothing does.
    below = float(theta[k] + res[k]) if top > k and not open_top[k] else (-math.inf if k == op.dim else None)
    resolved = below is not None and float(values[-1]) - below > float(res_k.norm())
    return EigResult(values, X.T, res_k, space.hvps, space.passes, converged, basis.T, resolved,
                     _error_bounds(values, res_k, below))


def _start_rows(op: Operator, k: int, block: int, init: Tensor | None, fresh: Tensor | None,
                generator: torch.Generator) -> Tensor:
    """The first pass's rows: warm columns and the probe, or (cold) fresh directions and noise."""
    new = torch.empty(0, op.dim, dtype=op.dtype, device=op.device) if fresh is None else fresh.T.to(op.device, op.dtype)
    if init is None:
        noise = torch.randn(max(block - len(new), 0), op.dim, dtype=torch.float64, generator=generator)
        return torch.cat([new, noise.to(op.device, op.dtype)])
    noise = torch.randn(1, op.dim, dtype=torch.float64, generator=generator).to(op.device, op.dtype)
    parts = torch.cat([new, noise])
    norms = torch.linalg.vector_norm(parts, dim=1, keepdim=True)
    probe = (parts[norms[:, 0] > 0] / norms[norms[:, 0] > 0]).sum(0, keepdim=True)  # a zero gradient adds nothing
    warm = init.T[:max(k, block - 1)].to(op.device, op.dtype)
    fill = torch.randn(max(block - len(warm) - 1, 0), op.dim, dtype=torch.float64, generator=generator)
    return torch.cat([warm, probe, fill.to(op.device, op.dtype)])  # one pass, as a cold start's


def _limits(theta: Tensor, k: int, scale: Tensor) -> Tensor:
    """The residual each Ritz pair j >= k may keep: tol |theta_1|, or PROBE times its distance to theta_k."""
    return torch.maximum(PROBE * (theta[k - 1] - theta[k:]), scale)


def _open_top(theta: Tensor, res: Tensor, k: int, scale: Tensor) -> Tensor:
    """Which of the top k (+ 1) pairs, residuals `res`, fail the stopping test (module docstring)."""
    return res > torch.cat([scale.expand(k), _limits(theta, k, scale)[:len(res) - k]])


def _open_lower(space: _Space, theta: Tensor, Y: Tensor, screen: Tensor, k: int, block: int,
                scale: Tensor) -> tuple[list[int], Tensor]:
    """The highest pair among k + 2 .. block that fails the stopping test, with its residual row.
    Pairs are screened by their Gram-matrix residuals (no row combinations); only candidates'
    residuals are formed exactly, highest first."""
    limits = _limits(theta, k, scale)
    for j in range(k + 1, min(block, space.m)):
        if screen[j] > limits[j - k] / 2:
            X, AX = space.combine(Y[:, j:j + 1])
            R = torch.addcmul(AX, X, -theta[j:j + 1, None].to(X.device, X.dtype))
            if float(torch.linalg.vector_norm(R)) > limits[j - k]:
                return [j], R
    return [], space.V[0][:0]


def _error_bounds(values: Tensor, res: Tensor, below: float | None) -> Tensor:
    """Per value, min(residual, Kato-Temple): s_i^2 / delta_i, delta_i the distance from theta_i
    to its neighbours' intervals (theta_j +- s_j; the top value has none above), when both
    neighbours are certified and apart from it; otherwise the residual bound s_i."""
    bounds = res.clone()
    for i, (theta, s) in enumerate(zip(values.tolist(), res.tolist())):
        up = math.inf if i == 0 else values[i - 1].item() - res[i - 1].item()
        down = below if i == len(values) - 1 else values[i + 1].item() + res[i + 1].item()
        if down is not None and down < theta < up:
            bounds[i] = min(s, s * s / min(theta - down, up - theta))
    return bounds


def _check_args(op: Operator, k: int, tol: float, max_iters: int, init: Tensor | None, guard: int,
                fresh: Tensor | None) -> None:
    if not 1 <= k <= op.dim:
        raise ValueError(f"k: expected 1 <= k <= dim = {op.dim}, got {k}")
    if not tol > 0:
        raise ValueError(f"tol: expected a positive tolerance, got {tol}")
    if max_iters < 1:
        raise ValueError(f"max_iters: expected a positive integer, got {max_iters}")
    if guard < 0:
        raise ValueError(f"guard: expected a non-negative integer, got {guard}")
    for name, start, most in (("init", init, k + guard), ("fresh", fresh, op.dim)):
        if start is None:
            continue
        if start.ndim != 2 or start.shape[0] != op.dim or not 1 <= start.shape[1] <= most:
            raise ValueError(f"{name}: expected shape ({op.dim}, j) with 1 <= j <= {most}, got {tuple(start.shape)}")
        if not torch.isfinite(start).all():
            raise ValueError(f"{name}: contains NaN or Inf")
