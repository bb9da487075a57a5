"""A truncated or corrupted store is a one-line error naming the file - in ``graphmvp-prep info``,
in pretraining's input check, and in fine-tuning's featurised cache (which is then featurised
again) - never a traceback and never wrong data."""

from __future__ import annotations

import random

import h5py
import numpy as np
import pytest

from geom_fixture import ZINC_SMILES, write_smiles_csv
from graphmvp.prep.config import PrepConfig
from graphmvp.prep.pipeline import prepare
from graphmvp.data.store import ConformerStore, StoreFormatError
from graphmvp.pretrain.config import ConfigError, check_inputs, resolve_config

DATASETS = ("conformers/positions", "atoms/atomic_num", "edges/index", "molecules/atom_offset", "molecules/smiles")


@pytest.fixture(scope="module")
def good_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("corrupt")
    csv = write_smiles_csv(root / "in.csv", ZINC_SMILES[:5])
    prepare(PrepConfig(input=str(csv), output=str(root / "good.h5"), n_conf=2, gen_confs=2))
    with h5py.File(root / "good.h5") as f:
        regions = {name: (f[name].id.get_offset(), f[name].id.get_storage_size()) for name in DATASETS}
    with ConformerStore(root / "good.h5") as s:
        assert s.verify()
        content = [(m.smiles, m.atomic_num, m.edge_index, m.positions) for m in s]
    return root / "good.h5", regions, content


def damaged(good_store, tmp_path) -> list[tuple[str, bytes]]:
    path, regions, _ = good_store
    data = path.read_bytes()
    cases = [(f"truncated at {n}", data[:n]) for n in (0, 64, 2048, len(data) // 2, len(data) - 1)]
    for name, (offset, size) in regions.items():
        b = bytearray(data)
        b[offset + size // 2] ^= 0x41
        cases.append((f"byte flipped in {name}", bytes(b)))
    rng = random.Random(12)
    for _ in range(6):  # anywhere: metadata, attributes, free space
        b = bytearray(data)
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        cases.append(("random flip", bytes(b)))
    return cases


def read_all(path):
    with ConformerStore(path) as s:
        s.verify()
        return [(m.smiles, m.atomic_num, m.edge_index, m.positions) for m in s]


def same(a, b) -> bool:
    return len(a) == len(b) and all(x[0] == y[0] and all(np.array_equal(p, q) for p, q in zip(x[1:], y[1:]))
                                    for x, y in zip(a, b))


def test_info_gives_one_line_naming_the_file_or_the_exact_data(good_store, tmp_path, run_cli):
    errors = intact = 0
    for k, (what, blob) in enumerate(damaged(good_store, tmp_path)):
        bad = tmp_path / f"bad{k}.h5"
        bad.write_bytes(blob)
        p = run_cli("info", bad)
        if p.returncode == 0:  # a flip in unused bytes: allowed only if every value is still right
            assert not what.startswith(("truncated", "byte flipped")), what
            assert same(read_all(bad), good_store[2]), what
            intact += 1
            continue
        errors += 1
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, (what, p.stderr)
        assert str(bad) in p.stderr and "Traceback" not in p.stderr, (what, p.stderr)
    assert errors >= 5 + len(DATASETS)


def test_every_flipped_dataset_fails_its_checksum(good_store, tmp_path):
    for k, (what, blob) in enumerate(damaged(good_store, tmp_path)):
        if what.startswith("byte flipped"):
            bad = tmp_path / f"flip{k}.h5"
            bad.write_bytes(blob)
            with pytest.raises(StoreFormatError, match="corrupted store"):
                read_all(bad)


def test_pretraining_refuses_a_corrupted_store_naming_it(good_store, tmp_path):
    _, regions, _ = good_store
    blob = bytearray(good_store[0].read_bytes())
    offset, size = regions["conformers/positions"]
    blob[offset + 7] ^= 0x20
    bad = tmp_path / "pos_flip.h5"
    bad.write_bytes(bytes(blob))
    cfg = resolve_config("graphmvp", store=str(bad), out=str(tmp_path / "run"), epochs=1)
    with pytest.raises(ConfigError) as err:
        check_inputs(cfg)
    assert str(bad) in str(err.value) and "corrupted store" in str(err.value) and "\n" not in str(err.value)
    check_inputs(resolve_config("graphmvp", store=str(good_store[0]), out=str(tmp_path / "run2"), epochs=1))


def test_a_corrupted_finetune_cache_is_featurised_again(tmp_path, monkeypatch, caplog):
    from graphmvp.finetune.data import TableOptions, load_dataset

    monkeypatch.setenv("GRAPHMVP_HOME", str(tmp_path / "home"))
    csv = tmp_path / "d.csv"
    csv.write_text("smiles,y\n" + "\n".join(f"{s},{i % 2}" for i, s in enumerate(ZINC_SMILES)) + "\n")
    opts = TableOptions(smiles_col="smiles", label_cols=("y",), task_type="classification")
    first = load_dataset(csv, opts)
    cache = first.store_path
    with h5py.File(cache) as f:
        offset, size = f["finetune/labels"].id.get_offset(), f["finetune/labels"].id.get_storage_size()
    blob = bytearray(cache.read_bytes())
    blob[offset + size - 1] ^= 0x3F  # a label's bytes
    cache.write_bytes(bytes(blob))
    again = load_dataset(csv, opts)
    np.testing.assert_array_equal(again.labels, first.labels)
    assert "unreadable" in caplog.text and "corrupted store" in caplog.text
