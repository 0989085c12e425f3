"""Models a user brings: torch.nn.functional losses, attention through scaled_dot_product_attention,
batch norm in train() mode, unused parameters, mismatched outputs and bad step arguments."""
from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samedge.edge import sam_edge
from samedge.errors import ConfigError, ModelError, SamedgeError
from samedge.hessian import EigenTracker, HVPOperator
from samedge.monitor import EdgeMonitor
from samedge.objective import loss_and_grad
from samedge.sam import apply_update, sam_gradient, sam_step
from tests.test_gpu_paths import DEVICES
from tests.test_hessian import dense_hessian, rel_err

pytestmark = pytest.mark.usefixtures("one_thread")


def _mlp(out: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, out)).double()


def _regression(n: int = 8, out: int = 2) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, dtype=torch.float64, generator=g), torch.randn(n, out, dtype=torch.float64, generator=g)


def _products_without_warnings(model: nn.Module, loss_fn, data, method: str, m: int = 3) -> tuple[Tensor, Tensor]:
    """H V on the model's device (CPU data and V move there), returned on the CPU."""
    op = HVPOperator(model, loss_fn, data, method=method)
    V = torch.randn(op.dim, m, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback would warn
        return op.matmat(V).cpu(), V


@pytest.mark.parametrize("loss_fn", [F.mse_loss, F.huber_loss, F.smooth_l1_loss, F.cross_entropy],
                         ids=lambda f: f.__name__)
def test_functional_losses_take_the_batched_path_exactly(loss_fn):
    model = _mlp()
    x, y = _regression()
    if loss_fn is F.cross_entropy:
        y = torch.randint(0, 2, (len(x),))
    hessian = dense_hessian(model, loss_fn, x, y)
    HV, V = _products_without_warnings(model, loss_fn, (x, y), "autograd")
    assert rel_err(HV, hessian @ V) < 1e-12


class _Attention(nn.Module):
    """Token embedding, one attention block of the given kind, a linear read-out per position."""

    def __init__(self, block: str) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.embed = nn.Linear(3, 4)
        if block == "mha":
            self.block = nn.MultiheadAttention(4, 2, dropout=0.0, batch_first=True)
        else:
            self.block = nn.TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.0, batch_first=True)
        self.kind = block
        self.out = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x)
        causal = nn.Transformer.generate_square_subsequent_mask(x.shape[1], device=x.device, dtype=x.dtype)
        if self.kind == "mha":  # need_weights=False: the path through scaled_dot_product_attention
            h = self.block(h, h, h, attn_mask=causal, need_weights=False)[0]
        else:
            h = self.block(h, src_mask=causal, is_causal=True)
        return self.out(h)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["autograd", "double_backprop"])
@pytest.mark.parametrize("block", ["mha", "encoder_layer"])
def test_attention_through_sdpa_has_exact_hvps(block, method, device):
    """The fused SDPA kernels (CPU flash; CUDA flash and memory-efficient, pytorch/pytorch#116350)
    have no double backward: the math backend is chosen inside measurements whatever the device."""
    model = _Attention(block).double()
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(3, 4, 3, dtype=torch.float64, generator=g), torch.randn(3, 4, 2, dtype=torch.float64, generator=g)
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel(SDPBackend.MATH):  # the reference's own double backward
        hessian = dense_hessian(model, F.mse_loss, x, y)
    HV, V = _products_without_warnings(model.to(device), F.mse_loss, (x, y), method)
    assert rel_err(HV, hessian @ V) < 1e-12


def _bn_model() -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2)).double().train()


def _buffers(model: nn.Module) -> list[Tensor]:
    return [b.clone() for b in model.buffers()]


def test_measurements_leave_batch_norm_buffers_alone():
    model, data = _bn_model(), _regression()
    hessian = dense_hessian(model, F.mse_loss, *data)  # of the training loss: batch statistics, as in train()
    before = _buffers(model)
    tracker = EigenTracker(k=2, tol=1e-6)
    for _ in range(2):
        tracker.measure(model, F.mse_loss, data)
    HVPOperator(model, F.mse_loss, data, method="fd").matvec(torch.ones(sum(p.numel() for p in model.parameters()),
                                                                        dtype=torch.float64))
    assert all(torch.equal(a, b) for a, b in zip(before, _buffers(model)))
    HV, V = _products_without_warnings(model, F.mse_loss, data, "autograd")
    assert rel_err(HV, hessian @ V) < 1e-12 and all(torch.equal(a, b) for a, b in zip(before, _buffers(model)))


def test_a_sam_step_updates_batch_norm_once_like_a_plain_step():
    """The gradient at w_t is a training step's (running statistics move once); the perturbed one is not."""
    model, data = _bn_model(), _regression()
    plain = copy.deepcopy(model)
    loss_and_grad(plain, F.mse_loss, data)
    sam_gradient(model, F.mse_loss, data, rho=0.1)
    assert all(torch.equal(a, b) for a, b in zip(_buffers(plain), _buffers(model)))
    assert int(dict(model.named_buffers())["1.num_batches_tracked"]) == 1


class _Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(3, 2).double()
        self.spare = nn.Linear(3, 2).double()

    def forward(self, x: Tensor) -> Tensor:
        return self.used(x)


def _weights(model: nn.Module) -> list[Tensor]:
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("call", [
    lambda m, d: HVPOperator(m, F.mse_loss, d),
    lambda m, d: HVPOperator(m, F.mse_loss, d, method="double_backprop"),
    lambda m, d: EigenTracker().measure(m, F.mse_loss, d),
    lambda m, d: loss_and_grad(m, F.mse_loss, d),
    lambda m, d: sam_step(m, F.mse_loss, d, lr=0.1, rho=0.05),
], ids=["hvp", "hvp_double_backprop", "measure", "loss_and_grad", "sam_step"])
def test_an_unused_trainable_parameter_is_named(call):
    model, data = _Unused(), _regression()
    before = _weights(model)
    with pytest.raises(ModelError, match=r"\['spare.weight', 'spare.bias'\] do not affect the loss"):
        call(model, data)
    assert all(torch.equal(a, b) for a, b in zip(before, _weights(model)))


@pytest.mark.parametrize("call", [
    lambda m, d: loss_and_grad(m, F.mse_loss, d),
    lambda m, d: sam_step(m, F.mse_loss, d, lr=0.1, rho=0.05),
    lambda m, d: HVPOperator(m, F.mse_loss, d),
    lambda m, d: EdgeMonitor(lr=0.1).observe(0, m, F.mse_loss, d),
], ids=["loss_and_grad", "sam_step", "hvp", "monitor"])
def test_an_output_of_another_shape_than_the_targets_is_refused(call):
    """(N, 1) outputs against (N,) targets would broadcast inside F.mse_loss to (N, N)."""
    model = _mlp(out=1)
    x, y = _regression(out=1)
    before = _weights(model)
    with pytest.raises(ModelError, match=r"shape \(8, 1\) does not match targets of shape \(8,\)"):
        call(model, (x, y[:, 0]))
    assert all(torch.equal(a, b) for a, b in zip(before, _weights(model)))
    assert issubclass(ModelError, SamedgeError) and issubclass(ModelError, ValueError)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("name", ["lr", "rho"])
def test_non_finite_lr_or_rho_is_refused_before_any_change(name, bad):
    model, data = _mlp(), _regression()
    before = _weights(model)
    args = {"lr": 0.1, "rho": 0.05, name: bad}
    with pytest.raises(ConfigError, match=name):
        sam_step(model, F.mse_loss, data, **args)
    with pytest.raises(ConfigError, match=name):
        sam_edge(1.0, args["lr"], args["rho"])
    if name == "lr":
        with pytest.raises(ConfigError, match="lr"):
            apply_update(model, torch.ones(sum(p.numel() for p in model.parameters()), dtype=torch.float64), bad)
    assert all(torch.equal(a, b) for a, b in zip(before, _weights(model)))


@pytest.mark.parametrize("step, data", [
    (0, (torch.full((4, 3), math.nan, dtype=torch.float64), torch.zeros(4, 2, dtype=torch.float64))),
    (0, torch.zeros(4, 3)),
    (-1, _regression()),
    (1.5, _regression()),
], ids=["nan_inputs", "one_tensor", "negative_step", "float_step"])
def test_edge_monitor_changes_nothing_on_bad_input(step, data):
    monitor = EdgeMonitor(lr=0.1, rho=0.05, every=1, k=2)
    model = _mlp()
    monitor.observe(0, model, F.mse_loss, _regression())
    state = (monitor.steps, monitor._start, monitor._measuring, len(monitor.rows), monitor.tracker.measurements)
    with pytest.raises(ValueError):
        monitor.observe(step if step != 0 else 1, model, F.mse_loss, data)
    assert (monitor.steps, monitor._start, monitor._measuring, len(monitor.rows),
            monitor.tracker.measurements) == state
