"""Every built-in optimizer against its closed-form edge, exactly: on quadratics of several spectra
each update is stable at 0.99 of its edge and unstable at 1.01; the preconditioned operator's
eigenvalues equal a dense float64 computation of P^-1 H's; bad settings are one-line errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from samedge import optimizers
from samedge.edge import sam_edge
from samedge.eigensolver import top_eigenpairs
from samedge.hvp import HVPOperator
from samedge.objective import flat, trainable
from samedge.optimizers.base import Preconditioned
from tests.quadratic import DUMMY_BATCH, Quadratic, value_loss

LR = 0.1
# name, settings, rho: every built-in update (SAM at rho 0 is GD; SAM's rho > 0 edges are
# Propositions 1-3, checked in test_sam.py and test_edge.py).
CASES = [
    ("sam", {}, 0.0),
    ("usam", {}, 0.05),
    ("usam", {}, 1.0),
    ("momentum", {"beta": 0.9}, 0.0),
    ("momentum", {"beta": 0.5, "nesterov": True}, 0.0),
    ("momentum", {"beta": 0.9, "nesterov": True}, 0.0),
    ("adam", {"beta1": 0.9, "beta2": 1 - 1e-9}, 0.0),
    ("adam", {"beta1": 0.5, "beta2": 1 - 1e-9, "eps": 1e-3}, 0.0),
    ("rmsprop", {"alpha": 1 - 1e-9}, 0.0),
]
SPECTRA = [[1.0], [1.0, 0.5, 0.1], [1.0, 0.999, 0.3, 0.05], list(np.geomspace(1.0, 1e-3, 6))]
STEPS = 1000  # at 1.01 of the edge the slowest case (GD's factor 1.02) grows 4e8-fold


def _quadratic(spectrum: list[float], top: float, precond: torch.Tensor, gen: torch.Generator) -> Quadratic:
    """1/2 w^T H w with P^-1/2 H P^-1/2 = Q diag(spectrum * top) Q^T (P = I: H itself)."""
    d = len(spectrum)
    q, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64, generator=gen))
    inner = q @ torch.diag(torch.tensor(spectrum, dtype=torch.float64) * top) @ q.T
    root = precond.sqrt()
    hessian = root[:, None] * inner * root[None, :]
    w0 = 1e-6 * torch.randn(d, dtype=torch.float64, generator=gen)
    return Quadratic((hessian + hessian.T) / 2, torch.zeros(d, dtype=torch.float64), w0)


def _steady_state(opt: optimizers.Optimizer, model: nn.Module, v0: torch.Tensor) -> None:
    """Adam/RMSprop far into training: bias corrections 1, second moment v0 (frozen by beta2 ~ 1)."""
    (p,) = trainable(model)
    if opt.name == "adam":
        opt.torch.state[p] = {"step": torch.tensor(1e12), "exp_avg": torch.zeros_like(p), "exp_avg_sq": v0.clone()}
    elif opt.name == "rmsprop":
        opt.torch.state[p] = {"step": torch.tensor(1e12), "square_avg": v0.clone()}


@pytest.mark.parametrize("spectrum", SPECTRA, ids=lambda s: f"d{len(s)}")
@pytest.mark.parametrize("name,settings,rho", CASES, ids=lambda c: str(c))
def test_stable_below_the_edge_unstable_above(name, settings, rho, spectrum):
    gen = torch.Generator().manual_seed(len(spectrum))
    for factor, stable in ((0.99, True), (1.01, False)):
        opt = optimizers.build({"name": name, **settings}, LR, rho)
        v0 = torch.rand(len(spectrum), dtype=torch.float64, generator=gen) + 0.5
        eps = opt.settings.get("eps", 0.0)
        precond = v0.sqrt() + eps if opt.name in ("adam", "rmsprop") else torch.ones(len(spectrum), dtype=torch.float64)
        model = _quadratic(spectrum, factor * opt.edge(0.0), precond, gen)
        opt.bind(model)
        _steady_state(opt, model, v0)
        start = float(model.w.detach().norm())
        for _ in range(STEPS):
            opt.update(model, opt.gradients(model, value_loss, DUMMY_BATCH))
            grown = float(model.w.detach().norm()) / start
            if grown > 1e3:  # unstable; stop before Adam's second moment catches up and stabilises it
                break
        assert (grown < 1.0) if stable else (grown > 1e3), (factor, grown)


def test_closed_forms():
    assert optimizers.build({"name": "sam"}, 0.2, 0.0).edge(3.0) == pytest.approx(10.0)
    assert optimizers.build({"name": "sam"}, 0.2, 0.1).edge(3.0) == sam_edge(3.0, 0.2, 0.1)
    usam = optimizers.build({"name": "usam"}, 0.2, 0.1)
    assert usam.edge(0.0) == pytest.approx((math.sqrt(1 + 8 * 0.1 / 0.2) - 1) / (2 * 0.1), rel=1e-14)
    assert optimizers.build({"name": "adam"}, 0.01).edge(0.0) == pytest.approx(3800.0)  # 38/eta
    assert optimizers.build({"name": "momentum", "beta": 0.0, "nesterov": True}, 0.5).edge(0.0) == 4.0


def _mlp(gen: torch.Generator) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(16, 3, dtype=torch.float64, generator=gen)
    return model, (x, torch.randn(16, 2, dtype=torch.float64, generator=gen))


def _mse(out, y):
    return ((out - y) ** 2).sum(1).mean()


@pytest.mark.parametrize("name", ["adam", "rmsprop"])
def test_preconditioned_operator_matches_dense_and_torch(name):
    """P^-1/2 H P^-1/2's top eigenvalues = dense eig(P^-1 H) to 1e-8; P is the denominator torch uses."""
    gen = torch.Generator().manual_seed(1)
    model, batch = _mlp(gen)
    opt = optimizers.build({"name": name}, 0.01)
    opt.bind(model)
    for _ in range(3):
        opt.update(model, opt.gradients(model, _mse, batch))
    grads = opt.gradients(model, _mse, batch)
    precond = opt.preconditioner(model, grads)
    op = HVPOperator(model, _mse, batch)
    dense = op.matmat(torch.eye(op.dim, dtype=torch.float64))
    exact = np.sort(np.linalg.eigvals((dense / precond[:, None]).numpy()).real)[::-1][:3]
    found = top_eigenpairs(Preconditioned(op, precond), k=3, tol=1e-12, max_iters=200).values.numpy()
    np.testing.assert_allclose(found, exact, rtol=1e-8, atol=1e-10)
    before = flat(trainable(model)).detach().clone()
    if name == "adam":  # the step torch takes is lr * m_hat / P with this P
        m = opt.flat_state(model, "exp_avg")[0] * 0.9 + 0.1 * grads.grad
        expected = 0.01 * m / (1 - 0.9 ** 4) / precond
    else:
        expected = 0.01 * grads.grad / precond
    opt.update(model, grads)
    np.testing.assert_allclose((before - flat(trainable(model)).detach()).numpy(), expected.numpy(), rtol=1e-10)


def test_edge_monitor_view_of_torch_adam_reads_its_state():
    gen = torch.Generator().manual_seed(2)
    model, batch = _mlp(gen)
    own = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.99), eps=1e-6)
    ours = optimizers.build({"name": "adam", "beta1": 0.8, "beta2": 0.99, "eps": 1e-6}, 0.01)
    twin = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    twin.load_state_dict(model.state_dict())
    ours.bind(twin)
    for _ in range(3):
        own.zero_grad()
        _mse(model(batch[0]), batch[1]).backward()
        own.step()
        ours.update(twin, ours.gradients(twin, _mse, batch))
    view = optimizers.get_optimizer("adam").from_torch(own)
    assert view.edge(0.0) == ours.edge(0.0) == pytest.approx(2 * 1.8 / (0.01 * 0.2))
    torch.testing.assert_close(view.preconditioner(model, view.gradients(model, _mse, batch)),
                               ours.preconditioner(twin, ours.gradients(twin, _mse, batch)), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="weight_decay"):
        optimizers.get_optimizer("adam").from_torch(torch.optim.Adam(model.parameters(), weight_decay=0.1))


@pytest.mark.parametrize("block,rho,message", [
    ({"name": "momentum", "beta": 1.0}, 0.0, "optimizer.beta (momentum): 1.0 is greater than or equal to the maximum of 1"),
    ({"name": "momentum", "beta": -0.1}, 0.0, "optimizer.beta (momentum): -0.1 is less than the minimum of 0"),
    ({"name": "adam", "eps": 0.0}, 0.0, "optimizer.eps (adam): 0.0 is less than or equal to the minimum of 0"),
    ({"name": "lion"}, 0.0, "unknown optimizer 'lion'"),
    ({"name": "adam", "rho": 0.1}, 0.0, "Additional properties are not allowed ('rho' was unexpected)"),
    ({"name": "rmsprop"}, 0.1, "optimizer 'rmsprop' has no rho"),
])
def test_bad_settings_are_one_line(block, rho, message):
    with pytest.raises(optimizers.OptimizerError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        optimizers.build(block, 0.1, rho)
    assert "\n" not in str(info.value)


def test_labels_round_trip_and_keep_sam_names():
    assert optimizers.label({"name": "sam"}) == "" and optimizers.label(None) == ""
    for block in ({"name": "momentum", "beta": 0.5, "nesterov": True}, {"name": "adam", "eps": 1e-6}, {"name": "usam"}):
        text = optimizers.label(block)
        assert optimizers.complete(optimizers.parse_label(text)) == optimizers.complete(block)
    assert optimizers.label({"name": "adam", "eps": 1e-6}) == "adam+eps=1e-06"


def test_a_users_optimizer_is_one_file_named_in_params(tmp_path, repo_root):
    """examples/ema_momentum.py, registered as params.yaml registers it: built, labelled, and
    stable at 0.99 of its edge, unstable at 1.01, like the built-in ones."""
    optimizers.register_user_optimizers({"optimizers": {"ema": {"module": "examples/ema_momentum.py"}}}, repo_root)
    assert optimizers.label({"name": "ema", "beta": 0.5}) == "ema+beta=0.5"
    gen = torch.Generator().manual_seed(0)
    for factor, stable in ((0.99, True), (1.01, False)):
        opt = optimizers.build({"name": "ema", "beta": 0.5}, LR)
        model = _quadratic([1.0, 0.3], factor * opt.edge(0.0), torch.ones(2, dtype=torch.float64), gen)
        opt.bind(model)
        start = float(model.w.detach().norm())
        for _ in range(STEPS):
            opt.update(model, opt.gradients(model, value_loss, DUMMY_BATCH))
        assert (float(model.w.detach().norm()) / start < 1.0) == stable
    with pytest.raises(optimizers.OptimizerError, match="a built-in optimizer has this name"):
        optimizers.register_user_optimizers({"optimizers": {"adam": {"module": "examples/ema_momentum.py"}}})
    bad = tmp_path / "bad.py"
    bad.write_text("OPTIMIZER = 3\n")
    optimizers.register_user_optimizers({"optimizers": {"bad": {"module": str(bad)}}})
    with pytest.raises(optimizers.OptimizerError, match="defines no OPTIMIZER"):
        optimizers.get_optimizer("bad")
