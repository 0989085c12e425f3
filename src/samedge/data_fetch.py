"""Source files of each task, from the offline mirror or the network; every file is verified.

Downloads go through the libraries made for them: torchvision's download utilities (MNIST mirrors,
the CIFAR-10 python tarball and their md5s) and Hugging Face `datasets`' DownloadManager (the
tiny_shakespeare text file). When SAMEDGE_DATA_MIRROR is set the network is never touched.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import urllib.error
from dataclasses import dataclass
from pathlib import Path

from torchvision.datasets import CIFAR10, MNIST
from torchvision.datasets.utils import calculate_md5, download_url, extract_archive

from samedge.config import TASKS
from samedge.io import sha256_file

MIRROR_ENV = "SAMEDGE_DATA_MIRROR"


class DataError(ValueError):
    """Missing, corrupt or unverifiable data; the message names the file."""


@dataclass(frozen=True)
class SourceFile:
    """A file and its recorded checksums (at least one of them)."""

    name: str
    sha256: str | None = None
    md5: str | None = None


@dataclass(frozen=True)
class Source:
    mirror_dir: str  # the task's folder in the mirror layout (see shared/data/README.md)
    mirror_files: tuple[SourceFile, ...]
    network_files: tuple[SourceFile, ...]  # what the network route leaves in data/raw/TASK
    urls: tuple[str, ...]  # MNIST: base URLs tried in order; others: the one file to download
    archive: SourceFile | None = None  # CIFAR-10: the tarball the network files come from


_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
_MNIST_FILES = tuple(SourceFile(name, _MNIST_SHA256[name], md5) for name, md5 in MNIST.resources)
_CIFAR_MD5 = dict(CIFAR10.train_list + CIFAR10.test_list)
_TEXT_FILES = (SourceFile("input.txt", "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),)

SOURCES = {
    "mnist": Source("mnist", _MNIST_FILES, _MNIST_FILES, tuple(MNIST.mirrors)),
    "cifar10": Source(
        "cifar10",
        (
            SourceFile("data_batch_1.npz", "3c0dfa439f7ccec0026b3ec60f03edb72a6ac92d6a827386378f0b9030581d07"),
            SourceFile("test_batch_first1000.npz", "9d4d72ca0523256c03abeb4cf4fc900f746cfbade2e33391f9c1d4a3ed186b9f"),
        ),
        tuple(SourceFile(name, md5=_CIFAR_MD5[name]) for name in ("data_batch_1", "test_batch")),
        (CIFAR10.url,),
        SourceFile(CIFAR10.filename, md5=CIFAR10.tgz_md5),
    ),
    "shakespeare": Source(
        "tiny_shakespeare",
        _TEXT_FILES,
        _TEXT_FILES,
        # Pinned to the commit the mirror's copy was verified against.
        ("https://raw.githubusercontent.com/karpathy/char-rnn/6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/"
         "data/tinyshakespeare/input.txt",),
    ),
}


def source(task: str) -> Source:
    if task not in SOURCES:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return SOURCES[task]


def verify(path: Path, spec: SourceFile, label: str | None = None) -> None:
    """Raise DataError naming the file (label: where it came from), the expected and the actual hash."""
    name = label or str(path)
    if not path.is_file():
        raise DataError(f"{name}: file not found")
    for algorithm, expected, digest in (("sha256", spec.sha256, sha256_file), ("md5", spec.md5, calculate_md5)):
        if expected is not None and (actual := digest(path)) != expected:
            raise DataError(f"{name}: {algorithm} mismatch: expected {expected}, got {actual}")


def trusted_raw(task: str, raw_dir: Path) -> dict[str, Path] | None:
    """The files already in raw_dir if one complete set verifies, else None (never trusted blindly)."""
    src = source(task)
    for files in dict.fromkeys((src.mirror_files, src.network_files)):
        try:
            for spec in files:
                verify(raw_dir / spec.name, spec)
        except DataError:
            continue
        return {spec.name: raw_dir / spec.name for spec in files}
    return None


def origin(task: str) -> str:
    """Where `acquire` takes the task's files from, for messages."""
    mirror = os.environ.get(MIRROR_ENV)
    return f"mirror {Path(mirror) / source(task).mirror_dir}" if mirror else f"network {', '.join(source(task).urls)}"


def acquire(task: str, staging: Path) -> dict[str, Path]:
    """Put the task's verified source files into staging, from the mirror if set, else the network."""
    src = source(task)
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        files = src.mirror_files
        labels = _copy_from_mirror(Path(mirror) / src.mirror_dir, files, staging)
    else:
        files = src.network_files
        labels = _DOWNLOADERS[task](src, staging)
    for spec in files:
        verify(staging / spec.name, spec, labels[spec.name])
    return {spec.name: staging / spec.name for spec in files}


# Each route copies or downloads into staging and returns {file name: where it came from}.
def _copy_from_mirror(folder: Path, files: tuple[SourceFile, ...], staging: Path) -> dict[str, str]:
    for spec in files:
        if not (folder / spec.name).is_file():
            raise DataError(f"{folder / spec.name}: file not found in the mirror "
                            f"({MIRROR_ENV}={os.environ[MIRROR_ENV]})")
        shutil.copyfile(folder / spec.name, staging / spec.name)
    return {spec.name: str(folder / spec.name) for spec in files}


def _network_error(url: str, exc: Exception) -> DataError:
    reason = exc.__cause__ or exc  # `datasets` wraps the connection error in a bare FileNotFoundError(url)
    return DataError(f"could not download {url}: {type(reason).__name__}: {reason} "
                     f"(offline? set {MIRROR_ENV} to a local mirror)")


def _download_mnist(src: Source, staging: Path) -> dict[str, str]:
    labels = {}
    for spec in src.network_files:
        errors = []
        for base in src.urls:  # torchvision's MNIST mirrors, tried in order as MNIST.download does
            try:
                download_url(base + spec.name, staging, spec.name)
                labels[spec.name] = base + spec.name
                break
            except (urllib.error.URLError, OSError) as exc:
                errors.append(_network_error(base + spec.name, exc))
        else:
            raise DataError("; ".join(map(str, errors)))
    return labels


def _download_cifar(src: Source, staging: Path) -> dict[str, str]:
    assert src.archive is not None  # always set for CIFAR-10
    archive = staging / src.archive.name
    try:
        download_url(src.urls[0], staging, src.archive.name)
    except (urllib.error.URLError, OSError) as exc:
        raise _network_error(src.urls[0], exc) from exc
    verify(archive, src.archive, src.urls[0])
    try:
        extract_archive(archive, staging / "extracted")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{src.urls[0]}: cannot extract the archive ({type(exc).__name__}: {exc})") from exc
    for spec in src.network_files:
        extracted = staging / "extracted" / CIFAR10.base_folder / spec.name
        if not extracted.is_file():
            raise DataError(f"{src.urls[0]}: archive lacks {CIFAR10.base_folder}/{spec.name}")
        os.replace(extracted, staging / spec.name)
    return {spec.name: f"{src.urls[0]} ({CIFAR10.base_folder}/{spec.name})" for spec in src.network_files}


def _download_text(src: Source, staging: Path) -> dict[str, str]:
    # Imported here: `datasets` is slow to import and only this route needs it.
    from datasets import DownloadConfig, DownloadManager

    config = DownloadConfig(cache_dir=staging / "hf-cache", disable_tqdm=True)
    try:
        path = DownloadManager(download_config=config).download(src.urls[0])
    except (ConnectionError, OSError) as exc:
        raise _network_error(src.urls[0], exc) from exc
    os.replace(path, staging / src.network_files[0].name)
    return {src.network_files[0].name: src.urls[0]}


_DOWNLOADERS = {"mnist": _download_mnist, "cifar10": _download_cifar, "shakespeare": _download_text}
