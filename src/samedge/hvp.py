"""Hessian-vector products of the full-batch training loss, as a linear operator on flat vectors.

The Hessian is that of the chunk-size-weighted mean loss (objective.py) with respect to the
model's trainable parameters, flattened in the order of
`torch.nn.utils.parameters_to_vector([p for p in model.parameters() if p.requires_grad])`.
"""
from __future__ import annotations

import contextlib
import warnings

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from samedge.objective import (Data, LossFn, as_chunks, checked_loss, chunk_loss, chunk_weights, flat, frozen_state,
                               grad_used, loss_and_grad, named_trainable)

# The first forward-mode product (jvp) imports torch's JVP decompositions, whose import calls the
# deprecated torch.jit.script (torch's code, not ours) and prints a FutureWarning in every run.
# Import it once here with exactly that warning off.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
    import torch._decomp.decompositions_for_jvp  # noqa: F401

METHODS = ("autograd", "double_backprop", "fd")


class HVPOperator:
    """v -> H v for the Hessian H of the full-batch loss of `model` on `data`.

    method "autograd" (exact, the default): several vectors go through one pass as
    forward-over-reverse products vmapped over the vectors (torch.func), the fastest for
    blocks on CPU; a single vector goes through double backprop, the fastest for one vector.
    An operation without a forward-mode rule (F.huber_loss's backward; F.mse_loss's, which
    mutates a zero tangent) switches the operator, silently and for good, to reverse-over-reverse
    products vmapped over the vectors, as exact and still batched; a model that has no vmap rules
    either falls back to double backprop with a warning.
    method "double_backprop" (exact): one reverse pass per vector over the retained graph of
    the first-order gradient, for models whose forward-mode tangents are costly on CPU (measured
    per vector in a block of 10, over one warm gradient, on an idle 2-core machine, 2026-12-01: the
    quick CIFAR CNN 4.2 against 7.6 for the vmapped block, its LayerNorm tangents being chains of
    elementwise ops; the quick language model 2.8 against 2.4). method "fd": central differences
    of gradients with step `fd_eps` along the unit vector, the authors' method, for comparison
    only. Every call leaves the parameters as they were; "fd" restores them bit-exactly. Chunks
    move to the model's device one at a time. Forward passes run in the model's current mode and
    leave its buffers unchanged (objective.frozen_state: batch norm in train() mode uses the
    batch's statistics, the training loss, without updating its running ones). Attention through
    F.scaled_dot_product_attention runs on its math backend here, whose double backward exists on
    every device (the fused CPU and CUDA kernels have none). Every trainable parameter must
    affect the loss (checked once, on the first chunk: one gradient).
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, data: Data, method: str = "autograd",
                 fd_eps: float = 1e-3) -> None:
        if method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
        if not fd_eps > 0:
            raise ValueError(f"fd_eps: expected a positive step, got {fd_eps}")
        self.model, self.loss_fn, self.method, self.fd_eps = model, loss_fn, method, fd_eps
        self.chunks = as_chunks(data)  # validated once (finite, matched lengths); a Chunks passes as is
        self.weights = chunk_weights(self.chunks)
        named = named_trainable(model)
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.dim = sum(p.numel() for p in self.params)
        self.dtype = self.params[0].dtype
        self.device = self.params[0].device
        self.hvps = 0
        self._strategies = ["forward_over_reverse", "reverse_over_reverse"]  # batched, in order of speed
        inputs, targets = self.chunks[0]
        with self._kernels():  # an unused parameter is refused by name before any product
            grad_used(chunk_loss(model, loss_fn, inputs.to(self.device), targets.to(self.device)), named)

    def matvec(self, v: Tensor) -> Tensor:
        return self.matmat(v.reshape(-1, 1)).reshape(-1)

    def matmat(self, vectors: Tensor) -> Tensor:
        """H V for V of shape (dim, m); one pass over the data for all m vectors."""
        if vectors.ndim != 2 or vectors.shape[0] != self.dim:
            raise ValueError(f"vectors: expected shape ({self.dim}, m), got {tuple(vectors.shape)}")
        vectors = vectors.to(self.device, self.dtype)
        with self._kernels():
            out = self._apply(vectors)
        self.hvps += vectors.shape[1]
        return out

    def _kernels(self):
        """Math attention (twice differentiable everywhere) and the model's buffers kept."""
        stack = contextlib.ExitStack()
        stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        stack.enter_context(frozen_state(self.model))
        return stack

    def _apply(self, vectors: Tensor) -> Tensor:
        m = vectors.shape[1]
        if self.method == "fd":
            out = torch.stack([self._fd(vectors[:, j]) for j in range(m)], dim=1)
        else:
            pieces = self._split(vectors.T)  # per parameter: (m, *shape)
            out = None  # the first chunk's product is the sum's storage: no parameter-length zeros or copies
            for weight, (inputs, targets) in zip(self.weights, self.chunks):
                inputs, targets = inputs.to(self.device), targets.to(self.device)
                part = self._exact(inputs, targets, pieces)
                out = part.mul_(weight) if out is None else out.add_(part, alpha=weight)
            out = out.T
        return out

    def as_linear_operator(self) -> LinearOperator:
        """A float64 scipy LinearOperator (for eigsh and the benchmarks)."""
        def apply(x: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(np.asarray(x, dtype=np.float64).reshape(self.dim, -1))
            return self.matmat(x).double().cpu().numpy()

        return LinearOperator((self.dim, self.dim), matvec=apply, matmat=apply, dtype=np.float64)

    def _split(self, rows: Tensor) -> list[Tensor]:
        """(m, dim) -> per parameter (m, *param.shape)."""
        sizes = [p.numel() for p in self.params]
        return [r.reshape(-1, *p.shape) for r, p in zip(rows.split(sizes, dim=1), self.params)]

    def _exact(self, inputs: Tensor, targets: Tensor, pieces: list[Tensor]) -> Tensor:
        while pieces[0].shape[0] > 1 and self._strategies and self.method == "autograd":
            try:
                return getattr(self, "_" + self._strategies[0])(inputs, targets, pieces)
            except torch.OutOfMemoryError:
                raise
            except (RuntimeError, NotImplementedError) as err:  # an op without a forward-mode / vmap rule
                failed = self._strategies.pop(0)
                if not self._strategies:
                    warnings.warn(f"HVPOperator: batched products failed ({failed}: {err}); using double backprop")
        return self._double_backprop(inputs, targets, pieces)

    def _double_backprop(self, inputs: Tensor, targets: Tensor, pieces: list[Tensor]) -> Tensor:
        with torch.enable_grad():
            loss = chunk_loss(self.model, self.loss_fn, inputs, targets)
            grads = grad_used(loss, list(zip(self.names, self.params)), create_graph=True)
            m = pieces[0].shape[0]
            # One backward per vector, the graph kept until the last: faster on CPU than a vmapped
            # backward over the block (is_grads_batched), 2.6 against 5.7 gradients per vector on the CNN.
            return torch.stack([torch.cat([h.reshape(-1) for h in torch.autograd.grad(
                grads, self.params, [v[j] for v in pieces], retain_graph=j < m - 1)]) for j in range(m)])

    def _gradient_fn(self, inputs: Tensor, targets: Tensor):
        def loss(*params: Tensor) -> Tensor:
            outputs = functional_call(self.model, dict(zip(self.names, params)), (inputs,))
            return checked_loss(self.loss_fn, outputs, targets)

        return grad(loss, argnums=tuple(range(len(self.params)))), tuple(p.detach() for p in self.params)

    def _forward_over_reverse(self, inputs: Tensor, targets: Tensor, pieces: list[Tensor]) -> Tensor:
        gradient, primals = self._gradient_fn(inputs, targets)

        def hvp(*tangents: Tensor) -> tuple[Tensor, ...]:
            return jvp(gradient, primals, tangents)[1]

        hv = vmap(hvp)(*pieces)
        return torch.cat([h.reshape(h.shape[0], -1) for h in hv], dim=1)

    def _reverse_over_reverse(self, inputs: Tensor, targets: Tensor, pieces: list[Tensor]) -> Tensor:
        """H v as the vector-Jacobian product of the gradient (H is symmetric), vmapped over v."""
        gradient, primals = self._gradient_fn(inputs, targets)
        product = vjp(gradient, *primals)[1]
        hv = vmap(product)(tuple(pieces))
        # Detached: a train()-mode batch norm's graph still reaches the module's own parameters.
        return torch.cat([h.reshape(h.shape[0], -1) for h in hv], dim=1).detach()

    def _fd(self, v: Tensor) -> Tensor:
        """Central difference (g(w + e u) - g(w - e u)) / (2 e) * ||v||, u = v / ||v||."""
        norm = v.norm()
        if norm == 0:
            return torch.zeros_like(v)
        step = self._split((self.fd_eps / norm * v).reshape(1, -1))
        saved = [p.detach().clone() for p in self.params]
        try:
            grads = []
            for sign in (1.0, -1.0):
                with torch.no_grad():
                    for p, s, d in zip(self.params, saved, step):
                        p.copy_(s + sign * d[0])
                chunks = ((x.to(self.device), y.to(self.device)) for x, y in self.chunks)
                grads.append(flat(loss_and_grad(self.model, self.loss_fn, chunks)[1]))
        finally:
            with torch.no_grad():
                for p, s in zip(self.params, saved):
                    p.copy_(s)
        return (grads[0] - grads[1]) * (norm / (2 * self.fd_eps))
