"""The SAM step (eq. 1) and the chunked full-batch objective it runs on."""
import pytest
import torch
from torch import nn

from samedge.models import MLP, mse_loss
from samedge.objective import chunk_data, loss_and_grad, loss_value
from samedge.sam import apply_update, sam_gradient, sam_step
from tests.quadratic import DUMMY_BATCH, Quadratic, value_loss


def tiny_mlp_batch(n=37, seed=0):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = MLP(in_features=12, width=9, depth=2).double()
    x = torch.randn(n, 12, dtype=torch.float64, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    return model, x, y


def flat_params(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_step_on_a_quadratic_matches_the_hand_computed_step():
    hessian = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    b = torch.tensor([0.3, -0.2], dtype=torch.float64)
    w0 = torch.tensor([1.0, -2.0], dtype=torch.float64)
    lr, rho = 0.1, 0.05
    g = hessian @ w0 + b
    w_adv = w0 + rho * g / g.norm()
    expected = w0 - lr * (hessian @ w_adv + b)
    model = Quadratic(hessian, b, w0)
    result = sam_step(model, value_loss, DUMMY_BATCH, lr, rho)
    torch.testing.assert_close(model.w.detach(), expected, rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(result.grad, g, rtol=1e-15, atol=0)
    torch.testing.assert_close(result.sam_grad, hessian @ w_adv + b, rtol=1e-15, atol=1e-16)
    assert result.grad_norm == pytest.approx(g.norm().item(), rel=1e-15)
    assert result.loss == pytest.approx((0.5 * w0 @ hessian @ w0 + b @ w0).item(), rel=1e-15)


def test_step_on_a_tiny_mlp_matches_a_hand_written_step_with_torch_func():
    model, x, y = tiny_mlp_batch()
    lr, rho = 0.2, 0.1
    names = [n for n, _ in model.named_parameters()]
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}

    def loss_at(params):
        return mse_loss(torch.func.functional_call(model, params, (x,)), y)

    g = torch.func.grad(loss_at)(w0)
    norm = torch.sqrt(sum((g[n] ** 2).sum() for n in names))
    g_adv = torch.func.grad(loss_at)({n: w0[n] + rho * g[n] / norm for n in names})
    expected = torch.cat([(w0[n] - lr * g_adv[n]).reshape(-1) for n in names])
    result = sam_step(model, mse_loss, (x, y), lr, rho)
    torch.testing.assert_close(flat_params(model), expected, rtol=1e-13, atol=1e-15)
    assert result.grad_norm == pytest.approx(norm.item(), rel=1e-13)


def test_weights_are_restored_bit_exactly_after_the_ascent_gradient():
    model, x, y = tiny_mlp_batch()
    before = flat_params(model).clone()
    sam_gradient(model, mse_loss, (x, y), rho=0.37)
    assert torch.equal(flat_params(model), before)


def test_rho_zero_is_gd_and_costs_one_gradient():
    model, x, y = tiny_mlp_batch()
    calls = []

    def counting_loss(out, tgt):
        calls.append(1)
        return mse_loss(out, tgt)

    before = flat_params(model).clone()
    result = sam_step(model, counting_loss, (x, y), lr=0.5, rho=0.0)
    assert len(calls) == 1
    assert result.sam_grad is result.grad
    torch.testing.assert_close(flat_params(model), before - 0.5 * result.grad, rtol=0, atol=1e-15)
    calls.clear()
    sam_gradient(model, counting_loss, (x, y), rho=0.1)
    assert len(calls) == 2


def test_chunked_full_batch_equals_unchunked_in_float64():
    model, x, y = tiny_mlp_batch(n=103)
    loss_full, grad_full = loss_and_grad(model, mse_loss, (x, y))
    for size in [1, 10, 50, 103, 1000]:
        loss_c, grad_c = loss_and_grad(model, mse_loss, chunk_data(x, y, size))
        assert loss_c.item() == pytest.approx(loss_full.item(), rel=1e-10)
        for a, b in zip(grad_c, grad_full):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)
        assert loss_value(model, mse_loss, chunk_data(x, y, size)).item() == pytest.approx(loss_full.item(), rel=1e-10)
    whole = sam_gradient(model, mse_loss, (x, y), rho=0.2)
    chunked = sam_gradient(model, mse_loss, chunk_data(x, y, 17), rho=0.2)
    torch.testing.assert_close(chunked.sam_grad, whole.sam_grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("lr, rho, name", [(0.0, 0.1, "lr"), (-0.1, 0.1, "lr"), (0.1, -0.5, "rho"),
                                           (float("nan"), 0.1, "lr")])
def test_bad_step_arguments_name_themselves(lr, rho, name):
    model, x, y = tiny_mlp_batch()
    before = flat_params(model).clone()
    with pytest.raises(ValueError, match=name):
        sam_step(model, mse_loss, (x, y), lr, rho)
    assert torch.equal(flat_params(model), before)


def test_nan_in_a_batch_and_mismatched_shapes_are_clear_errors():
    model, x, y = tiny_mlp_batch()
    x_bad = x.clone()
    x_bad[3, 4] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        sam_step(model, mse_loss, (x_bad, y), 0.1, 0.1)
    with pytest.raises(ValueError, match="targets"):
        sam_step(model, mse_loss, (x, y[:-1]), 0.1, 0.1)
    with pytest.raises(ValueError, match="chunk_size"):
        chunk_data(x, y, 0)
    with pytest.raises(ValueError, match="data"):
        loss_and_grad(model, mse_loss, [])


def test_apply_update_is_plain_sgd():
    model = nn.Linear(3, 2).double()
    before = flat_params(model).clone()
    direction = torch.arange(8, dtype=torch.float64)
    apply_update(model, direction, 0.25)
    torch.testing.assert_close(flat_params(model), before - 0.25 * direction, rtol=0, atol=1e-15)


# ---------------------------------------------------------------- the library API refuses bad input before any change
def _refused(match, call):
    model, x, y = tiny_mlp_batch()
    before = flat_params(model).clone()
    with pytest.raises(ValueError, match=match):
        call(model, x, y)
    assert torch.equal(flat_params(model), before)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_targets_are_refused(bad):
    def call(model, x, y):
        targets = torch.nn.functional.one_hot(y, 10).double()
        targets[5, 2] = bad
        sam_step(model, lambda out, t: ((out - t) ** 2).mean(), (x, targets), 0.1, 0.1)
    _refused("targets.*NaN or Inf", call)


def test_a_list_of_two_tensors_is_refused_as_ambiguous():
    _refused("ambiguous", lambda model, x, y: sam_step(model, mse_loss, [x, y], 0.1, 0.1))
    _refused("pair", lambda model, x, y: sam_step(model, mse_loss, [(x, y), x], 0.1, 0.1))


def test_a_model_without_trainable_parameters_is_refused():
    model, x, y = tiny_mlp_batch()
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        sam_step(model, mse_loss, (x, y), 0.1, 0.1)
    with pytest.raises(ValueError, match="no trainable parameters"):
        apply_update(model, torch.zeros(0, dtype=torch.float64), 0.1)


@pytest.mark.parametrize("delta", [-1, 1])
def test_apply_update_refuses_a_direction_of_the_wrong_length(delta):
    n = sum(p.numel() for p in tiny_mlp_batch()[0].parameters())
    _refused("direction", lambda model, x, y: apply_update(model, torch.ones(n + delta, dtype=torch.float64), 0.1))


def test_chunks_are_validated_once_and_reused_without_checks(monkeypatch):
    """chunk_data validates when it builds the chunks; a step on them runs no finiteness check
    (a host-device sync on CUDA)."""
    model, x, y = tiny_mlp_batch()
    chunks = chunk_data(x, y, 10)
    calls = []
    monkeypatch.setattr(torch, "isfinite", lambda t: calls.append(1) or torch.ones((), dtype=torch.bool))
    sam_step(model, mse_loss, chunks, 0.1, 0.1)
    assert calls == []


def test_a_graphed_step_refuses_a_cpu_model():
    """The CUDA-graph step itself (bit-equal to the eager one) is checked on the GPU by benchmarks/gpu.py."""
    from samedge.sam import GraphedSamGradient
    model, x, y = tiny_mlp_batch()
    with pytest.raises(ValueError, match="CUDA"):
        GraphedSamGradient(model, mse_loss, (x, y), 0.1)
