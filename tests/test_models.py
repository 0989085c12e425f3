"""Model facts: parameter counts, initialisers, causal mask, LayerNorm axis, losses, errors."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from samedge.models import CNN, MLP, TRUNCATION_STD, Transformer, lm_loss, mse_loss
from samedge.tasks import get_task


def build_model(task: str, cfg: dict) -> nn.Module:
    return get_task(task).build_model(cfg)


def loss_for(task: str):
    return get_task(task).loss

SMALL_CFG = {
    "mnist": {"in_features": 12, "width": 7, "depth": 2, "n_classes": 3},
    "cifar10": {"in_channels": 2, "channels": [3, 4], "n_classes": 3, "image_size": 8},
    "shakespeare": {"vocab_size": 11, "seq_len": 6, "d_model": 8, "n_layers": 2, "n_heads": 2,
                    "key_size": 3, "widening": 2},
}


def small_input(task: str, batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    if task == "mnist":
        return torch.randn(batch, 1, 3, 4), torch.randint(3, (batch,))
    if task == "cifar10":
        return torch.randn(batch, 2, 8, 8), torch.randint(3, (batch,))
    codes = torch.randint(11, (batch, 6))
    return codes, torch.randint(11, (batch, 6))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def linear_count(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


# ---- parameter counts and shapes -------------------------------------------------------

def test_paper_mlp_has_2797010_parameters():
    model = MLP()
    assert n_params(model) == 2_797_010
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_paper_cnn_parameter_count_and_shape():
    model = CNN()
    convs = linear_count(3 * 9, 16) + linear_count(16 * 9, 32)
    norms = 2 * 16 + 2 * 32
    head = linear_count(8 * 8 * 32, 10)  # 32 -> 16 -> 8 after two pools
    assert n_params(model) == convs + norms + head == 25_674
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert CNN(in_channels=1, image_size=28)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_paper_transformer_parameter_count_and_shape():
    vocab, seq, d, layers, heads, key, widen = 128, 64, 128, 6, 8, 32, 4
    model = Transformer()
    per_layer = (2 * 2 * d  # two LayerNorms
                 + 3 * linear_count(d, heads * key) + linear_count(heads * key, d)
                 + linear_count(d, widen * d) + linear_count(widen * d, d))
    expected = vocab * d + seq * d + layers * per_layer + 2 * d + linear_count(d, vocab)
    assert n_params(model) == expected == 1_626_496
    assert model(torch.randint(128, (2, 64))).shape == (2, 64, 128)
    assert model(torch.randint(128, (2, 10))).shape == (2, 10, 128)  # shorter prefix allowed


# ---- initialisers ----------------------------------------------------------------------

def check_truncated(weight: torch.Tensor, param_std: float) -> None:
    """Samples of N(0, param_std^2) truncated at +-2 param_std."""
    w = weight.detach().double()
    assert w.abs().max() <= 2 * param_std * (1 + 1e-6)
    assert w.std().item() == pytest.approx(param_std * TRUNCATION_STD, rel=0.03)
    assert abs(w.mean().item()) < 0.05 * param_std


def glorot_param_std(fan_in: int, fan_out: int) -> float:
    return math.sqrt(2.0 / (fan_in + fan_out)) / TRUNCATION_STD


@pytest.mark.parametrize("scale", [1.0, 0.8])
def test_mlp_glorot_normal_init(scale):
    torch.manual_seed(0)
    model = MLP(in_features=784, width=1000, depth=2, init_scale=scale)
    first, hidden, out = (m for m in model.modules() if isinstance(m, nn.Linear))
    check_truncated(first.weight, scale * glorot_param_std(784, 1000))
    check_truncated(hidden.weight, scale * glorot_param_std(1000, 1000))
    assert out.weight.abs().max() <= 2 * scale * glorot_param_std(1000, 10)
    assert all((m.bias == 0).all() for m in (first, hidden, out))


def test_cnn_glorot_normal_init_uses_receptive_field():
    torch.manual_seed(0)
    model = CNN(channels=(64, 128), init_scale=0.9)
    conv = model.convs[1]  # 64 -> 128, 73,728 weights
    check_truncated(conv.weight, 0.9 * glorot_param_std(64 * 9, 128 * 9))
    assert all((c.bias == 0).all() for c in model.convs) and (model.head.bias == 0).all()
    assert all((n.weight == 1).all() and (n.bias == 0).all() for n in model.norms)


def test_init_scale_multiplies_the_same_draw():
    for cls, kwargs in ((MLP, SMALL_CFG["mnist"]), (CNN, SMALL_CFG["cifar10"]),
                        (Transformer, SMALL_CFG["shakespeare"])):
        torch.manual_seed(3)
        base = cls(**kwargs)
        torch.manual_seed(3)
        scaled = cls(**kwargs, init_scale=0.8)
        for (name, p), q in zip(base.named_parameters(), scaled.parameters()):
            factor = 0.8 if p.dim() >= 2 else 1.0  # biases 0, LayerNorm scale/offset untouched
            torch.testing.assert_close(q, factor * p, msg=name)


def test_transformer_haiku_init():
    torch.manual_seed(0)
    layers = 6
    model = Transformer(n_layers=layers)
    block = model.blocks[0]
    for linear in (block.attn.query, block.attn.out, block.mlp[0], block.mlp[2]):
        check_truncated(linear.weight, math.sqrt(2 / layers / linear.in_features) / TRUNCATION_STD)
    check_truncated(model.embed.weight, 0.02)
    check_truncated(model.pos_embed, 0.02)
    check_truncated(model.head.weight, 1 / math.sqrt(128))
    biases = [m.bias for m in model.modules() if isinstance(m, nn.Linear)]
    assert all((b == 0).all() for b in biases)
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 2 * layers + 1
    assert all(n.eps == 1e-5 and (n.weight == 1).all() and (n.bias == 0).all() for n in norms)


def test_build_model_is_deterministic_under_a_seed():
    for task, cfg in SMALL_CFG.items():
        torch.manual_seed(7)
        a = build_model(task, cfg)
        torch.manual_seed(7)
        b = build_model(task, cfg)
        for p, q in zip(a.parameters(), b.parameters()):
            assert torch.equal(p, q)


# ---- forward semantics -----------------------------------------------------------------

def test_transformer_is_causal():
    torch.manual_seed(0)
    model = Transformer(**SMALL_CFG["shakespeare"]).double()
    codes = torch.randint(11, (3, 6))
    logits = model(codes)
    for t in range(6):
        changed = codes.clone()
        changed[:, t] = (changed[:, t] + 1) % 11
        new = model(changed)
        torch.testing.assert_close(new[:, :t], logits[:, :t], rtol=0, atol=1e-12)
        assert (new[:, t] - logits[:, t]).abs().amax(dim=-1).min() > 1e-6


def test_cnn_layernorm_over_channels_only_and_nhwc_flatten():
    torch.manual_seed(0)
    model = CNN(**SMALL_CFG["cifar10"]).double()
    with torch.no_grad():  # non-trivial LayerNorm affine parameters
        for norm in model.norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_()
    x = torch.randn(5, 2, 8, 8, dtype=torch.float64)
    h = x
    for conv, norm in zip(model.convs, model.norms):
        h = F.relu(conv(h))
        mean = h.mean(dim=1, keepdim=True)  # statistics over channels, per pixel
        var = h.var(dim=1, unbiased=False, keepdim=True)
        h = (h - mean) / torch.sqrt(var + 1e-6)
        h = h * norm.weight[:, None, None] + norm.bias[:, None, None]
        h = F.max_pool2d(h, 2, 2)
    expected = model.head(h.permute(0, 2, 3, 1).reshape(5, -1))  # Flax NHWC flatten
    torch.testing.assert_close(model(x), expected, rtol=1e-12, atol=1e-12)


def test_mlp_flattens_images_like_vectors():
    model = MLP(**SMALL_CFG["mnist"])
    x = torch.randn(4, 1, 3, 4)
    torch.testing.assert_close(model(x), model(x.reshape(4, 12)))


@pytest.mark.parametrize("task", list(SMALL_CFG))
def test_float64_forward_and_double_backward(task):
    torch.manual_seed(0)
    model = build_model(task, SMALL_CFG[task]).double()
    x, y = small_input(task)
    if x.is_floating_point():
        x = x.double()
    loss = loss_for(task)(model(x), y)
    assert loss.dtype == torch.float64 and loss.dim() == 0
    params = list(model.parameters())
    grads = torch.autograd.grad(loss, params, create_graph=True)
    hvp = torch.autograd.grad(sum(g.sum() for g in grads), params)  # Hessian times ones
    assert all(torch.isfinite(h).all() for h in hvp)


def test_transformer_supports_forward_over_reverse():
    torch.manual_seed(0)
    model = Transformer(**SMALL_CFG["shakespeare"]).double()
    params = {k: v.detach() for k, v in model.named_parameters()}
    x, y = small_input("shakespeare")

    def loss(p):
        return lm_loss(torch.func.functional_call(model, p, (x,)), y)

    tangent = {k: torch.randn_like(v) for k, v in params.items()}
    _, hvp = torch.func.jvp(torch.func.grad(loss), (params,), (tangent,))
    grads = torch.autograd.grad(
        loss(dict(model.named_parameters())), list(model.parameters()), create_graph=True)
    ref = torch.autograd.grad(sum((g * tangent[k]).sum() for g, k in zip(grads, params)),
                              list(model.parameters()))
    for r, k in zip(ref, params):
        torch.testing.assert_close(hvp[k], r, rtol=1e-10, atol=1e-12)


# ---- losses ----------------------------------------------------------------------------

def test_mse_loss_by_hand():
    outputs = torch.tensor([[0.5, -1.0, 2.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([2, 0])
    # row 1 vs (0, 0, 1): 0.25 + 1 + 1; row 2 vs (1, 0, 0): 0; mean over 6 entries
    assert mse_loss(outputs, labels).item() == pytest.approx(2.25 / 6, rel=1e-15)


def test_lm_loss_by_hand():
    logits = torch.zeros(2, 3, 4, dtype=torch.float64)
    logits[0, 0, 1] = math.log(3.0)  # p(target 1) = 3/6
    targets = torch.tensor([[1, 2, 3], [0, 0, 0]])
    expected = (math.log(2.0) + 5 * math.log(4.0)) / 6
    assert lm_loss(logits, targets).item() == pytest.approx(expected, rel=1e-14)


def test_loss_for_tasks():
    assert loss_for("mnist") is mse_loss and loss_for("cifar10") is mse_loss
    assert loss_for("shakespeare") is lm_loss


# ---- bad input -------------------------------------------------------------------------

def test_unknown_task_and_key():
    with pytest.raises(ValueError, match="imagenet"):
        build_model("imagenet", {})
    with pytest.raises(ValueError, match="imagenet"):
        loss_for("imagenet")
    with pytest.raises(ValueError, match="n_hidden"):
        build_model("mnist", {"n_hidden": 3})


@pytest.mark.parametrize("task,key,value", [
    ("mnist", "width", 0), ("cifar10", "channels", [16, -1]), ("shakespeare", "n_heads", 2.5),
    ("mnist", "init_scale", 0.0)])
def test_bad_sizes(task, key, value):
    with pytest.raises(ValueError, match=key):
        build_model(task, {**SMALL_CFG[task], key: value})


def test_mismatched_shapes_name_the_expected_shape():
    with pytest.raises(ValueError, match=r"\(B, 12\)"):
        MLP(**SMALL_CFG["mnist"])(torch.zeros(2, 13))
    with pytest.raises(ValueError, match=r"\(B, 2, 8, 8\)"):
        CNN(**SMALL_CFG["cifar10"])(torch.zeros(2, 2, 8, 9))
    model = Transformer(**SMALL_CFG["shakespeare"])
    with pytest.raises(ValueError, match="T <= 6"):
        model(torch.zeros(2, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="integer codes"):
        model(torch.zeros(2, 6))
    with pytest.raises(ValueError, match="labels"):
        mse_loss(torch.zeros(3, 10), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        lm_loss(torch.zeros(3, 5, 10), torch.zeros(3, 4, dtype=torch.long))
