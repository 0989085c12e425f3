"""tiny_shakespeare with the paper's character Transformer, trained by SGD/SAM on minibatches of crops."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from samedge.batches import CropMinibatches
from samedge.data import Dataset, load_task
from samedge.data_fetch import DataError, Source, SourceFile, download_file
from samedge.data_prepare import Prepared, check_ascii
from samedge.models import Transformer, build_from_config, lm_loss
from samedge.tasks import PaperFigures, Task

N_TEST_LINES = 10_000  # the last 10,000 lines are held out
_FILES = (SourceFile("input.txt", "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),)
# char-rnn's input.txt, pinned to the commit the mirror's copy was verified against.
SOURCE = Source(
    "tiny_shakespeare", _FILES, _FILES,
    ("https://raw.githubusercontent.com/karpathy/char-rnn/6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/"
     "data/tinyshakespeare/input.txt",),
    download_file,
)


def prepare(files: dict[str, Path], scratch: Path) -> Prepared:
    path = files["input.txt"]
    data = path.read_bytes()
    check_ascii(path, data)
    lines = data.splitlines(keepends=True)
    if len(lines) <= N_TEST_LINES:
        raise DataError(f"{path.name}: {len(lines)} lines; need more than the {N_TEST_LINES} held out as test")
    test = b"".join(lines[-N_TEST_LINES:])
    train = data[: len(data) - len(test)]
    info = {"preprocessing": f"characters as ASCII codes (uint8, vocabulary 128); the last {N_TEST_LINES} "
            "lines are test_codes, everything before them train_codes",
            "chars": len(data), "lines": len(lines), "distinct_chars": len(set(data)),
            "train_chars": len(train), "test_chars": len(test)}
    return Prepared({"train_codes": np.frombuffer(train, np.uint8).copy(),
                     "test_codes": np.frombuffer(test, np.uint8).copy()}, info)


_SIZE = {"type": "integer", "minimum": 1}
MODEL_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "required": ["n_layers", "n_heads", "key_size", "d_model", "seq_len"],
    "properties": {key: _SIZE for key in ("n_layers", "n_heads", "key_size", "d_model", "seq_len", "widening")},
}


def build_model(model_cfg: dict) -> Transformer:
    return build_from_config(Transformer, model_cfg)


def batches(cfg: dict, data_dir: Path, device: torch.device) -> CropMinibatches:
    if cfg["train"]["batch_size"] is None:
        raise ValueError("train.batch_size: the language model trains on minibatches; set an integer")
    codes = load_task("shakespeare", data_dir, cfg["data"]["n_train"]).train_codes
    return CropMinibatches(codes, cfg["model"]["seq_len"], cfg["train"]["batch_size"], cfg["seed"], device)


TASK = Task(name="shakespeare", label="tiny_shakespeare (Transformer)", build_model=build_model, loss=lm_loss,
            batches=batches, data=Dataset(SOURCE, prepare), minibatch=True, model_schema=MODEL_SCHEMA,
            paper=PaperFigures(rho=0.3, zoom="opnorm"))
