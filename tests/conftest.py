"""Shared fixtures of the ``geom_prep`` tests (no torch here: these tests import only RDKit,
h5py and numpy, so they stay fast)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``<repo>/../shared/data`` (real data kept outside the repository); skips when absent."""
    path = REPO.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent (tests on shared data need ../shared/data next to the repository)")
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: one torch thread is faster than several competing for a shared machine.
    Opt in per module with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch  # here, so that tests without torch do not pay for importing it

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def load_benchmark(name: str) -> ModuleType:
    """The script ``benchmarks/<name>.py`` as a module (registered in ``sys.modules`` first: its
    dataclasses look their module up while it loads)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def shared_file(shared_data: Path, relative: str) -> Path:
    """``shared_data / relative``, skipping the test with the reason when it is absent."""
    path = shared_data / relative
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def zinc_csv(shared_data) -> Path:
    return shared_file(shared_data, "zinc_moses_train.csv.gz")


@pytest.fixture(scope="session")
def freesolv(shared_data) -> Path:
    return shared_file(shared_data, "freesolv.csv")


@pytest.fixture(scope="session")
def geom_sample(shared_data) -> Path:
    return shared_file(shared_data, "geom_sample/rdkit_folder/summary_drugs.json").parent


def _run_cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "graphmvp.prep.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        timeout=timeout,
    )


@pytest.fixture
def run_cli():
    """Run ``graphmvp-prep`` as ``python -m graphmvp.prep.cli ARGS`` with this interpreter."""
    return _run_cli
