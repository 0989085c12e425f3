"""The eigensolver in float32 on parameter-length vectors, and on near-degenerate clusters at the default tol."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from samedge.hessian import MatrixOperator, top_eigenpairs


pytestmark = pytest.mark.usefixtures("one_thread")


class ReflectedDiagonal:
    """A = H diag(d) H with the Householder reflection H = I - 2 u u^T: exact eigenvalues d, and
    eigenvectors H e_i, at any dimension. Applied in float64, returned in float32 (a float32 HVP)."""

    def __init__(self, d: Tensor, seed: int = 0) -> None:
        self.d = d.double()
        u = torch.randn(len(d), dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        self.u = u / u.norm()
        self.dim, self.dtype, self.device = len(d), torch.float32, torch.device("cpu")
        self.hvps = 0

    def reflect(self, X: Tensor) -> Tensor:
        return X - 2 * self.u[:, None] * (self.u @ X)[None, :]

    def matmat(self, X: Tensor) -> Tensor:
        self.hvps += X.shape[1]
        return self.reflect(self.d[:, None] * self.reflect(X.double())).float()


def test_float32_orthonormal_and_exact_on_long_vectors():
    """At 2 M parameters, float32 sums leave inner products wrong by ~1e-4; the solver's are float64."""
    dim = 2_000_000
    bulk = torch.rand(dim - 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.6 - 0.3
    d = torch.cat([torch.tensor([10.0, 7.0, 5.0, 4.0, 3.0], dtype=torch.float64), bulk])
    op = ReflectedDiagonal(d)
    result = top_eigenpairs(op, k=3, tol=1e-4)
    assert result.converged and result.vectors.dtype == torch.float32 and result.hvps == op.hvps
    X = result.vectors.double()
    assert float((X.T @ X - torch.eye(3, dtype=torch.float64)).abs().max()) <= 1e-6
    np.testing.assert_allclose(result.values.numpy(), [10.0, 7.0, 5.0], rtol=1e-6)
    true = (op.matmat(result.vectors).double() - X * result.values).norm(dim=0)
    torch.testing.assert_close(result.residuals, true, rtol=1e-2, atol=1e-6)
    B = result.basis.double()
    assert float((B.T @ B - torch.eye(B.shape[1], dtype=torch.float64)).abs().max()) <= 1e-6


def clustered(top: list[float], n: int = 300, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A symmetric matrix with the given top eigenvalues above a bulk in [-0.5, 0.9], and its eigenvectors."""
    g = torch.Generator().manual_seed(seed)
    eigenvalues = torch.cat([torch.tensor(top, dtype=torch.float64),
                             torch.rand(n - len(top), dtype=torch.float64, generator=g) * 1.4 - 0.5])
    q = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=g))[0]
    return (q * eigenvalues) @ q.T, q


def test_cluster_with_a_gap_returns_the_top_subspace():
    """Top three within 0.4 %, the fourth 5 % below: at tol 1e-3 the returned vectors span the true
    top-3 eigenspace to within the Davis-Kahan bound ||R||_F / gap."""
    top = [1.0, 0.998, 0.996, 0.95]
    matrix, q = clustered(top)
    result = top_eigenpairs(MatrixOperator(matrix), k=3)
    assert result.converged and result.resolved
    np.testing.assert_allclose(result.values.numpy(), top[:3], rtol=1e-3)
    cosines = torch.linalg.svdvals(q[:, :3].T @ result.vectors)  # of the principal angles
    sin_max = float((1 - cosines.min() ** 2).clamp(min=0).sqrt())
    bound = float(result.residuals.norm()) / (top[2] - top[3] - float(result.residuals.norm()))
    assert sin_max <= bound < 0.1


def test_degenerate_cluster_is_reported_unresolved():
    """The third and fourth eigenvalues 1e-9 apart: no tol-1e-3 solve can tell their eigenvectors
    apart, so the values are right but the result says the subspace is not determined."""
    top = [1.0, 0.998, 0.996, 0.996 - 1e-9, 0.95]
    matrix, _ = clustered(top, seed=1)
    result = top_eigenpairs(MatrixOperator(matrix), k=3)
    assert result.converged and not result.resolved
    np.testing.assert_allclose(result.values.numpy(), top[:3], rtol=1e-3)
