"""The plug-in points of 2D tasks: sample transforms -> batch extras, task options, presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest
from molecule_fixture import molecule
import torch

from graphmvp.data.collate import collate
from graphmvp.data.pretrain_dataset import PretrainDataset, SampleTransform
from graphmvp.pretrain.config import ConfigError, resolve_config
from graphmvp.pretrain.presets import PRESETS, register_preset
from graphmvp.pretrain.tasks import TASKS_2D, coerce_option, task_options




@dataclass
class _FirstAtom:
    """Payload: a random atom of the sample and the sample's molecule index."""

    atom: int
    mol_index: int

    @staticmethod
    def collate(payloads, layout):
        local = np.array([p.atom for p in payloads])
        return torch.from_numpy(local + layout.node_offset), [p.mol_index for p in payloads]


class _PickAtom:
    name = "pick"

    def __call__(self, graph, rng, info):
        return _FirstAtom(int(rng.integers(graph.num_atoms)), info.mol_index)


MOLS = [molecule(s) for s in ("CCO", "c1ccccc1O", "CC(=O)N", "CCCC")]


def test_transform_payloads_reach_the_batch_with_batch_offsets():
    assert isinstance(_PickAtom(), SampleTransform)
    plain = PretrainDataset(MOLS, views="2d", mask_ratio=0.0, seed=3, attrmask=True)
    plugged = PretrainDataset(MOLS, views="2d", mask_ratio=0.0, seed=3, attrmask=True, transforms=[_PickAtom()])
    samples = [plugged[i] for i in range(4)]
    batch = collate(samples)
    atoms, mols = batch.extras["pick"]
    sizes = [m.atomic_num.shape[0] for m in MOLS]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    assert mols == [0, 1, 2, 3]
    assert atoms.tolist() == [samples[b].extras["pick"].atom + starts[b] for b in range(4)]
    assert batch.layout.node_offset.tolist() == starts.tolist()
    # the transform draws after the built-in inputs: AttrMask is unchanged by adding it
    for i in range(4):
        assert np.array_equal(plain[i].attrmask.index, plugged[i].attrmask.index)
    # same seed/epoch/index -> same payload; another epoch -> its own draws
    assert [plugged[i].extras["pick"].atom for i in range(4)] == [s.extras["pick"].atom for s in samples]


def test_transform_names_must_be_unique_and_not_reserved():
    with pytest.raises(ValueError, match="unique"):
        PretrainDataset(MOLS, views="2d", transforms=[_PickAtom(), _PickAtom()])
    reserved = _PickAtom()
    reserved.name = "attrmask"
    with pytest.raises(ValueError, match="reserved"):
        PretrainDataset(MOLS, views="2d", transforms=[reserved])


def test_mixed_batches_are_refused():
    a = PretrainDataset(MOLS, views="2d", mask_ratio=0.0, transforms=[_PickAtom()])[0]
    b = PretrainDataset(MOLS, views="2d", mask_ratio=0.0)[1]
    with pytest.raises(ValueError, match="transform payloads"):
        collate([a, b])


@dataclass(frozen=True)
class _ToyOptions:
    ratio: float = 0.2
    flag: bool = False
    k: int = 3


@pytest.fixture
def toy_task():
    """A registered 2D task with options (registered under an existing 2D objective's name is
    not possible, so it borrows attrmask's entry temporarily)."""
    original = TASKS_2D.get("attrmask")
    TASKS_2D._items["attrmask"] = dataclasses.replace(original, options=_ToyOptions)
    yield
    TASKS_2D._items["attrmask"] = original


def test_task_options_defaults_overrides_and_errors(toy_task):
    cfg = resolve_config("attrmask", options={"ratio": 1, "k": 5})
    assert task_options(cfg) == {"ratio": 1.0, "flag": False, "k": 5}
    with pytest.raises(ConfigError, match="has no option 'ratoi'.*ratio \\(default 0.2\\)"):
        resolve_config("attrmask", options={"ratoi": 0.1})
    with pytest.raises(ConfigError, match="expected an integer"):
        resolve_config("attrmask", options={"k": 0.5})
    with pytest.raises(ConfigError, match="no 2D task"):
        resolve_config("graphmvp", options={"ratio": 0.1})


def test_preset_options_merge_with_explicit_ones(toy_task):
    register_preset("toy-test-preset", {**PRESETS["attrmask"], "options": {"ratio": 0.5, "k": 7}})
    try:
        cfg = resolve_config("toy-test-preset", options={"k": 9})
        assert cfg.options == {"ratio": 0.5, "k": 9}
        assert resolve_config("toy-test-preset").options == {"ratio": 0.5, "k": 7}
        with pytest.raises(ValueError, match="already defined"):
            register_preset("toy-test-preset", {})
    finally:
        PRESETS.pop("toy-test-preset")


def test_coerce_option_types():
    assert coerce_option("a", 0.1, 2) == 2.0
    assert coerce_option("a", [1], (2, 3)) == [2, 3]
    with pytest.raises(ValueError):
        coerce_option("a", True, 1)
    with pytest.raises(ValueError):
        coerce_option("a", 1, True)


def test_cli_opt_pairs(toy_task):
    from graphmvp.pretrain.cli import config_from_args

    cfg, _ = config_from_args(["--out", "x", "--preset", "attrmask", "--opt", "ratio=0.3", "--opt", "flag=true"])
    assert cfg.options == {"ratio": 0.3, "flag": True}
    with pytest.raises(ConfigError, match="given twice"):
        config_from_args(["--out", "x", "--preset", "attrmask", "--opt", "k=1", "--opt", "k=2"])
