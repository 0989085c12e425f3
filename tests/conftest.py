"""Shared fixtures: the repository root and the offline data mirror (../shared/data beside the repo)."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The offline data mirror; tests that use it set SAMEDGE_DATA_MIRROR to this path themselves."""
    path = (REPO_ROOT.parent / "shared" / "data").resolve()
    if not (path / "SHA256SUMS").is_file():
        pytest.skip(f"offline data mirror not found at {path} (expected shared/data beside the repository)")
    return path


@pytest.fixture(scope="session")
def data_dir(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with all three tasks fetched from the mirror and prepared (once per session)."""
    from samedge.data import fetch
    from samedge.data_fetch import MIRROR_ENV

    folder = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MIRROR_ENV, str(mirror))
        for task in ("mnist", "cifar10", "shakespeare"):
            fetch(task, folder)
    return folder


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Small tensor problems: OpenMP hand-offs cost more than they save, badly so on shared cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def close_figures() -> Iterator[None]:
    """Figures a test builds but does not save stay open in pyplot; close them so one test's
    figures never count against the next one's (matplotlib warns past 20 open figures)."""
    yield
    plt = sys.modules.get("matplotlib.pyplot")  # only where a test imported it
    if plt is not None:
        plt.close("all")
