"""Which data each training step sees: the chunked full batch (the image tasks, as in the paper),
the step's minibatch of examples (any task of examples at an integer train.batch_size: the
paper's open question of SAM at intermediate batch sizes), or the step's minibatch of character
crops (the language model). A pure function of the step, so a resumed run sees exactly the
batches an uninterrupted one would."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from samedge.data import lm_crops, load_task
from samedge.objective import Batch, chunk_data
from samedge.tasks import get_task


class BatchSource(Protocol):
    def batch(self, step: int) -> Batch | list[Batch]: ...


class FullBatch:
    """Every step uses the whole training set, split in chunks to bound memory."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, chunk_size: int | None) -> None:
        self.chunks = chunk_data(inputs, targets, chunk_size)

    def batch(self, step: int) -> list[Batch]:
        return self.chunks


class Minibatches:
    """Shuffled minibatches of a set of examples without replacement, reshuffled every epoch from
    (seed, epoch); the last partial batch of an epoch is dropped, so every step's batch has the
    same size (and the same curvature scale). Each batch is chunked like a full batch."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int, seed: int,
                 chunk_size: int | None) -> None:
        if batch_size > len(inputs):
            raise ValueError(f"train.batch_size: {batch_size} is more than the {len(inputs)} training examples")
        self.inputs, self.targets, self.batch_size, self.seed = inputs, targets, batch_size, seed
        self.chunk_size = chunk_size
        self.per_epoch = len(inputs) // batch_size
        self._epoch, self._order = -1, None

    def batch(self, step: int) -> list[Batch]:
        epoch, index = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order, self._epoch = torch.randperm(len(self.inputs), generator=gen).to(self.inputs.device), epoch
        rows = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        return chunk_data(self.inputs[rows], self.targets[rows], self.chunk_size)


class CropMinibatches:
    """Shuffled non-overlapping crops of the corpus, reshuffled every epoch from (seed, epoch)."""

    def __init__(self, codes: torch.Tensor, seq_len: int, batch_size: int, seed: int,
                 device: torch.device) -> None:
        self.codes, self.seq_len, self.batch_size = codes, seq_len, batch_size
        self.seed, self.device = seed, device
        n_crops = len(codes) // (seq_len + 1)
        if n_crops < batch_size:
            raise ValueError(f"train.batch_size: {batch_size} is more than the {n_crops} crops of "
                             f"{seq_len + 1} characters in the training text")
        self.per_epoch = n_crops // batch_size
        self._epoch, self._crops = -1, None

    def batch(self, step: int) -> Batch:
        epoch, index = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            inputs, targets = lm_crops(self.codes, self.seq_len, gen)
            self._crops, self._epoch = (inputs.to(self.device), targets.to(self.device)), epoch
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self._crops[0][rows], self._crops[1][rows]


def example_batches(inputs: torch.Tensor, targets: torch.Tensor, cfg: dict) -> FullBatch | Minibatches:
    """A set of examples as train.batch_size asks: null, one chunked full batch; an integer, minibatches."""
    train = cfg["train"]
    if train["batch_size"] is None:
        return FullBatch(inputs, targets, train["chunk_size"])
    return Minibatches(inputs, targets, train["batch_size"], cfg["seed"], train["chunk_size"])


def prepared_batches(task: str, cfg: dict, data_dir: Path, device: torch.device) -> FullBatch | Minibatches:
    """The prepared training set of `task` (a prefix of data.n_train examples) in example_batches."""
    data = load_task(task, data_dir, cfg["data"]["n_train"])
    return example_batches(data.x_train.to(device), data.y_train.to(device), cfg)


def batch_source(task: str, cfg: dict, data_dir: Path, device: torch.device) -> BatchSource:
    """The schedule of batches the run config of a registered task asks for."""
    return get_task(task).batches(cfg, data_dir, device)
