"""Top-k (largest algebraic) eigenpairs of a symmetric operator from matrix-vector products.

The method is a thick-restarted block Davidson iteration without preconditioner, i.e. block
Lanczos with full reorthogonalisation. A cold start is the caller's `fresh` directions (the
tracker passes the gradient and the SAM gradient, which at the edge of stability align with the
top eigenvector) and seeded noise. A warm start is `init` (the previous measurement's k + guard
vectors) and one probe: the fresh directions' parts outside the warm span (a gradient on a new
minibatch can carry an eigenvector the previous basis never saw) and a seeded random vector, each
scaled to unit length and summed; the stopping test watches it. Each iteration adds the
residuals that fail the stopping test, so one iteration costs one batched pass of the operator
over as many vectors.

Exact in float32: the basis is stored as contiguous rows, and every inner product over
parameter-length vectors (projections, the Gram matrices of new blocks, V^T A V, the final
Rayleigh quotients) is accumulated in float64, so the basis is orthonormal to float32 rounding
and the returned values are the Rayleigh quotients of the returned vectors, free of the 1e-4
errors that float32 sums over millions of terms leave.

Stopping test (what `converged` means): with Ritz pairs (theta_j, x_j) of the whole search
space, descending, and residuals s_j = ||H x_j - theta_j x_j||,
  - the top k pairs have s_j <= tol * |theta_1|, and
  - (warm starts) the probe test: write the probe's part off the top k Ritz vectors as
    p_perp = sum_{j > k} w_j x_j; for every eigenvector q of H whose eigenvalue mu is at least
    a = theta_k + tol |theta_1|, |q . p_perp| <= PROBE ||p_perp||.
The probe is tested on the first pass's space, where its residual joins the top k's (one more
product), and again once the top k have converged; while it fails, the residual of the run of
Ritz pairs that contributes most to the bound is added, one product per pass, and the Krylov
space grows towards whatever the probe sees above a.
The bound behind the test (_probe_bound): split the pairs below the k-th into runs of consecutive
Ritz values; for a run u = sum w_j x_j with Rayleigh quotient rho and residual r (both from the
Gram matrices, no operator products), q . (H - sigma) u = (mu - sigma) q . u gives
|q . u| <= ||u|| r / sqrt((a - rho)^2 + r^2) for every mu >= a; the runs' bounds add up, and the
partition with the smallest sum is found by dynamic programming (single pairs give the classical
s_j / (mu - theta_j); the whole bulk as one run is tight when its Ritz values are far below a).
Guarantee: an eigenvalue that rose above the returned ones by more than the tolerance while its
eigenvector lay outside the warm span (a catapult, or a new minibatch's direction) is never
returned as converged unless its eigenvector overlaps the probe's part off the returned vectors
by at most PROBE ||p_perp||. In n dimensions a random vector overlaps a given eigenvector by
about 1 / sqrt(n), so the gradients in the probe carry the guarantee for large models, and no
finite method finds an eigenvector orthogonal to everything it multiplied. The probe is kept
through thick restarts. A spectrum whose bulk reaches close to theta_k (a Transformer's minibatch
Hessian) can keep the test from passing in a bounded space: after PROBE_PASSES passes spent on
it alone the solve stops and says not converged, with the values still within their bounds.

Error bounds: each returned eigenvalue lies within its `bounds` entry of an eigenvalue of H:
min(s_i, s_i^2 / delta_i) (the residual bound, and Kato-Temple's with delta_i the certified
distance from theta_i to the intervals theta_j +- s_j of its neighbours).
`resolved` is True only when the (k+1)-th pair is converged (its residual at most tol |theta_1|, or
GAP times its distance to theta_k: it overlaps the eigenvectors above theta_k by at most GAP; no
pass is spent on it, so inside a tight cluster the result says unresolved rather than pay for the
certificate) and the gap to the interval theta_{k+1} +- s_{k+1}, which holds an eigenvalue,
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
# The probe test's bound on the overlap of a missed eigenvector with the probe (module docstring).
PROBE = 0.1
# The (k+1)-th pair's residual allowance as a fraction of its distance to theta_k (`resolved`).
GAP = 0.1
# One-product passes spent on the probe test once the top k converged: a spectrum whose bulk reaches
# close to theta_k can keep the test from passing in a bounded space; the result then says not converged.
PROBE_PASSES = 10


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
        self.G = torch.zeros(size, size, dtype=torch.float64)  # (A V)(A V)^T: the Ritz residuals' inner products
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

    def ritz(self) -> tuple[Tensor, Tensor]:
        """All Ritz values (float64, descending) and their coefficient vectors Y (m, m) in V."""
        theta, Y = torch.linalg.eigh(self.T[:self.m, :self.m])
        return theta.flip(0), Y.flip(1)

    def residual_gram(self, theta: Tensor, Y: Tensor) -> Tensor:
        """(A x_i - theta_i x_i) . (A x_j - theta_j x_j) for the Ritz pairs (theta, Y), from G = (A V)(A V)^T:
        no row combinations (float64; accurate to ~1e-8 theta_1^2)."""
        return Y.T @ self.G[:self.m, :self.m] @ Y - torch.diag(theta ** 2)

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

    def coordinates(self, row: Tensor) -> Tensor:
        """V row^T (m,) float64: a row's coordinates in the basis."""
        return torch.cat([gram64(B, row)[:, 0] for B in self.V])

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

    init: (dim, j) starting vectors, 1 <= j <= k + guard (e.g. a previous result's `basis`): a warm
    start, init and the probe in one pass of j + 1 products. fresh: (dim, f) directions (the
    tracker passes the gradient and the SAM gradient): a cold start begins with them, filled up to
    k + guard with seeded noise; a warm start's probe holds their parts outside init's span.
    guard: extra vectors carried beside the k wanted ones; k + guard = 10 spans the cluster of
    C - 1 = 9 outlier eigenvalues of a 10-class squared loss, so a warm start need not rediscover
    the members of the cluster that overtook each other. One iteration is one batched pass of the
    operator; `max_iters` bounds them. max_basis (default max(3 (k + guard), 20)) bounds the search
    space before a thick restart. The stopping test and the guarantee it gives are in the module
    docstring.
    """
    _check_args(op, k, tol, max_iters, init, guard, fresh)
    generator = torch.Generator().manual_seed(seed)
    block = min(k + guard, op.dim)
    rows, probe = _start_rows(op, block, init, fresh, generator)
    block = max(block, min(len(rows), op.dim)) if init is None else block
    size = min(op.dim, max_basis or max(3 * block, 20))
    if size < 2 * block and size < op.dim:
        raise ValueError(f"max_basis: expected at least 2 (k + guard) = {2 * block}, got {max_basis}")
    space = _Space(op, size)
    space.extend(rows)
    while space.m < block:  # only if starting rows were dependent
        noise = torch.randn(block - space.m, op.dim, dtype=torch.float64, generator=generator)
        space.extend(noise.to(op.device, op.dtype))
    probe_passes = 0
    while True:
        theta, Y = space.ritz()
        top = min(k + 1, space.m)
        X, AX = space.combine(Y[:, :top])
        R = torch.addcmul(AX, X, -theta[:top, None].to(X.device, X.dtype))
        res = torch.linalg.vector_norm(R, dim=1).cpu().double()
        scale = tol * theta[:k].abs().max()
        open_top = _open_top(theta, res, k, scale)
        weights = None if probe is None else Y.T @ space.coordinates(probe)  # the probe in the Ritz basis
        # The probe is tested beside the first residuals (its image joins the search space for one
        # product) and then once the top k have converged: between, the top k's residuals move it.
        tested = weights is not None and (not open_top.any() or space.passes == 1)
        probe_row = _probe_residual(space, theta, Y, weights, k, scale) if tested else None
        converged = not bool(open_top.any()) and probe_row is None
        if converged or space.passes >= max_iters or probe_passes >= PROBE_PASSES:
            break
        probe_passes += not open_top.any()
        new = torch.cat([R[:k][open_top.to(R.device)]] + ([] if probe_row is None else [probe_row]))
        if space.free < len(new):  # residuals are orthogonal to the whole space, so to what a restart keeps
            space.restart(*_kept(space, Y, weights, block))
        if space.extend(new[:space.free]) == 0:  # numerically inside the space
            break
    basis = space.combine(Y[:, :block])[0]
    X, AX = X[:k], AX[:k]
    values = gram64(X, AX).diagonal() / gram64(X, X).diagonal()  # Rayleigh quotients, float64
    order = values.argsort(descending=True)
    values, X, AX = values[order], X[order.to(X.device)], AX[order.to(X.device)]
    res_k = torch.linalg.vector_norm(torch.addcmul(AX, X, -values[:, None].to(X.device, X.dtype)), dim=1).cpu().double()
    # The (k+1)-th pair, once converged, bounds an eigenvalue below lambda_k; else nothing does.
    certified = top > k and float(res[k]) <= _gap_limit(theta, k, scale)
    below = float(theta[k] + res[k]) if certified else (-math.inf if k == op.dim else None)
    resolved = below is not None and float(values[-1]) - below > float(res_k.norm())
    return EigResult(values, X.T, res_k, space.hvps, space.passes, converged, basis.T, resolved,
                     _error_bounds(values, res_k, below))


def _start_rows(op: Operator, block: int, init: Tensor | None, fresh: Tensor | None,
                generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
    """The first pass's rows and the probe: warm, init's columns and the probe, the unit sum of the
    fresh directions' parts off the warm span and a seeded random vector, each scaled to unit
    length; cold, the fresh directions and seeded noise (no probe)."""
    if init is None:
        new = torch.empty(0, op.dim, dtype=op.dtype, device=op.device) if fresh is None else fresh.T.to(op.device, op.dtype)
        noise = torch.randn(max(block - len(new), 0), op.dim, dtype=torch.float64, generator=generator)
        return torch.cat([new, noise.to(op.device, op.dtype)]), None
    warm = init.T.to(op.device, op.dtype)
    noise = torch.randn(1, op.dim, dtype=torch.float64, generator=generator).to(op.device, op.dtype)
    if fresh is not None:  # only what lies outside the warm span is fresh
        new = fresh.T.to(op.device, op.dtype)
        new = new - torch.linalg.solve(gram64(warm, warm), gram64(warm, new)).T.to(new.dtype) @ warm
        noise = torch.cat([new, noise])
    norms = torch.linalg.vector_norm(noise, dim=1, keepdim=True)
    probe = (noise / norms)[norms[:, 0] > 0].sum(0, keepdim=True)  # a zero (or warm) gradient adds nothing
    probe = probe / torch.linalg.vector_norm(probe)
    return torch.cat([warm, probe]), probe


def _open_top(theta: Tensor, res: Tensor, k: int, scale: Tensor) -> Tensor:
    """Which of the top k pairs, residuals `res`, have not converged (residual above tol |theta_1|)."""
    return res[:k] > scale


def _gap_limit(theta: Tensor, k: int, scale: Tensor) -> float:
    """The residual the (k+1)-th pair may keep and still certify the gap (`resolved`): tol |theta_1|,
    or GAP times its distance to theta_k."""
    return float(torch.maximum(GAP * (theta[k - 1] - theta[k]), scale))


def _probe_residual(space: _Space, theta: Tensor, Y: Tensor, weights: Tensor, k: int,
                    scale: Tensor) -> Tensor | None:
    """None when the probe test passes (module docstring); else the residual row to expand: the
    combined residual of the group of Ritz pairs that contributes most to the bound."""
    bound, groups = _probe_bound(theta[k:], weights[k:], space.residual_gram(theta, Y)[k:, k:],
                                 float(theta[k - 1] + scale))
    if bound <= PROBE * float(torch.linalg.vector_norm(weights[k:])):
        return None
    start, end = max(groups, key=lambda g: g[2])[:2]
    coef = Y[:, k + start:k + end] @ weights[k + start:k + end]
    shifted = Y[:, k + start:k + end] @ (theta[k + start:k + end] * weights[k + start:k + end])
    return space._rows(coef[:, None], space.AV) - space._rows(shifted[:, None], space.V)


def _probe_bound(theta: Tensor, w: Tensor, R2: Tensor, a: float) -> tuple[float, list[tuple[int, int, float]]]:
    """The smallest bound on |q . p_perp| over partitions of the pairs (descending theta) into runs,
    for eigenvectors q of eigenvalue mu >= a; and that partition's runs (start, end, share).

    A run u = sum_{j in run} w_j x_j has Rayleigh quotient rho = sum w_j^2 theta_j / ||u||^2 and
    residual r, r^2 ||u||^2 = sum w_j^2 (theta_j - rho)^2 + w^T R2 w (the pairs' residuals are
    orthogonal to the space); |q . u| <= min_sigma ||(H - sigma) u|| / (mu - sigma)
    = ||u|| r / sqrt((a - rho)^2 + r^2) when rho < a, and ||u|| otherwise. A single pair gives
    |w_j| s_j / sqrt((a - theta_j)^2 + s_j^2); the whole tail, one Rayleigh quotient."""
    th, wt, R = theta.tolist(), w.tolist(), R2.numpy() if R2.device.type == "cpu" else R2.cpu().numpy()
    n = len(th)
    share = [[0.0] * (n + 1) for _ in range(n + 1)]
    for s in range(n):
        n2 = m1 = m2 = quad = 0.0
        for e in range(s, n):
            we = wt[e]
            quad += we * (2 * float(np.dot(R[s:e, e], wt[s:e])) + R[e, e] * we)
            n2, m1, m2 = n2 + we * we, m1 + we * we * th[e], m2 + we * we * th[e] ** 2
            if n2 == 0:
                continue
            rho = m1 / n2
            r2 = max(m2 - rho * m1 + max(quad, 0.0), 0.0) / n2  # sum w^2 (theta - rho)^2 = m2 - rho m1
            share[s][e + 1] = math.sqrt(n2) * (1.0 if rho >= a else math.sqrt(r2 / ((a - rho) ** 2 + r2)))
    best, cut = [0.0] + [math.inf] * n, [0] * (n + 1)
    for e in range(1, n + 1):
        for s in range(e):
            if best[s] + share[s][e] < best[e]:
                best[e], cut[e] = best[s] + share[s][e], s
    groups, e = [], n
    while e > 0:
        groups.append((cut[e], e, share[cut[e]][e]))
        e = cut[e]
    return best[n], groups


def _kept(space: _Space, Y: Tensor, weights: Tensor | None, block: int) -> tuple[Tensor, Tensor]:
    """What a thick restart keeps: the top `block` Ritz vectors and, on a warm start, the probe's
    part off them (its image from the stored images: no operator cost), so the probe test keeps
    seeing the whole probe."""
    if weights is None:
        return space.combine(Y[:, :block])
    X, AX = space.combine(torch.cat([Y[:, :block], Y[:, block:] @ weights[block:, None]], dim=1))
    norm = float(torch.linalg.vector_norm(X[-1]))
    if norm <= space.drop:
        return X[:-1], AX[:-1]
    return torch.cat([X[:-1], X[-1:] / norm]), torch.cat([AX[:-1], AX[-1:] / norm])


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
