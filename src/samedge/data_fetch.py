"""Getting a data set's source files, from the offline mirror or the network; every file is verified.

A task's Source (defined in its module under samedge/tasks/) names the files, their checksums and
how they are downloaded: from mirrored base URLs (download_mirrored), as members of a checksummed
archive (download_archive_members), or as one file (download_file). Downloads go through the
libraries made for them: torchvision's download utilities and Hugging Face `datasets`'
DownloadManager. When SAMEDGE_DATA_MIRROR is set the network is never touched.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import urllib.error
from dataclasses import dataclass
from pathlib import Path

from collections.abc import Callable

from torchvision.datasets.utils import calculate_md5, download_url, extract_archive

from samedge.errors import DataError
from samedge.io import sha256_file

MIRROR_ENV = "SAMEDGE_DATA_MIRROR"


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
    urls: tuple[str, ...]  # mirrored base URLs tried in order, or the one file/archive to download
    download: Callable[[Source, Path], dict[str, str]]  # fills staging, returns {file: where from}
    archive: SourceFile | None = None  # the archive the network files come from
    archive_folder: str = ""  # the archive's folder that holds the network files


def verify(path: Path, spec: SourceFile, label: str | None = None) -> None:
    """Raise DataError naming the file (label: where it came from), the expected and the actual hash."""
    name = label or str(path)
    if not path.is_file():
        raise DataError(f"{name}: file not found")
    for algorithm, expected, digest in (("sha256", spec.sha256, sha256_file), ("md5", spec.md5, calculate_md5)):
        if expected is not None and (actual := digest(path)) != expected:
            raise DataError(f"{name}: {algorithm} mismatch: expected {expected}, got {actual}")


def trusted_raw(src: Source, raw_dir: Path) -> dict[str, Path] | None:
    """The files already in raw_dir if one complete set verifies, else None (never trusted blindly)."""
    for files in dict.fromkeys((src.mirror_files, src.network_files)):
        try:
            for spec in files:
                verify(raw_dir / spec.name, spec)
        except DataError:
            continue
        return {spec.name: raw_dir / spec.name for spec in files}
    return None


def origin(src: Source) -> str:
    """Where `acquire` takes the source's files from, for messages."""
    mirror = os.environ.get(MIRROR_ENV)
    return f"mirror {Path(mirror) / src.mirror_dir}" if mirror else f"network {', '.join(src.urls)}"


def acquire(src: Source, staging: Path) -> dict[str, Path]:
    """Put the source's verified files into staging, from the mirror if set, else the network."""
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        files = src.mirror_files
        labels = _copy_from_mirror(Path(mirror) / src.mirror_dir, files, staging)
    else:
        files = src.network_files
        labels = src.download(src, staging)
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


def download_mirrored(src: Source, staging: Path) -> dict[str, str]:
    """Each network file from the first of src.urls (base URLs) that serves it."""
    labels = {}
    for spec in src.network_files:
        errors = []
        for base in src.urls:  # tried in order, as torchvision's MNIST.download does
            try:
                download_url(base + spec.name, staging, spec.name)
                labels[spec.name] = base + spec.name
                break
            except (urllib.error.URLError, OSError) as exc:
                errors.append(_network_error(base + spec.name, exc))
        else:
            raise DataError("; ".join(map(str, errors)))
    return labels


def download_archive_members(src: Source, staging: Path) -> dict[str, str]:
    """The network files as members of src.archive_folder in the checksummed archive at src.urls[0]."""
    assert src.archive is not None  # a Source with this downloader names its archive
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
        extracted = staging / "extracted" / src.archive_folder / spec.name
        if not extracted.is_file():
            raise DataError(f"{src.urls[0]}: archive lacks {src.archive_folder}/{spec.name}")
        os.replace(extracted, staging / spec.name)
    return {spec.name: f"{src.urls[0]} ({src.archive_folder}/{spec.name})" for spec in src.network_files}


def download_file(src: Source, staging: Path) -> dict[str, str]:
    """The one network file from src.urls[0]."""
    # Imported here: `datasets` is slow to import and only this route needs it.
    from datasets import DownloadConfig, DownloadManager

    config = DownloadConfig(cache_dir=staging / "hf-cache", disable_tqdm=True)
    try:
        path = DownloadManager(download_config=config).download(src.urls[0])
    except (ConnectionError, OSError) as exc:
        raise _network_error(src.urls[0], exc) from exc
    os.replace(path, staging / src.network_files[0].name)
    return {src.network_files[0].name: src.urls[0]}
