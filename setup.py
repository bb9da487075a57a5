"""Where the packages come from (all other metadata is in setup.cfg).

There is one import namespace, ``graphmvp``, while the repository keeps its top-level folders:
``finetune/``, ``checkpoints/`` and ``geom_prep/`` are installed as ``graphmvp.finetune``,
``graphmvp.checkpoints`` and ``graphmvp.prep`` (a setuptools ``package_dir`` mapping). The code
stays where it is, so branches that edit these folders merge without moves. Subpackages are found
here instead of being listed by hand, so a new one cannot be left out of the wheel. Folders that
hold only package data (``geom_prep/demo``: the demo's SMILES) are listed as packages too, as
setuptools asks (it warns that installing them as plain data is deprecated).
"""

from setuptools import find_packages, setup

PACKAGE_DIR = {
    "graphmvp": "graphmvp",
    "graphmvp.finetune": "finetune",
    "graphmvp.checkpoints": "checkpoints",
    "graphmvp.prep": "geom_prep",
}
#: data-only folders (no ``__init__.py``) installed with their files, see setup.cfg's package_data
DATA_PACKAGES = ["graphmvp.prep.demo"]


def packages() -> list[str]:
    found = [f"{name}{sub}" for name, folder in PACKAGE_DIR.items() for sub in ["", *(f".{p}" for p in find_packages(folder))]]
    return found + DATA_PACKAGES


setup(package_dir=PACKAGE_DIR, packages=packages())
