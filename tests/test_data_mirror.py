"""The data layer on the real files of the offline mirror (../shared/data)."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

from samedge.data import DataError, fetch, lm_crops, load_task
from samedge.data_fetch import MIRROR_ENV
from samedge.io import sha256_file
from samedge.tasks import BUILTIN, get_task

SOURCES = {task: get_task(task).data.source for task in BUILTIN}

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
CIFAR_BATCH1_COUNTS = [1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981]


def read_idx(path):
    """Independent IDX reader (not the torchvision one fetch uses)."""
    data = gzip.open(path).read()
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(data[3])]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * data[3]).reshape(dims)


def test_recorded_checksums_match_the_mirror(mirror):
    sums = dict(reversed(line.split()) for line in (mirror / "SHA256SUMS").read_text().splitlines())
    for src in SOURCES.values():
        for spec in src.mirror_files:
            path = mirror / src.mirror_dir / spec.name
            assert spec.sha256 == sums[f"{src.mirror_dir}/{spec.name}"] == sha256_file(path)


def test_raw_files_are_the_mirror_files(data_dir, mirror):
    for task, src in SOURCES.items():
        names = {spec.name for spec in src.mirror_files}
        assert {p.name for p in (data_dir / "raw" / task).iterdir()} == names
        for name in names:
            assert sha256_file(data_dir / "raw" / task / name) == sha256_file(mirror / src.mirror_dir / name)


def test_mnist_shapes_labels_counts_and_centring(data_dir, mirror):
    data = load_task("mnist", data_dir)
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_train.dtype == torch.float32
    assert data.x_test.shape == (10000, 1, 28, 28)
    assert data.y_train.dtype == torch.int64
    assert data.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert torch.bincount(data.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(data.y_test).tolist() == MNIST_TEST_COUNTS
    assert data.x_train.mean(0).abs().max() < 1e-6
    pixels = read_idx(mirror / "mnist/train-images-idx3-ubyte.gz") / 256
    assert np.allclose(data.x_train[:100, 0].numpy(), pixels[:100] - pixels.mean(0), atol=1e-6)
    assert np.isclose(pixels.mean() * 256, 33.3184, atol=1e-4)  # README's statistic


def test_a_prefix_is_recentred_by_its_own_mean(data_dir, mirror):
    data = load_task("mnist", data_dir, n_train=1000)
    pixels = read_idx(mirror / "mnist/train-images-idx3-ubyte.gz")[:1000] / 256
    assert data.x_train.shape == (1000, 1, 28, 28) and data.y_train.shape == (1000,)
    assert np.allclose(data.x_train[:, 0].numpy(), pixels - pixels.mean(0), atol=1e-6)
    test = read_idx(mirror / "mnist/t10k-images-idx3-ubyte.gz") / 256
    assert np.allclose(data.x_test[:50, 0].numpy(), test[:50] - pixels.mean(0), atol=1e-6)
    for bad in (0, 60001):
        with pytest.raises(ValueError, match="n_train"):
            load_task("mnist", data_dir, n_train=bad)


def test_cifar_first_1000_in_file_order(data_dir, mirror):
    data = load_task("cifar10", data_dir)
    batch = np.load(mirror / "cifar10/data_batch_1.npz")
    assert batch["x"].shape == (10000, 32, 32, 3)
    assert np.bincount(batch["y"]).tolist() == CIFAR_BATCH1_COUNTS
    assert data.x_train.shape == (1000, 3, 32, 32) and data.x_test.shape == (1000, 3, 32, 32)
    assert data.y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert data.y_test[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert torch.bincount(data.y_train).tolist() == np.bincount(batch["y"][:1000]).tolist()
    pixels = batch["x"][:1000].transpose(0, 3, 1, 2) / 256
    assert np.allclose(data.x_train.numpy(), pixels - pixels.mean(0), atol=1e-6)
    assert data.x_train.mean(0).abs().max() < 1e-6
    # Image 0's red channel starts 59, 43, 50, 68 (README's independent check).
    assert (data.x_train[0, 0, 0, :4] + torch.from_numpy(pixels.mean(0)[0, 0, :4]).float()).mul(256).round().tolist() \
        == [59, 43, 50, 68]


def test_shakespeare_split_is_the_last_10000_lines(data_dir, mirror):
    data = load_task("shakespeare", data_dir)
    text = (mirror / "tiny_shakespeare/input.txt").read_bytes()
    lines = text.splitlines(keepends=True)
    assert len(text) == 1_115_394 and len(lines) == 40_000
    assert data.train_codes.dtype == data.test_codes.dtype == torch.uint8
    assert data.test_codes.numpy().tobytes() == b"".join(lines[-10_000:])
    assert data.train_codes.numpy().tobytes() + data.test_codes.numpy().tobytes() == text
    assert data.train_codes[:14].numpy().tobytes() == b"First Citizen:"
    assert data.manifest["chars"] == 1_115_394 and data.manifest["distinct_chars"] == 65
    with pytest.raises(ValueError, match="n_train"):
        load_task("shakespeare", data_dir, n_train=10)


def test_manifest_records_sources_checksums_and_versions(data_dir):
    manifest = json.loads((data_dir / "prepared/mnist/manifest.json").read_text())
    assert manifest["inputs"]["train-images-idx3-ubyte.gz"]["sha256"] == SOURCES["mnist"].mirror_files[0].sha256
    assert manifest["outputs"]["x_train.npy"]["shape"] == [60000, 1, 28, 28]
    for name, entry in manifest["outputs"].items():
        assert sha256_file(data_dir / "prepared/mnist" / name) == entry["sha256"]
    assert {"numpy", "torchvision", "datasets"} <= set(manifest["versions"])
    assert "256" in manifest["preprocessing"] and manifest["source"]["urls"]


def test_rerun_rewrites_nothing_and_output_is_reproducible(data_dir, mirror, tmp_path, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    before = {p: p.stat().st_mtime_ns for p in data_dir.rglob("*") if p.is_file()}
    assert fetch("mnist", data_dir) == []
    assert {p: p.stat().st_mtime_ns for p in data_dir.rglob("*") if p.is_file()} == before
    for task in ("cifar10", "shakespeare"):  # a second fetch elsewhere: byte-identical outputs
        fetch(task, tmp_path)
        for path in (tmp_path / "prepared" / task).iterdir():
            assert path.read_bytes() == (data_dir / "prepared" / task / path.name).read_bytes()


def test_interrupted_or_damaged_files_are_not_trusted(data_dir, mirror, tmp_path, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    fetch("shakespeare", tmp_path)
    raw, prepared = tmp_path / "raw/shakespeare/input.txt", tmp_path / "prepared/shakespeare"
    raw.write_bytes(raw.read_bytes()[:1000])  # a half-written source file
    (prepared / "test_codes.npy").write_bytes(b"junk")
    (prepared / ".train_codes.npy.abc.tmp").write_bytes(b"\x93NUMPY left by a killed write")
    with pytest.raises(DataError, match="rerun `samedge fetch shakespeare`"):
        load_task("shakespeare", tmp_path)
    assert set(fetch("shakespeare", tmp_path)) == {raw, prepared / "test_codes.npy", prepared / "manifest.json"}
    assert sorted(p.name for p in prepared.iterdir()) == ["manifest.json", "test_codes.npy", "train_codes.npy"]
    assert load_task("shakespeare", tmp_path).test_codes.numel() == 260_434
    (prepared / "manifest.json").unlink()
    with pytest.raises(DataError, match="run `samedge fetch shakespeare"):
        load_task("shakespeare", tmp_path)


def _state(folder) -> dict:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file()} | {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_dir()}


def test_fetch_leaves_files_it_did_not_write_and_snakemakes_markers_alone(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    fetch("shakespeare", tmp_path)
    raw, prepared = tmp_path / "raw/shakespeare", tmp_path / "prepared/shakespeare"
    for folder in (raw, prepared):
        (folder / ".snakemake_timestamp").write_text("")
        (folder / "notes.txt").write_text("the user's")
        (folder / ".input.txt.mine.tmp").write_text("the user's, named like a temporary file")
    before = _state(tmp_path / "raw") | _state(tmp_path / "prepared")
    assert fetch("shakespeare", tmp_path) == []  # unchanged data: no file, folder or marker touched
    assert _state(tmp_path / "raw") | _state(tmp_path / "prepared") == before


def test_fetch_removes_only_outputs_its_earlier_manifest_recorded(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    fetch("shakespeare", tmp_path)
    prepared = tmp_path / "prepared/shakespeare"
    manifest = json.loads((prepared / "manifest.json").read_text())
    manifest["outputs"]["old_layout.npy"] = {"sha256": "0" * 64}  # an output of an older layout
    (prepared / "manifest.json").write_text(json.dumps(manifest))
    (prepared / "old_layout.npy").write_bytes(b"written by an older samedge")
    (prepared / "user.npy").write_bytes(b"the user's")
    fetch("shakespeare", tmp_path)
    assert sorted(p.name for p in prepared.iterdir()) == ["manifest.json", "test_codes.npy", "train_codes.npy",
                                                          "user.npy"]


@pytest.mark.parametrize("edit, message", [
    (lambda m: None, "no outputs with their sha256"),
    (lambda m: {k: v for k, v in m.items() if k != "outputs"}, "no outputs with their sha256"),
    (lambda m: m | {"outputs": {n: {"dtype": "uint8"} for n in m["outputs"]}}, "no outputs with their sha256"),
    (lambda m: m | {"outputs": {"train_codes.npy": m["outputs"]["train_codes.npy"]}}, r"no entry for \['test_codes.npy'\]"),
])
def test_a_damaged_manifest_is_one_error_naming_it(data_dir, mirror, tmp_path, monkeypatch, edit, message):
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    fetch("shakespeare", tmp_path)
    path = tmp_path / "prepared/shakespeare/manifest.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    with pytest.raises(DataError, match=f"{path}: {message}.*rerun `samedge fetch shakespeare`"):
        load_task("shakespeare", tmp_path)


def test_lm_crops_are_shuffled_non_overlapping_shifted_pairs(data_dir):
    codes = load_task("shakespeare", data_dir).train_codes
    inputs, targets = lm_crops(codes, 64, torch.Generator().manual_seed(0))
    count = codes.numel() // 65
    assert inputs.shape == targets.shape == (count, 64) and inputs.dtype == targets.dtype == torch.int64
    crops = torch.cat([inputs, targets[:, -1:]], dim=1)
    assert torch.equal(crops[:, 1:], targets)
    in_order = codes[: count * 65].reshape(count, 65).long()
    assert not torch.equal(crops, in_order)
    assert sorted(map(tuple, crops.tolist())) == sorted(map(tuple, in_order.tolist()))
    again, _ = lm_crops(codes, 64, torch.Generator().manual_seed(0))
    assert torch.equal(again, inputs)
