"""The paper's three models and their losses, as ../shared/REFERENCE.md describes them.

Initialisers follow the authors' JAX code (Flax for the image models, Haiku for the
Transformer) so that the Hessian scales at initialisation match theirs.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Std of a unit normal truncated to [-2, 2]; Flax/Haiku divide by it so that a
# "truncated normal with variance s" really has variance s.
TRUNCATION_STD = 0.87962566103423978

def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_scale(init_scale: float) -> None:
    if not (isinstance(init_scale, (int, float)) and math.isfinite(init_scale) and init_scale > 0):
        raise ValueError(f"init_scale must be a positive finite number, got {init_scale!r}")


@torch.no_grad()
def truncated_normal_(tensor: Tensor, std: float) -> Tensor:
    """Normal(0, std^2) truncated at +-2 std (jax/haiku `truncated_normal` convention)."""
    return nn.init.trunc_normal_(tensor, 0.0, std, -2.0 * std, 2.0 * std)


@torch.no_grad()
def glorot_normal_(weight: Tensor, scale: float = 1.0) -> Tensor:
    """Flax `glorot_normal` (variance_scaling(1, fan_avg, truncated_normal)), times `scale`.

    PyTorch layout (out, in, *kernel): fans include the receptive field, as in Flax.
    """
    receptive = math.prod(weight.shape[2:])
    fan_avg = (weight.shape[0] + weight.shape[1]) * receptive / 2
    truncated_normal_(weight, math.sqrt(1.0 / fan_avg) / TRUNCATION_STD)
    return weight.mul_(scale)


def _init_image_model(model: nn.Module, init_scale: float) -> None:
    """Glorot-normal kernels scaled by init_scale, zero biases; LayerNorms keep 1/0."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            glorot_normal_(module.weight, init_scale)
            nn.init.zeros_(module.bias)


class MLP(nn.Module):
    """`depth` ReLU hidden layers of `width`, then a linear layer; inputs are flattened.

    The paper's "depth-four" network is depth=3 hidden layers (2,797,010 parameters).
    """

    def __init__(self, in_features: int = 784, width: int = 1000, depth: int = 3,
                 n_classes: int = 10, init_scale: float = 1.0) -> None:
        super().__init__()
        _check_sizes(in_features=in_features, width=width, depth=depth, n_classes=n_classes)
        _check_scale(init_scale)
        self.in_features = in_features
        layers: list[nn.Module] = []
        sizes = [in_features] + [width] * depth
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)
        _init_image_model(self, init_scale)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or math.prod(x.shape[1:]) != self.in_features:
            raise ValueError(f"MLP expects input of shape (B, {self.in_features}) or (B, ...) "
                             f"with {self.in_features} values per example, got {tuple(x.shape)}")
        return self.net(x.flatten(1))


class CNN(nn.Module):
    """Blocks of [3x3 conv (SAME) -> ReLU -> LayerNorm over channels -> 2x2 max-pool], then linear.

    Input NCHW. The LayerNorm normalises each pixel's channel vector (Flax LayerNorm on
    NHWC), i.e. nn.LayerNorm(C) applied channels-last. The final features are flattened in
    Flax's NHWC order (h, w, c), so a Flax Dense kernel maps onto `head` without permutation.
    """

    def __init__(self, in_channels: int = 3, channels: Sequence[int] = (16, 32),
                 n_classes: int = 10, image_size: int = 32, init_scale: float = 1.0) -> None:
        super().__init__()
        channels = tuple(channels)
        if not channels:
            raise ValueError("channels must name at least one block, got ()")
        _check_sizes(in_channels=in_channels, n_classes=n_classes, image_size=image_size,
                     **{f"channels[{i}]": c for i, c in enumerate(channels)})
        _check_scale(init_scale)
        final_size = image_size // 2 ** len(channels)  # VALID pooling floors
        if final_size < 1:
            raise ValueError(f"image_size {image_size} is too small for {len(channels)} "
                             "2x2 max-pool blocks")
        self.input_shape = (in_channels, image_size, image_size)
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for c_in, c_out in zip((in_channels,) + channels[:-1], channels):
            self.convs.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding="same"))
            self.norms.append(nn.LayerNorm(c_out, eps=1e-6))
        self.head = nn.Linear(channels[-1] * final_size**2, n_classes)
        _init_image_model(self, init_scale)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            expected = ", ".join(map(str, self.input_shape))
            raise ValueError(f"CNN expects input of shape (B, {expected}), got {tuple(x.shape)}")
        for conv, norm in zip(self.convs, self.norms):
            h = norm(F.relu(conv(x)).permute(0, 2, 3, 1))  # channels-last for the LayerNorm
            x = F.max_pool2d(h.permute(0, 3, 1, 2), kernel_size=2, stride=2)
        return self.head(x.permute(0, 2, 3, 1).flatten(1))


class CausalSelfAttention(nn.Module):
    """Haiku MultiHeadAttention with a causal mask: heads of `key_size`, logits / sqrt(key_size).

    Written out (not scaled_dot_product_attention): the CPU SDPA kernel supports neither
    double backward nor forward-mode AD, which the Hessian-vector products need.
    """

    def __init__(self, d_model: int, n_heads: int, key_size: int) -> None:
        super().__init__()
        self.n_heads, self.key_size = n_heads, key_size
        inner = n_heads * key_size
        self.query = nn.Linear(d_model, inner)
        self.key = nn.Linear(d_model, inner)
        self.value = nn.Linear(d_model, inner)
        self.out = nn.Linear(inner, d_model)

    def forward(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape
        q, k, v = (proj(x).view(batch, length, self.n_heads, self.key_size).transpose(1, 2)
                   for proj in (self.query, self.key, self.value))
        logits = q @ k.transpose(-2, -1) / math.sqrt(self.key_size)
        future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
        weights = logits.masked_fill(future, float("-inf")).softmax(dim=-1)
        return self.out((weights @ v).transpose(1, 2).reshape(batch, length, -1))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm residual block: x + attn(LN(x)), then x + MLP(LN(x)) with tanh GELU."""

    def __init__(self, d_model: int, n_heads: int, key_size: int, widening: int) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(d_model, eps=1e-5)
        self.attn = CausalSelfAttention(d_model, n_heads, key_size)
        self.ln_mlp = nn.LayerNorm(d_model, eps=1e-5)
        self.mlp = nn.Sequential(nn.Linear(d_model, widening * d_model),
                                 nn.GELU(approximate="tanh"),
                                 nn.Linear(widening * d_model, d_model))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_attn(x))
        return x + self.mlp(self.ln_mlp(x))


class Transformer(nn.Module):
    """Character language model: a port of the Haiku transformer example without dropout.

    Input int codes (B, T) with T <= seq_len; output logits (B, T, vocab_size). The authors'
    padding mask (code 0) is omitted: ASCII text contains no NUL, so it never masks anything.
    init_scale multiplies every initial weight matrix and embedding (1.0 = the paper).
    """

    def __init__(self, vocab_size: int = 128, seq_len: int = 64, d_model: int = 128,
                 n_layers: int = 6, n_heads: int = 8, key_size: int = 32, widening: int = 4,
                 init_scale: float = 1.0) -> None:
        super().__init__()
        _check_sizes(vocab_size=vocab_size, seq_len=seq_len, d_model=d_model,
                     n_layers=n_layers, n_heads=n_heads, key_size=key_size, widening=widening)
        _check_scale(init_scale)
        self.seq_len = seq_len
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos_embed = nn.Parameter(torch.empty(seq_len, d_model))
        self.blocks = nn.ModuleList(TransformerBlock(d_model, n_heads, key_size, widening)
                                    for _ in range(n_layers))
        self.ln_final = nn.LayerNorm(d_model, eps=1e-5)
        self.head = nn.Linear(d_model, vocab_size)
        self._init(n_layers, init_scale)

    @torch.no_grad()
    def _init(self, n_layers: int, init_scale: float) -> None:
        truncated_normal_(self.embed.weight, 0.02)
        truncated_normal_(self.pos_embed, 0.02)
        for linear in self.blocks.modules():
            if isinstance(linear, nn.Linear):  # Haiku VarianceScaling(2/n_layers, fan_in)
                std = math.sqrt(2.0 / n_layers / linear.in_features) / TRUNCATION_STD
                truncated_normal_(linear.weight, std)
                nn.init.zeros_(linear.bias)
        truncated_normal_(self.head.weight, 1.0 / math.sqrt(self.head.in_features))  # hk.Linear
        nn.init.zeros_(self.head.bias)
        for param in self.parameters():
            if param.dim() >= 2:  # weight matrices and embeddings, not LayerNorm/bias vectors
                param.mul_(init_scale)

    def forward(self, tokens: Tensor) -> Tensor:
        if (tokens.dim() != 2 or not 1 <= tokens.shape[1] <= self.seq_len
                or tokens.is_floating_point() or tokens.is_complex()):
            raise ValueError(f"Transformer expects integer codes of shape (B, T) with "
                             f"T <= {self.seq_len}, got {tuple(tokens.shape)} {tokens.dtype}")
        h = self.embed(tokens.long()) + self.pos_embed[: tokens.shape[1]]
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln_final(h))


def mse_loss(outputs: Tensor, labels: Tensor) -> Tensor:
    """Mean over batch x classes of (outputs - one_hot(labels))^2, no 1/2 factor."""
    if outputs.dim() != 2 or labels.shape != outputs.shape[:1]:
        raise ValueError(f"mse_loss expects outputs (B, C) and labels (B,), got "
                         f"{tuple(outputs.shape)} and {tuple(labels.shape)}")
    # Comparison instead of F.one_hot: stays valid under torch.func transforms.
    classes = torch.arange(outputs.shape[1], device=outputs.device)
    targets = (labels[:, None] == classes).to(outputs.dtype)
    return (outputs - targets).pow(2).mean()


def lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean next-character negative log-likelihood over all (B, T) positions."""
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"lm_loss expects logits (B, T, V) and targets (B, T), got "
                         f"{tuple(logits.shape)} and {tuple(targets.shape)}")
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten().long())


def build_from_config(cls: type[nn.Module], model_cfg: dict) -> nn.Module:
    """cls(**model_cfg), drawn from torch's current RNG; a key cls does not take is a ValueError."""
    allowed = set(inspect.signature(cls).parameters)
    unknown = sorted(set(model_cfg) - allowed)
    if unknown:
        raise ValueError(f"unknown model key(s) {unknown} for {cls.__name__}; allowed: {sorted(allowed)}")
    return cls(**model_cfg)
