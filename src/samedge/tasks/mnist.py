"""MNIST with the paper's MLP: all 60,000 training images as one batch, squared loss on one-hot labels."""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision.datasets import MNIST
from torchvision.datasets.mnist import read_image_file, read_label_file

from samedge.batches import FullBatch, Minibatches, prepared_batches
from samedge.data import Dataset
from samedge.data_fetch import Source, SourceFile, download_mirrored
from samedge.data_prepare import Prepared, center_images, check_images, read_idx
from samedge.models import MLP, build_from_config, mse_loss
from samedge.tasks import PaperFigures, Task

_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
_FILES = tuple(SourceFile(name, _SHA256[name], md5) for name, md5 in MNIST.resources)
# The original IDX files, from torchvision's MNIST mirrors (md5 + sha256) or the offline mirror.
SOURCE = Source("mnist", _FILES, _FILES, tuple(MNIST.mirrors), download_mirrored)


def prepare(files: dict[str, Path], scratch: Path) -> Prepared:
    split = {}
    for name, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = files[f"{prefix}-images-idx3-ubyte.gz"], files[f"{prefix}-labels-idx1-ubyte.gz"]
        x, y = read_idx(images, scratch, read_image_file), read_idx(labels, scratch, read_label_file)
        check_images(images, x, y, (28, 28))
        split[name] = (x[:, None], y)  # add the channel axis: (N, 1, 28, 28)
    info = {"preprocessing": "all MNIST training images (x_train) and test images (x_test)"}
    return center_images(*split["train"], *split["test"], info)


MODEL_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["width", "depth"],
    "properties": {"width": {"type": "integer", "minimum": 1}, "depth": {"type": "integer", "minimum": 1},
                   "init_scale": {"type": "number", "exclusiveMinimum": 0}},
}


def build_model(model_cfg: dict) -> MLP:
    return build_from_config(MLP, model_cfg)


def batches(cfg: dict, data_dir: Path, device: torch.device) -> FullBatch | Minibatches:
    return prepared_batches("mnist", cfg, data_dir, device)


TASK = Task(name="mnist", label="MNIST (MLP)", build_model=build_model, loss=mse_loss, batches=batches,
            data=Dataset(SOURCE, prepare, train_size=60_000), model_schema=MODEL_SCHEMA, paper=PaperFigures(rho=0.1))
