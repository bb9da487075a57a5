"""Packaging: one import namespace (``graphmvp``), package data reachable as resources, no
repository paths. Runs in the development install and, with ``GRAPHMVP_WHEEL_CHECK=1``, against
the installed wheel (``make wheel-check``), where it also checks that the repository is not what
was imported."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import os
import pkgutil
import sys
import sysconfig
from importlib import resources
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: import names the repository's folders had before issue 13; other PyPI distributions own some
OLD_NAMES = {"finetune", "checkpoints", "geom_prep"}
#: folder in the repository -> the package it is installed as (setup.py's PACKAGE_DIR)
SUBPACKAGES = {"finetune": "graphmvp.finetune", "checkpoints": "graphmvp.checkpoints", "geom_prep": "graphmvp.prep"}
WHEEL_CHECK = os.environ.get("GRAPHMVP_WHEEL_CHECK") == "1"


def assert_installed_copy(path: Path) -> None:
    """``path`` lies in this environment's site-packages and not in the checkout's source folders.
    (The wheel's venv may itself sit inside the checkout, e.g. ``.venv-wheel``, so "not under the
    repository" would be the wrong test.)"""
    path = path.resolve()
    assert path.is_relative_to(Path(sysconfig.get_paths()["purelib"]).resolve()), path
    for source in ["graphmvp", *SUBPACKAGES]:
        assert not path.is_relative_to(REPO / source), path


def test_the_distribution_installs_one_top_level_name():
    top = importlib.metadata.distribution("graphmvp").read_text("top_level.txt")
    assert top is not None and top.split() == ["graphmvp"]


@pytest.mark.parametrize("folder,name", sorted(SUBPACKAGES.items()))
def test_the_folders_are_parts_of_graphmvp(folder, name):
    module = importlib.import_module(name)
    where = Path(module.__file__).resolve().parent
    if WHEEL_CHECK:
        assert where == Path(importlib.import_module("graphmvp").__file__).resolve().parent / name.split(".")[1]
    else:
        assert where == REPO / folder


def test_every_module_imports_under_the_namespace():
    """Walks the installed packages (a subpackage left out of the wheel, or a module still importing
    an old name, fails here)."""
    names = []
    for root in ("graphmvp", *SUBPACKAGES.values()):
        package = importlib.import_module(root)
        names += [info.name for info in pkgutil.walk_packages(package.__path__, root + ".")
                  if not info.name.endswith("__main__")]
    assert {"graphmvp.prep.sources.smiles", "graphmvp.finetune.cli", "graphmvp.checkpoints.fetch",
            "graphmvp.pretrain.cli"} <= set(names)
    for name in names:
        importlib.import_module(name)
    assert not OLD_NAMES & set(sys.modules), "an old top-level name was imported"


def test_no_source_file_imports_an_old_name():
    """Every Python file of the repository (packages, tests, benchmarks): no ``import finetune``,
    ``from geom_prep...`` and so on. The rewrite is mechanical; this catches a merged leftover."""
    if not (REPO / "setup.py").is_file():
        pytest.skip("no repository checkout next to the tests")
    bad = []
    for path in REPO.rglob("*.py"):
        if any(part.startswith(".") or part in {"build", "dist", "runs"} for part in path.relative_to(REPO).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            bad += [f"{path.relative_to(REPO)}:{node.lineno}: {t}" for t in tops if t in OLD_NAMES]
    assert not bad, "old import names:\n" + "\n".join(bad)


def test_package_data_comes_with_the_package():
    demo = resources.files("graphmvp.prep") / "demo"
    assert (demo / "zinc_demo.csv").is_file() and (demo / "SOURCE.md").is_file()
    assert len((demo / "zinc_demo.csv").read_text().split()) == 201  # header + 200 molecules

    from graphmvp.checkpoints import MANIFEST_PATH, load_manifest

    assert MANIFEST_PATH.is_file()
    shipped = [e for e in load_manifest() if e.package_file]
    assert shipped, "the manifest ships no checkpoint"
    for entry in shipped:
        assert (resources.files("graphmvp.checkpoints") / entry.package_file).is_file()


def test_the_demo_reads_its_molecules_as_a_resource_and_freesolv_from_the_current_folder(tmp_path, monkeypatch):
    from graphmvp.demo import default_freesolv, demo_smiles_path

    assert demo_smiles_path().is_file()
    if WHEEL_CHECK:
        assert_installed_copy(demo_smiles_path())
    monkeypatch.chdir(tmp_path)
    assert default_freesolv().resolve() == tmp_path.parent / "shared" / "data" / "freesolv.csv"


@pytest.mark.skipif(not WHEEL_CHECK, reason="only against the installed wheel (make wheel-check)")
def test_the_wheel_not_the_repository_is_imported():
    import graphmvp

    assert_installed_copy(Path(graphmvp.__file__))
    assert importlib.metadata.distribution("graphmvp").read_text("direct_url.json") is None or \
        '"editable": true' not in importlib.metadata.distribution("graphmvp").read_text("direct_url.json")
