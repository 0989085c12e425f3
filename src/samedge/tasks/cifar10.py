"""CIFAR-10 with the paper's CNN: the first 1000 training examples (original file order) as one batch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10

from samedge.batches import FullBatch, Minibatches, prepared_batches
from samedge.data import Dataset
from samedge.data_fetch import DataError, Source, SourceFile, download_archive_members
from samedge.data_prepare import Prepared, center_images, content_sha256, read_cifar_arrays
from samedge.models import CNN, build_from_config, mse_loss
from samedge.tasks import PaperFigures, Task

N_EXAMPLES = 1000  # the first 1000 training (and test) examples, original file order
# sha256 of the decoded arrays (see content_sha256), the same whichever file they came from:
# the mirror's .npz or the python pickles in torchvision's md5-checked tarball.
CONTENT_SHA256 = {
    "train": "5198c1b0c98fbba0f5a62c043352122d9a195452ffa22fe496a3a4120a741155",  # data_batch_1, all 10000
    "test": "be341b9572b9f821724a7b1a9470365006bdd37871a4247ec30154bb08c1537c",  # test_batch, first 1000
}
_MD5 = dict(CIFAR10.train_list + CIFAR10.test_list)
SOURCE = Source(
    "cifar10",
    (SourceFile("data_batch_1.npz", "3c0dfa439f7ccec0026b3ec60f03edb72a6ac92d6a827386378f0b9030581d07"),
     SourceFile("test_batch_first1000.npz", "9d4d72ca0523256c03abeb4cf4fc900f746cfbade2e33391f9c1d4a3ed186b9f")),
    tuple(SourceFile(name, md5=_MD5[name]) for name in ("data_batch_1", "test_batch")),
    (CIFAR10.url,),
    download_archive_members,
    archive=SourceFile(CIFAR10.filename, md5=CIFAR10.tgz_md5),
    archive_folder=CIFAR10.base_folder,
)


def prepare(files: dict[str, Path], scratch: Path) -> Prepared:
    npz = "data_batch_1.npz" in files
    paths = {"train": files["data_batch_1.npz" if npz else "data_batch_1"],
             "test": files["test_batch_first1000.npz" if npz else "test_batch"]}
    split, digests = {}, {}
    for name, path in paths.items():
        x, y = read_cifar_arrays(path)
        if name == "test":
            x, y = x[:N_EXAMPLES], y[:N_EXAMPLES]
        digests[name] = content_sha256(x, y)
        if digests[name] != CONTENT_SHA256[name]:
            raise DataError(f"{path.name}: sha256 of the decoded (x, y) arrays mismatch: "
                            f"expected {CONTENT_SHA256[name]}, got {digests[name]}")
        split[name] = (np.ascontiguousarray(x[:N_EXAMPLES].transpose(0, 3, 1, 2)), y[:N_EXAMPLES])
    info = {"preprocessing": f"CIFAR-10: first {N_EXAMPLES} examples of data_batch_1 (x_train) and of test_batch "
            "(x_test) in the original file order; HWC RGB -> CHW",
            "content_sha256": {"data_batch_1": digests["train"], f"test_batch[:{N_EXAMPLES}]": digests["test"]}}
    return center_images(*split["train"], *split["test"], info)


MODEL_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["channels"],
    "properties": {"channels": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1}},
                   "init_scale": {"type": "number", "exclusiveMinimum": 0}},
}


def build_model(model_cfg: dict) -> CNN:
    return build_from_config(CNN, model_cfg)


def batches(cfg: dict, data_dir: Path, device: torch.device) -> FullBatch | Minibatches:
    return prepared_batches("cifar10", cfg, data_dir, device)


TASK = Task(name="cifar10", label="CIFAR-10 (CNN)", build_model=build_model, loss=mse_loss, batches=batches,
            data=Dataset(SOURCE, prepare, train_size=50_000), model_schema=MODEL_SCHEMA, paper=PaperFigures(rho=0.1))
