"""The edge formulas, and Propositions 1-3 checked through the real SAM step on random quadratics."""
import math
from decimal import Decimal, getcontext

import numpy as np
import pandas as pd
import pytest
import torch

from samedge.edge import alpha, edge_ratio, gd_edge, sam_edge
from samedge.sam import sam_step
from tests.quadratic import DUMMY_BATCH, Quadratic, value_loss


def naive_sam_edge(g, lr, rho):
    return g / (2 * rho) * (math.sqrt(1 + 8 * rho / (lr * g)) - 1)


def test_sam_edge_matches_the_papers_formula():
    for g, lr, rho in [(1.0, 0.1, 0.1), (0.03, 0.3, 1.0), (12.0, 0.001, 0.3), (1e-3, 0.5, 0.05)]:
        assert sam_edge(g, lr, rho) == pytest.approx(naive_sam_edge(g, lr, rho), rel=1e-12)


def test_rho_zero_is_exactly_two_over_eta():
    for lr in [0.03, 0.1, 0.3, 1e-4]:
        assert sam_edge(1.7, lr, 0.0) == 2.0 / lr == gd_edge(lr)


def exact_sam_edge(g, lr, rho):
    """The paper's formula in 50-digit decimal arithmetic: the reference for the float version."""
    getcontext().prec = 50
    g, lr, rho = Decimal(g), Decimal(lr), Decimal(rho)
    return float(g / (2 * rho) * ((1 + 8 * rho / (lr * g)).sqrt() - 1))


def test_small_rho_tends_to_two_over_eta_without_cancellation():
    for rho in [1e-3, 1e-6, 1e-9, 1e-12, 1e-15, 1e-20]:
        # the textbook float formula loses every digit here; ours keeps all of them
        assert sam_edge(1.0, 0.1, rho) == pytest.approx(exact_sam_edge(1.0, 0.1, rho), rel=1e-14)
        assert abs(sam_edge(1.0, 0.1, rho) - 20.0) <= 1.01 * 20.0 * 2 * rho / (0.1 * 1.0)  # first-order term


def test_small_gradient_tends_to_sqrt_of_two_g_over_eta_rho():
    for g in [1e-8, 1e-12, 1e-16]:
        assert sam_edge(g, 0.1, 0.3) == pytest.approx(math.sqrt(2 * g / (0.1 * 0.3)), rel=1e-3)
    assert sam_edge(0.0, 0.1, 0.3) == 0.0


def test_edge_ratio_is_figure_one():
    assert edge_ratio(1.0) == pytest.approx((math.sqrt(5) - 1) / 2, rel=1e-15)
    assert edge_ratio(np.inf) == 1.0 and edge_ratio(0.0) == 0.0
    assert edge_ratio(1e12) == pytest.approx(1.0, abs=1e-11)
    assert edge_ratio(1e-12) == pytest.approx(1e-6, rel=1e-5)  # ~ sqrt(alpha)
    g, lr, rho = 0.7, 0.05, 0.2
    assert edge_ratio(alpha(g, lr, rho)) * gd_edge(lr) == pytest.approx(sam_edge(g, lr, rho), rel=1e-14)


def test_vectorised_over_pandas_columns():
    df = pd.DataFrame({"g": [1.0, 0.5, 2.0], "lr": [0.1, 0.1, 0.3], "rho": [0.0, 0.1, 1.0]})
    edges = sam_edge(df["g"], df["lr"], df["rho"])
    assert edges.shape == (3,)
    assert edges[0] == 20.0
    assert edges[2] == pytest.approx(naive_sam_edge(2.0, 0.3, 1.0))


@pytest.mark.parametrize("bad, name", [((1.0, 0.0, 0.1), "lr"), ((1.0, -1.0, 0.1), "lr"),
                                       ((1.0, 0.1, -0.1), "rho"), ((-1.0, 0.1, 0.1), "grad_norm"),
                                       ((1.0, float("nan"), 0.1), "lr")])
def test_bad_arguments_name_themselves(bad, name):
    with pytest.raises(ValueError, match=name):
        sam_edge(*bad)


def loss_change_along_principal(lam1, lr, rho, gen, d=6, g_scale=None):
    """l(w_{t+1}) - l(w_t) for one real SAM step on a quadratic whose gradient is along v1."""
    others = (torch.rand(d - 1, generator=gen, dtype=torch.float64) * 2 - 1) * lam1  # |lambda_i| <= lam1
    q, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64, generator=gen))
    spectrum = torch.cat([torch.tensor([lam1], dtype=torch.float64), others])
    hessian = q @ torch.diag(spectrum) @ q.T
    grad = q[:, 0] * g_scale
    model = Quadratic(hessian, grad, torch.zeros(d, dtype=torch.float64))
    before = model(DUMMY_BATCH[0]).item()
    sam_step(model, value_loss, DUMMY_BATCH, lr, rho)
    return model(DUMMY_BATCH[0]).item() - before


@pytest.mark.parametrize("rho", [0.0, 0.05, 0.3])
def test_propositions_1_and_2_sign_of_loss_change_is_sign_of_norm_minus_edge(rho):
    gen = torch.Generator().manual_seed(1)
    rng = np.random.default_rng(2)
    near = 0
    for draw in range(1000):
        lr = 10 ** rng.uniform(-2, 0)
        g = 10 ** rng.uniform(-2, 1)
        edge = sam_edge(g, lr, rho)
        if draw % 4 == 0:   # within 1e-6 relative of the edge, on either side
            factor = 1 + rng.choice([-1, 1]) * 10 ** rng.uniform(-9, -6)
            near += 1
        else:
            factor = 10 ** rng.uniform(-1, 1)
        lam1 = edge * factor
        change = loss_change_along_principal(lam1, lr, rho, gen, g_scale=g)
        assert np.sign(change) == np.sign(lam1 - edge), (lr, g, rho, factor, change)
    assert near >= 250


def test_proposition_3_every_eigenvalue_in_range_decreases_the_loss():
    gen = torch.Generator().manual_seed(3)
    rng = np.random.default_rng(4)
    for _ in range(1000):
        d = int(rng.integers(2, 9))
        lr, rho = 10 ** rng.uniform(-2, 0), 10 ** rng.uniform(-2, 0)
        grad = torch.randn(d, dtype=torch.float64, generator=gen) * 10 ** rng.uniform(-2, 1)
        g = grad.norm().item()
        low, high = -g / rho, sam_edge(g, lr, rho)
        spectrum = torch.tensor(rng.uniform(low, high, size=d), dtype=torch.float64)
        q, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64, generator=gen))
        hessian = q @ torch.diag(spectrum) @ q.T
        model = Quadratic(hessian, grad, torch.zeros(d, dtype=torch.float64))
        before = model(DUMMY_BATCH[0]).item()
        sam_step(model, value_loss, DUMMY_BATCH, lr, rho)
        assert model(DUMMY_BATCH[0]).item() < before
