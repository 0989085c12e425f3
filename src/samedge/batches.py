"""Which data each training step sees: the chunked full batch (image tasks) or the step's
minibatch of character crops (the language model). A pure function of the step, so a resumed
run sees exactly the batches an uninterrupted one would."""
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


def full_batch(task: str, cfg: dict, data_dir: Path, device: torch.device) -> FullBatch:
    """The prepared training set of `task` (a prefix of data.n_train examples) as one chunked batch."""
    if cfg["train"]["batch_size"] is not None:
        raise ValueError(f"train.batch_size: {task} trains full-batch as in the paper; set it to null")
    data = load_task(task, data_dir, cfg["data"]["n_train"])
    return FullBatch(data.x_train.to(device), data.y_train.to(device), cfg["train"]["chunk_size"])


def batch_source(task: str, cfg: dict, data_dir: Path, device: torch.device) -> BatchSource:
    """The schedule of batches the run config of a registered task asks for."""
    return get_task(task).batches(cfg, data_dir, device)
