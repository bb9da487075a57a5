"""Where the packages come from (all other metadata is in setup.cfg).

There is one import namespace, ``graphmvp``, while the repository keeps its top-level folders:
``finetune/``, ``checkpoints/`` and ``geom_prep/`` are installed as ``graphmvp.finetune``,
``graphmvp.checkpoints`` and ``graphmvp.prep`` (a setuptools ``package_dir`` mapping). The code
stays where it is, so branches that edit these folders merge without moves. Subpackages are found
here instead of being listed by hand, so a new one cannot be left out of the wheel.
"""

from setuptools import find_packages, setup

PACKAGE_DIR = {
    "graphmvp": "graphmvp",
    "graphmvp.finetune": "finetune",
    "graphmvp.checkpoints": "checkpoints",
    "graphmvp.prep": "geom_prep",
}


def packages() -> list[str]:
    return [f"{name}{sub}" for name, folder in PACKAGE_DIR.items() for sub in ["", *(f".{p}" for p in find_packages(folder))]]


setup(package_dir=PACKAGE_DIR, packages=packages())
