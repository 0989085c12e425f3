"""Download routes and bad input, on small files generated in the real on-disk formats.

The network routes run against a server on 127.0.0.1 with the recorded checksums replaced by the
generated files'; no test touches the internet.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import io
import pickle
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from samedge import data_fetch, data_prepare
from samedge.tasks import cifar10
from samedge.cli import main
from samedge.data import DataError, fetch, load_task
from samedge import tasks
from samedge.data_fetch import MIRROR_ENV, Source, SourceFile
from samedge.tasks import get_task

MNIST_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: nothing listens there


def spec(name: str, data: bytes) -> SourceFile:
    return SourceFile(name, hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest())


def idx_gz(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.tobytes(), mtime=0)


def mnist_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"train-images": rng.integers(0, 256, (30, 28, 28), np.uint8),
            "train-labels": rng.integers(0, 10, 30, np.uint8),
            "t10k-images": rng.integers(0, 256, (12, 28, 28), np.uint8),
            "t10k-labels": rng.integers(0, 10, 12, np.uint8)}


def mnist_files() -> dict[str, bytes]:
    arrays = mnist_arrays()
    return {name: idx_gz(arrays[name.split("-idx")[0]]) for name in MNIST_NAMES}


def text_file(extra: str = "") -> bytes:
    return ("".join(f"line {i}: to be or not to be\n" for i in range(10_050)) + extra).encode()


def no_files(folder: Path) -> bool:
    return not folder.exists() or not [p for p in folder.rglob("*") if p.is_file()]


def refuse_network(*args, **kwargs):
    raise AssertionError("the network was used")


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    """(folder, base URL) of an HTTP server on 127.0.0.1 serving that folder."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def network(monkeypatch):
    monkeypatch.delenv(MIRROR_ENV, raising=False)


def serve(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).write_bytes(data)


def source(task: str) -> Source:
    return get_task(task).data.source


def use_source(monkeypatch, task: str, **changes) -> None:
    """Give a registered task another Source for this test (the registry caches loaded tasks)."""
    old = get_task(task)
    data = dataclasses.replace(old.data, source=dataclasses.replace(old.data.source, **changes))
    monkeypatch.setitem(tasks.REGISTRY.loaded, task, dataclasses.replace(old, data=data))


def test_mnist_downloads_through_torchvision_with_mirror_fallback(server, network, monkeypatch, tmp_path):
    root, base = server
    files = mnist_files()
    (root / "mnist").mkdir()
    serve(root / "mnist", files)
    specs = tuple(spec(name, data) for name, data in files.items())
    use_source(monkeypatch, "mnist", network_files=specs, mirror_files=specs, urls=(base + "gone/", base + "mnist/"))
    fetch("mnist", tmp_path / "data")
    for name, data in files.items():
        assert (tmp_path / "data/raw/mnist" / name).read_bytes() == data
    arrays, task = mnist_arrays(), load_task("mnist", tmp_path / "data")
    pixels = arrays["train-images"] / 256
    assert np.allclose(task.x_train[:, 0].numpy(), pixels - pixels.mean(0), atol=1e-6)
    assert task.y_train.tolist() == arrays["train-labels"].tolist()
    assert np.allclose(task.x_test[:, 0].numpy(), arrays["t10k-images"] / 256 - pixels.mean(0), atol=1e-6)
    monkeypatch.setattr(data_fetch, "download_url", refuse_network)  # a rerun trusts the verified files
    assert fetch("mnist", tmp_path / "data") == []


def cifar_batch(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, bytes]:
    """(x HWC, y, the python-version pickle) of n random images."""
    rng = np.random.default_rng(seed)
    rows, labels = rng.integers(0, 256, (n, 3072), np.uint8), rng.integers(0, 10, n).tolist()
    entry = {"batch_label": "generated", "labels": labels, "data": rows, "filenames": [f"{i}.png" for i in range(n)]}
    return rows.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1), np.array(labels, np.int64), pickle.dumps(entry, 2)


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_cifar_downloads_the_tarball_and_keeps_batch_1_and_the_test_batch(server, network, monkeypatch, tmp_path):
    root, base = server
    (x, y, train), (x_test, y_test, test) = cifar_batch(40, 1), cifar_batch(25, 2)
    archive = tar_gz({"data_batch_1": train, "data_batch_2": b"unused", "test_batch": test})
    serve(root, {"cifar.tar.gz": archive})
    use_source(monkeypatch, "cifar10", urls=(base + "cifar.tar.gz",), archive=spec("cifar-10-python.tar.gz", archive),
               network_files=(spec("data_batch_1", train), spec("test_batch", test)))
    monkeypatch.setattr(cifar10, "CONTENT_SHA256", {
        "train": data_prepare.content_sha256(x, y), "test": data_prepare.content_sha256(x_test, y_test)})
    fetch("cifar10", tmp_path / "data")
    assert sorted(p.name for p in (tmp_path / "data/raw/cifar10").iterdir()) == ["data_batch_1", "test_batch"]
    task = load_task("cifar10", tmp_path / "data")
    pixels = x.transpose(0, 3, 1, 2) / 256
    assert task.x_train.shape == (40, 3, 32, 32) and task.x_test.shape == (25, 3, 32, 32)
    assert np.allclose(task.x_train.numpy(), pixels - pixels.mean(0), atol=1e-6)
    assert task.y_train.tolist() == y.tolist() and task.y_test.tolist() == y_test.tolist()


def test_cifar_decoded_arrays_must_match_the_recorded_content(server, network, monkeypatch, tmp_path):
    root, base = server
    (_, _, train), (_, _, test) = cifar_batch(40, 1), cifar_batch(25, 2)
    archive = tar_gz({"data_batch_1": train, "test_batch": test})
    serve(root, {"cifar.tar.gz": archive})
    use_source(monkeypatch, "cifar10", urls=(base + "cifar.tar.gz",), archive=spec("cifar-10-python.tar.gz", archive),
               network_files=(spec("data_batch_1", train), spec("test_batch", test)))
    with pytest.raises(DataError, match=r"data_batch_1: sha256 of the decoded \(x, y\) arrays mismatch: expected 5198"):
        fetch("cifar10", tmp_path / "data")
    assert no_files(tmp_path / "data")


def test_text_downloads_through_hugging_face_datasets(server, network, monkeypatch, tmp_path):
    root, base = server
    text = text_file()
    serve(root, {"input.txt": text})
    use_source(monkeypatch, "shakespeare", network_files=(spec("input.txt", text),), urls=(base + "input.txt",))
    fetch("shakespeare", tmp_path / "data")
    assert (tmp_path / "data/raw/shakespeare/input.txt").read_bytes() == text
    task = load_task("shakespeare", tmp_path / "data")
    assert task.test_codes.numpy().tobytes() == b"".join(text.splitlines(keepends=True)[-10_000:])
    assert task.train_codes.numpy().tobytes() == b"".join(text.splitlines(keepends=True)[:50])


def test_a_download_with_the_wrong_checksum_names_url_and_hashes(server, network, monkeypatch, tmp_path):
    root, base = server
    serve(root, {"input.txt": text_file()})
    use_source(monkeypatch, "shakespeare", urls=(base + "input.txt",))
    expected = source("shakespeare").network_files[0].sha256
    actual = hashlib.sha256(text_file()).hexdigest()
    with pytest.raises(DataError, match=f"{base}input.txt: sha256 mismatch: expected {expected}, got {actual}"):
        fetch("shakespeare", tmp_path / "data")
    assert no_files(tmp_path / "data")


@pytest.mark.parametrize("task", ["mnist", "cifar10", "shakespeare"])
def test_unreachable_network_is_a_clear_error(network, monkeypatch, tmp_path, task):
    use_source(monkeypatch, task, urls=(UNREACHABLE + "file.gz",))
    with pytest.raises(DataError, match=f"could not download {UNREACHABLE}.*{MIRROR_ENV}"):
        fetch(task, tmp_path / "data")
    assert no_files(tmp_path / "data")


@pytest.fixture
def fake_mirror(tmp_path, monkeypatch):
    """A mirror of generated files; put(task, name, data) stores a file and records its checksums."""
    root = tmp_path / "mirror"
    monkeypatch.setenv(MIRROR_ENV, str(root))

    def put(task: str, name: str, data: bytes, record: bool = True) -> None:
        folder = root / source(task).mirror_dir
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        if record:
            files = tuple(spec(name, data) if s.name == name else s for s in source(task).mirror_files)
            use_source(monkeypatch, task, mirror_files=files, network_files=files, urls=(UNREACHABLE,))

    for name, data in mnist_files().items():
        put("mnist", name, data)
    return put


def test_unknown_task_is_rejected_everywhere(tmp_path):
    with pytest.raises(ValueError, match="unknown task 'imagenet'"):
        fetch("imagenet", tmp_path / "data")
    with pytest.raises(ValueError, match="unknown task 'imagenet'"):
        load_task("imagenet", tmp_path / "data")
    assert main(["fetch", "imagenet", "--data-dir", str(tmp_path / "data")]) == 2
    assert not (tmp_path / "data").exists()


GOOD_IMAGES = mnist_files()["train-images-idx3-ubyte.gz"]


@pytest.mark.parametrize("data", [
    pytest.param(b"", id="empty"),
    pytest.param(GOOD_IMAGES[: len(GOOD_IMAGES) // 2], id="truncated-gz"),
    pytest.param(GOOD_IMAGES[:40] + bytes(b ^ 0xFF for b in GOOD_IMAGES[40:80]) + GOOD_IMAGES[80:], id="corrupt-gz"),
    pytest.param(b"not a gzip file", id="not-gz"),
    pytest.param(gzip.compress(gzip.decompress(GOOD_IMAGES)[:-100]), id="truncated-idx"),
])
def test_bad_gz_is_a_clear_error_and_writes_nothing(fake_mirror, tmp_path, data):
    fake_mirror("mnist", "train-images-idx3-ubyte.gz", data)  # checksums recorded: decoding must catch it
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: not a valid gzip-compressed IDX file"):
        fetch("mnist", tmp_path / "data")
    assert no_files(tmp_path / "data")


def test_wrong_checksum_names_file_expected_and_actual(fake_mirror, tmp_path):
    fake_mirror("mnist", "t10k-labels-idx1-ubyte.gz", b"tampered", record=False)
    path = tmp_path / "mirror/mnist/t10k-labels-idx1-ubyte.gz"
    expected = next(s.sha256 for s in source("mnist").mirror_files if s.name == path.name)
    with pytest.raises(DataError, match=f"{path}: sha256 mismatch: expected {expected}, "
                                        f"got {hashlib.sha256(b'tampered').hexdigest()}"):
        fetch("mnist", tmp_path / "data")
    assert no_files(tmp_path / "data")


def test_real_mirror_file_against_a_wrong_recorded_checksum(mirror, monkeypatch, tmp_path):
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    use_source(monkeypatch, "shakespeare", mirror_files=(SourceFile("input.txt", "0" * 64),))
    with pytest.raises(DataError, match=f"{mirror}/tiny_shakespeare/input.txt: sha256 mismatch: "
                                        f"expected 0{{64}}, got 86c4e6aa"):
        fetch("shakespeare", tmp_path / "data")
    assert no_files(tmp_path / "data")


def test_missing_mirror_file(fake_mirror, tmp_path):
    (tmp_path / "mirror/mnist/t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: file not found in the mirror"):
        fetch("mnist", tmp_path / "data")
    assert no_files(tmp_path / "data")


def test_non_ascii_text_names_file_line_and_character(fake_mirror, tmp_path, capsys):
    fake_mirror("shakespeare", "input.txt", b"First line\nsecond\nthird caf\xc3\xa9\n" + text_file())
    with pytest.raises(DataError, match=r"input.txt: line 3, column 10: non-ASCII character 'é'"):
        fetch("shakespeare", tmp_path / "data")
    assert no_files(tmp_path / "data")
    assert main(["fetch", "shakespeare", "--data-dir", str(tmp_path / "data")]) == 2
    assert "samedge fetch: error:" in capsys.readouterr().err and no_files(tmp_path / "data")


def test_too_short_text_is_rejected(fake_mirror, tmp_path):
    fake_mirror("shakespeare", "input.txt", b"a\n" * 10_000)
    with pytest.raises(DataError, match="10000 lines; need more than the 10000 held out"):
        fetch("shakespeare", tmp_path / "data")
    assert no_files(tmp_path / "data")


def test_mirror_route_never_uses_the_network(fake_mirror, monkeypatch, tmp_path):
    monkeypatch.setattr(data_fetch, "download_url", refuse_network)
    fetch("mnist", tmp_path / "data")
    assert load_task("mnist", tmp_path / "data").x_train.shape == (30, 1, 28, 28)
