"""HVP operator, top-k eigen solver and tracker against dense float64 Hessians and known spectra."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import scipy.sparse.linalg as sla
import torch
from torch import Tensor, nn
from torch.func import functional_call

from samedge.hessian import EigenTracker, HVPOperator, MatrixOperator, top_eigenpairs
from samedge.models import CNN, MLP, Transformer, lm_loss, mse_loss
from samedge.objective import chunk_data


pytestmark = pytest.mark.usefixtures("one_thread")


def mse(outputs: Tensor, targets: Tensor) -> Tensor:
    return ((outputs - targets) ** 2).mean()


def dense_hessian(model: nn.Module, loss_fn, inputs: Tensor, targets: Tensor) -> Tensor:
    """The float64 Hessian of the unchunked mean loss w.r.t. the flat trainable parameters."""
    named = [(n, p.detach()) for n, p in model.named_parameters() if p.requires_grad]

    def loss(flat: Tensor) -> Tensor:
        pieces = flat.split([p.numel() for _, p in named])
        params = {n: piece.view_as(p) for (n, p), piece in zip(named, pieces)}
        return loss_fn(functional_call(model, params, (inputs,)), targets)

    return torch.autograd.functional.hessian(loss, torch.cat([p.reshape(-1) for _, p in named]), vectorize=True)


def rel_err(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def snapshot(model: nn.Module) -> list[Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def assert_unchanged(model: nn.Module, before: list[Tensor]) -> None:
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    assert all(p.grad is None for p in model.parameters())


def tiny_mlp() -> tuple[nn.Module, object, Tensor, Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    return model, mse, torch.randn(10, 4, dtype=torch.float64), torch.randn(10, 3, dtype=torch.float64)


def paper_mlp():
    torch.manual_seed(1)
    model = MLP(in_features=6, width=5, depth=2, n_classes=3).double()
    return model, mse_loss, torch.randn(10, 6, dtype=torch.float64), torch.randint(0, 3, (10,))


def paper_cnn():
    torch.manual_seed(2)
    model = CNN(in_channels=1, channels=(2, 3), n_classes=3, image_size=4).double()
    return model, mse_loss, torch.randn(10, 1, 4, 4, dtype=torch.float64), torch.randint(0, 3, (10,))


def paper_transformer():
    torch.manual_seed(3)
    model = Transformer(vocab_size=5, seq_len=4, d_model=4, n_layers=1, n_heads=2, key_size=2, widening=2).double()
    codes = torch.randint(0, 5, (10, 5))
    return model, lm_loss, codes[:, :-1], codes[:, 1:]


MODELS = {"sequential": tiny_mlp, "mlp": paper_mlp, "cnn": paper_cnn, "transformer": paper_transformer}


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request):
    model, loss_fn, inputs, targets = MODELS[request.param]()
    return model, loss_fn, inputs, targets, dense_hessian(model, loss_fn, inputs, targets)


# ---------------------------------------------------------------- HVPs


@pytest.mark.parametrize("chunk_sizes", [None, [5, 3, 2]], ids=["one_batch", "unequal_chunks"])
def test_hvp_matches_dense_hessian(case, chunk_sizes):
    model, loss_fn, inputs, targets, hessian = case
    data = (inputs, targets)
    if chunk_sizes is not None:
        data = list(zip(inputs.split(chunk_sizes), targets.split(chunk_sizes)))
    before = snapshot(model)
    op = HVPOperator(model, loss_fn, data)
    assert op.dim == hessian.shape[0] and op.dtype == torch.float64
    V = torch.randn(op.dim, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert rel_err(op.matmat(V), hessian @ V) < 1e-8  # several vectors per pass
    assert rel_err(op.matvec(V[:, 0]), hessian @ V[:, 0]) < 1e-8  # one vector
    assert op.hvps == 4
    assert_unchanged(model, before)
    looped = HVPOperator(model, loss_fn, data, method="double_backprop")
    assert rel_err(looped.matmat(V), hessian @ V) < 1e-8  # one reverse pass per vector
    assert_unchanged(model, before)


def test_fd_close_to_exact_and_restores_parameters_bit_exactly():
    model, loss_fn, inputs, targets = paper_mlp()
    hessian = dense_hessian(model, loss_fn, inputs, targets)
    before = snapshot(model)
    op = HVPOperator(model, loss_fn, chunk_data(inputs, targets, 4), method="fd", fd_eps=1e-3)
    V = torch.randn(op.dim, 2, dtype=torch.float64)
    assert rel_err(op.matmat(V), hessian @ V) < 1e-4
    assert op.hvps == 2
    assert_unchanged(model, before)


class _Cube(torch.autograd.Function):
    """An old-style autograd.Function: double backprop works, torch.func transforms refuse it."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x**2


class _CubeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 4).double(), nn.Linear(4, 2).double()

    def forward(self, x):
        return self.b(_Cube.apply(self.a(x)))


def test_model_without_forward_mode_falls_back_to_double_backprop():
    torch.manual_seed(4)
    model, inputs, targets = _CubeNet(), torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    hessian = dense_hessian(model, mse, inputs, targets)
    op = HVPOperator(model, mse, (inputs, targets))
    V = torch.randn(op.dim, 3, dtype=torch.float64)
    with pytest.warns(UserWarning, match="double backprop"):
        assert rel_err(op.matmat(V), hessian @ V) < 1e-8


def test_frozen_parameters_are_left_out():
    model, loss_fn, inputs, targets = tiny_mlp()
    model[0].weight.requires_grad_(False)
    op = HVPOperator(model, loss_fn, (inputs, targets))
    assert op.dim == sum(p.numel() for p in model.parameters()) - model[0].weight.numel()
    hessian = dense_hessian(model, loss_fn, inputs, targets)
    assert rel_err(op.matmat(torch.eye(op.dim, dtype=torch.float64)), hessian) < 1e-8


def test_linear_operator_is_float64_and_agrees_with_eigsh():
    model, loss_fn, inputs, targets = tiny_mlp()
    expected = np.linalg.eigvalsh(dense_hessian(model, loss_fn, inputs, targets).numpy())[::-1][:3]
    op = HVPOperator(model.float(), loss_fn, (inputs.float(), targets.float()))
    lin = op.as_linear_operator()
    assert lin.dtype == np.float64 and lin.shape == (op.dim, op.dim)
    assert lin.matvec(np.ones(op.dim)).dtype == np.float64
    found = sla.eigsh(lin, k=3, which="LA", tol=1e-6, v0=np.ones(op.dim))[0][::-1]
    np.testing.assert_allclose(found, expected, rtol=1e-4)


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "lanczos"}, "method"), ({"fd_eps": 0.0}, "fd_eps"), ({"data": []}, "data"),
    ({"data": (torch.full((2, 4), math.nan, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64))}, "NaN"),
    ({"data": (torch.zeros(3, 4, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64))}, "data"),
])
def test_hvp_operator_bad_input(kwargs, match):
    model, loss_fn, inputs, targets = tiny_mlp()
    args = {"data": (inputs, targets), **kwargs}
    with pytest.raises(ValueError, match=match):
        HVPOperator(model, loss_fn, **args)


def test_matmat_bad_shape():
    model, loss_fn, inputs, targets = tiny_mlp()
    op = HVPOperator(model, loss_fn, (inputs, targets))
    with pytest.raises(ValueError, match="vectors"):
        op.matmat(torch.zeros(op.dim + 1, 2, dtype=torch.float64))


# ---------------------------------------------------------------- eigen solver


def spectrum_matrix(eigenvalues: list[float] | Tensor, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Q diag(eigenvalues) Q^T for a random orthogonal Q (float64); returns it and Q."""
    eigenvalues = torch.as_tensor(eigenvalues, dtype=torch.float64)
    n = len(eigenvalues)
    q = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)))[0]
    return (q * eigenvalues) @ q.T, q


def hessian_like(n: int = 200, seed: int = 0) -> list[float]:
    """A few outliers above a bulk of both signs, as in a training loss's Hessian."""
    bulk = torch.randn(n - 5, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 0.3
    return [10.0, 7.0, 5.0, 4.0, 3.0] + bulk.tolist()


def assert_top3(result, eigenvalues: list[float], q: Tensor, rtol: float) -> None:
    np.testing.assert_allclose(result.values.numpy(), sorted(eigenvalues, reverse=True)[:3], rtol=rtol)
    order = torch.argsort(torch.as_tensor(eigenvalues), descending=True)[:3]
    cosines = (q[:, order].to(result.vectors.dtype) * result.vectors).sum(0).abs()
    assert bool((cosines >= 0.999).all()), cosines
    assert torch.allclose(result.vectors.norm(dim=0).double(), torch.ones(3, dtype=torch.float64), atol=1e-5)


def test_solver_float64_known_spectrum():
    eigenvalues = hessian_like()
    matrix, q = spectrum_matrix(eigenvalues)
    op = MatrixOperator(matrix)
    result = top_eigenpairs(op, k=3, tol=1e-8)
    assert result.converged and result.hvps == op.hvps
    assert_top3(result, eigenvalues, q, rtol=1e-6)
    assert bool((result.residuals <= 1e-8 * result.values.abs().max()).all())
    exact = (matrix @ result.vectors - result.vectors * result.values).norm(dim=0)
    torch.testing.assert_close(exact, result.residuals, atol=1e-10, rtol=1e-3)


def test_solver_float32_known_spectrum():
    eigenvalues = hessian_like(seed=1)
    matrix, q = spectrum_matrix(eigenvalues, seed=1)
    result = top_eigenpairs(MatrixOperator(matrix.float()), k=3, tol=1e-3)
    assert result.converged and result.vectors.dtype == torch.float32
    assert_top3(result, eigenvalues, q, rtol=1e-3)


# tol is relative to |lambda_1|: the CNN's lambda_1 / lambda_3 ~ 100 needs tol 1e-4 for 1e-3 on lambda_3.
@pytest.mark.parametrize("dtype, tol, rtol", [(torch.float64, 1e-8, 1e-6), (torch.float32, 1e-4, 1e-3)])
def test_solver_on_dense_network_hessian(case, dtype, tol, rtol):
    model, loss_fn, inputs, targets, hessian = case
    eigenvalues, q = torch.linalg.eigh(hessian)
    model = copy.deepcopy(model).to(dtype)
    inputs = inputs.to(dtype) if inputs.is_floating_point() else inputs
    targets = targets.to(dtype) if targets.is_floating_point() else targets
    result = top_eigenpairs(HVPOperator(model, loss_fn, (inputs, targets)), k=3, tol=tol)
    assert result.converged
    np.testing.assert_allclose(result.values.numpy(), eigenvalues.flip(0)[:3].numpy(), rtol=rtol)
    top4 = eigenvalues.flip(0)[:4]
    for i in range(3):  # eigenvectors where the gaps to both neighbours are resolvable
        if min(abs(top4[i] - top4[i + 1]), abs(top4[i] - top4[max(i - 1, 0)]) or math.inf) > 1e-2 * top4[0]:
            assert abs(float(q[:, -1 - i].to(dtype) @ result.vectors[:, i])) >= 0.999


def test_negative_dominant_spectrum_returns_top_positive():
    eigenvalues = [-50.0, -40.0, -30.0, 3.0, 2.0, 1.0] + torch.linspace(-5, 0.5, 54).tolist()
    matrix, q = spectrum_matrix(eigenvalues, seed=2)
    result = top_eigenpairs(MatrixOperator(matrix), k=3, tol=1e-8)
    assert result.converged
    assert_top3(result, eigenvalues, q, rtol=1e-6)


def test_warm_start_from_exact_eigenvectors_converges_at_once():
    eigenvalues = hessian_like(seed=3)
    matrix, q = spectrum_matrix(eigenvalues, seed=3)
    result = top_eigenpairs(MatrixOperator(matrix), k=3, tol=1e-6, init=q[:, :10])  # a tracker's whole warm block
    assert result.converged and result.iterations <= 2
    assert_top3(result, eigenvalues, q, rtol=1e-10)


def test_warm_start_from_previous_basis_saves_products():
    eigenvalues = hessian_like(seed=4)
    matrix, _ = spectrum_matrix(eigenvalues, seed=4)
    cold = top_eigenpairs(MatrixOperator(matrix), k=3, tol=1e-4)
    nudged, q = spectrum_matrix(eigenvalues, seed=4)
    nudged = nudged + 1e-3 * spectrum_matrix(hessian_like(seed=5), seed=5)[0]
    warm = top_eigenpairs(MatrixOperator(nudged), k=3, tol=1e-4, init=cold.basis)
    assert warm.converged and warm.hvps < cold.hvps / 2


def test_restarts_keep_the_answer():
    eigenvalues = [1.0, 0.9, 0.8] + torch.linspace(-1, 0.7, 97).tolist()
    matrix, q = spectrum_matrix(eigenvalues, seed=6)
    result = top_eigenpairs(MatrixOperator(matrix), k=3, tol=1e-6, max_iters=1000, guard=2, max_basis=10)
    assert result.converged and result.hvps > 3 * 10  # the 10-column space was restarted
    assert_top3(result, eigenvalues, q, rtol=1e-8)


def test_max_iters_bounds_the_work():
    eigenvalues = [1.0, 0.999, 0.998] + torch.linspace(-1, 0.997, 297).tolist()
    result = top_eigenpairs(MatrixOperator(spectrum_matrix(eigenvalues)[0]), k=3, tol=1e-10, max_iters=3)
    assert not result.converged and result.iterations == 3


def test_solver_is_deterministic_for_a_seed():
    matrix, _ = spectrum_matrix(hessian_like(seed=7), seed=7)
    first, second = (top_eigenpairs(MatrixOperator(matrix), k=3, tol=1e-5, seed=11) for _ in range(2))
    assert torch.equal(first.values, second.values) and torch.equal(first.vectors, second.vectors)
    assert first.hvps == second.hvps and first.iterations == second.iterations


@pytest.mark.parametrize("kwargs, match", [
    ({"k": 0}, "k"), ({"k": 61}, "k"), ({"tol": 0.0}, "tol"), ({"tol": -1e-3}, "tol"), ({"max_iters": 0}, "max_iters"),
    ({"init": torch.zeros(59, 3, dtype=torch.float64)}, "init"),
    ({"init": torch.zeros(60, dtype=torch.float64)}, "init"),
    ({"init": torch.zeros(60, 11, dtype=torch.float64)}, "init"), ({"max_basis": 12}, "max_basis"),
    ({"init": torch.full((60, 3), math.nan, dtype=torch.float64)}, "init"), ({"guard": -1}, "guard"),
    ({"fresh": torch.zeros(59, 2, dtype=torch.float64)}, "fresh"),
    ({"fresh": torch.full((60, 1), math.inf, dtype=torch.float64)}, "fresh"),
])
def test_solver_bad_input(kwargs, match):
    matrix, _ = spectrum_matrix(hessian_like(60))
    with pytest.raises(ValueError, match=match):
        top_eigenpairs(MatrixOperator(matrix), **kwargs)


# ---------------------------------------------------------------- tracker


def _train_step(model: nn.Module, inputs: Tensor, targets: Tensor) -> None:
    model.zero_grad()
    mse_loss(model(inputs), targets).backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.5 * p.grad
            p.grad = None


def test_tracker_warm_starts_and_resumes_exactly(tmp_path):
    torch.manual_seed(5)
    model = MLP(in_features=8, width=12, depth=2, n_classes=3).double()
    inputs, targets = torch.randn(40, 8, dtype=torch.float64), torch.randint(0, 3, (40,))
    data = chunk_data(inputs, targets, 15)
    tracker = EigenTracker(k=3, tol=1e-4, seed=3)
    first = tracker.measure(model, mse_loss, data)
    expected = np.linalg.eigvalsh(dense_hessian(model, mse_loss, inputs, targets).numpy())[::-1][:3]
    np.testing.assert_allclose(first.values.numpy(), expected, rtol=1e-6)
    torch.save(tracker.state_dict(), tmp_path / "tracker.pt")
    _train_step(model, inputs, targets)
    second = tracker.measure(model, mse_loss, data)
    resumed = EigenTracker(k=1, tol=1.0)  # settings come from the state
    resumed.load_state_dict(torch.load(tmp_path / "tracker.pt", weights_only=True))
    again = resumed.measure(model, mse_loss, data)
    assert again.hvps == second.hvps and torch.equal(again.values, second.values)
    assert torch.equal(again.vectors, second.vectors)
    assert resumed.state_dict()["total_hvps"] == tracker.total_hvps == first.hvps + second.hvps
    assert second.hvps < first.hvps  # the warm start pays


def test_tracker_bad_input():
    with pytest.raises(ValueError, match="k"):
        EigenTracker(k=0)
    with pytest.raises(ValueError, match="tol"):
        EigenTracker(tol=0)
    with pytest.raises(ValueError, match="method"):
        EigenTracker(method="lanczos")
    with pytest.raises(ValueError, match="state"):
        EigenTracker().load_state_dict({"k": 3})
