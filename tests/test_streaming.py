"""Streaming reads of the conformer store and the dataset's preload policy.

The store is written from molecules made here (random graphs, conformers and UTF-8 text), so
every read path is checked against the arrays that went in: per-molecule reads, sorted batch
reads (``molecules_at``), slices and the in-memory form (``load`` -> ``MoleculeArrays``), the raw
``preadv`` path and its h5py fallback on a chunked, compressed copy. Streaming and preloaded
datasets must give identical samples; streaming must keep nothing per molecule (Python
allocations traced with tracemalloc: reading more molecules does not grow them). The
``preload="auto"`` decision is checked on small stores with thresholds around their size.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import tracemalloc

import h5py
import numpy as np
import pytest
import torch

from graphmvp.prep.store_writer import write_store
from graphmvp.data import pretrain_dataset
from graphmvp.data.collate import collate
from graphmvp.data.pretrain_dataset import PretrainDataset, resolve_preload
from graphmvp.data.store import (
    OFFSET_KEYS,
    ROW_FIELDS,
    ConformerStore,
    Molecule,
    MoleculeArrays,
    PackedText,
    StoredMolecule,
    StoreFormatError,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARRAY_FIELDS = tuple(ROW_FIELDS)


def random_molecule(rng: np.random.Generator, i: int, n_conf: int) -> Molecule:
    """A molecule-shaped record: a random tree plus one ring bond (both directions), random
    features, ``n_conf`` conformers; SMILES and source id with non-ASCII characters."""
    n = int(rng.integers(1, 24))
    bonds = [(int(rng.integers(0, a)), a) for a in range(1, n)]
    if n > 3:
        bonds.append((0, n - 1))
    src = np.array([b[0] for b in bonds] + [b[1] for b in bonds], dtype=np.int64)
    dst = np.array([b[1] for b in bonds] + [b[0] for b in bonds], dtype=np.int64)
    z = rng.integers(1, 60, n)
    return Molecule(
        atomic_num=z.astype(np.uint8),
        atom_features=np.stack([z - 1, rng.integers(0, 4, n)], axis=1).astype(np.uint8),
        edge_index=np.stack([src, dst]).reshape(2, -1),
        edge_features=np.stack([rng.integers(0, 4, src.size), rng.integers(0, 3, src.size)], axis=1).astype(np.uint8),
        positions=(rng.normal(size=(n_conf, n, 3)) * 2.5).astype(np.float32),
        energy=rng.normal(size=n_conf) * 10.0,
        boltzmann_weight=rng.random(n_conf),
        conf_source_index=rng.permutation(n_conf).astype(np.int32),
        smiles=f"C{i}(=O)Nß{'c' * (i % 7)}",
        source_id=f"données/lot_{i // 10}.sdf#{i}",
        candidate_index=3 * i + 1,
    )


def make_molecules(n: int, seed: int = 0, min_conf: int = 0) -> list[Molecule]:
    rng = np.random.default_rng(seed)
    return [random_molecule(rng, i, int(rng.integers(min_conf, 4))) for i in range(n)]


def write(path, molecules) -> ConformerStore:
    write_store(path, molecules, [], {"hydrogens": "keep"}, command=["test_streaming"])
    return ConformerStore(path)


def assert_same_molecule(got: Molecule, want: Molecule) -> None:
    for key in ARRAY_FIELDS:
        x, y = np.asarray(getattr(got, key)), np.asarray(getattr(want, key))
        assert x.shape == y.shape and np.array_equal(x, y), key
    assert got.edge_index.dtype == np.int64
    assert got.positions.dtype == np.float32 and got.atom_features.dtype == np.uint8
    assert (got.smiles, got.source_id, got.candidate_index) == (want.smiles, want.source_id, want.candidate_index)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(store path, the molecules written): 60 molecules, some without conformers."""
    molecules = make_molecules(60)
    assert any(m.num_conformers == 0 for m in molecules) and any(m.num_atoms == 1 for m in molecules)
    path = tmp_path_factory.mktemp("streaming") / "random.h5"
    write(path, molecules).close()
    return path, molecules


# -- store read paths ---------------------------------------------------------------------------------
def test_molecule_reads_return_what_was_written_through_the_raw_path(written):
    path, molecules = written
    with ConformerStore(path) as store:
        for i in (7, 0, 59, 31, 7, -1):
            assert_same_molecule(store.molecule(i), molecules[i])
        handles = store._open()
        assert all(handles.rows(name).raw for name, _ in ROW_FIELDS.values() if handles.rows(name).num_rows)
        m = store[3]
        m.positions += 1.0  # arrays are the caller's own, writable copies
        assert_same_molecule(store[3], molecules[3])
        assert store.smiles(5) == molecules[5].smiles
        with pytest.raises(IndexError):
            store[60]


def test_streamed_text_is_read_on_access_and_pickles_as_a_molecule(written):
    path, molecules = written
    with ConformerStore(path) as store:
        m = store[17]
        assert isinstance(m, StoredMolecule) and isinstance(m, Molecule)
        assert m.__dict__["_text"] == {}  # arrays only so far
        assert m.source_id == molecules[17].source_id and m.smiles == molecules[17].smiles
        plain = pickle.loads(pickle.dumps(store[4]))
        assert type(plain) is Molecule
        assert_same_molecule(plain, molecules[4])
        renamed = dataclasses.replace(store[4], smiles="CCO")
        assert renamed.smiles == "CCO" and renamed.source_id == molecules[4].source_id
        m.smiles = "N#N"
        assert m.smiles == "N#N" and store[17].smiles == molecules[17].smiles
        assert "smiles='N#N'" in repr(m)
    # the text of a molecule read before the store was closed is still reachable (reopens it)
    assert m.source_id == molecules[17].source_id
    store.close()


def test_molecules_at_any_order_with_repeats_equals_per_molecule_reads(written):
    path, molecules = written
    with ConformerStore(path) as store:
        indices = [41, 3, 4, 5, 41, -1, 0, 17, 16, 18, 5]
        got = store.molecules_at(indices)
        assert len(got) == len(indices)
        for g, i in zip(got, indices):
            assert_same_molecule(g, molecules[i])
            assert_same_molecule(g, store.molecule(i))
        assert store.molecules_at([]) == []
        perm = np.random.default_rng(1).permutation(len(molecules))
        for g, i in zip(store.molecules_at(perm), perm):
            assert_same_molecule(g, molecules[i])
        with pytest.raises(IndexError, match="60"):
            store.molecules_at([1, 60])


def test_load_holds_the_store_arrays_and_slices_like_python(written):
    path, molecules = written
    with ConformerStore(path) as store:
        arrays = store.load()
        assert isinstance(arrays, MoleculeArrays) and len(arrays) == len(molecules)
        for i, m in enumerate(molecules):
            assert_same_molecule(arrays[i], m)
        assert_same_molecule(arrays[-2], molecules[-2])
        assert arrays.smiles(9) == molecules[9].smiles
        assert arrays.num_conformers().tolist() == [m.num_conformers for m in molecules]
        assert arrays.num_atoms().tolist() == [m.num_atoms for m in molecules]
        # memory: the rows' bytes, 4 offset arrays and candidate ids (8 bytes each), the UTF-8 text
        n_atoms = sum(m.num_atoms for m in molecules)
        n_edges = sum(m.num_edges for m in molecules)
        n_conf = sum(m.num_conformers for m in molecules)
        n_pos = sum(m.num_conformers * m.num_atoms for m in molecules)
        text = sum(len(m.smiles.encode()) + len(m.source_id.encode()) for m in molecules)
        want = n_atoms * (1 + 2) + n_edges * (8 + 2) + n_pos * 12 + n_conf * (8 + 8 + 4)
        want += 4 * 8 * (len(molecules) + 1) + 8 * len(molecules) + text + 2 * 8 * (len(molecules) + 1)
        assert arrays.nbytes == want
        assert arrays.nbytes <= store.preload_bytes() == path.stat().st_size
        for a, b in [(0, 60), (10, 13), (59, 60), (5, 5), (58, 99), (-3, None)]:
            part = store.load(a, b)
            want_mols = molecules[a:b]
            assert len(part) == len(want_mols) == len(store.molecules(a, b))
            for x, y in zip(part, want_mols):
                assert_same_molecule(x, y)
        assert [m.smiles for m in store] == [m.smiles for m in molecules]


def test_packed_text_round_trips_utf8():
    values = ["", "CCO", "données", "ß" * 40, "c1ccccc1"]
    packed = PackedText.pack(values)
    assert len(packed) == len(values) and [packed[j] for j in range(len(values))] == values
    assert packed.nbytes == sum(len(v.encode()) for v in values) + 8 * (len(values) + 1)


def test_chunked_compressed_store_reads_the_same_through_h5py(written, tmp_path):
    """A store whose datasets are chunked and gzip-compressed has no raw byte position: every
    path falls back to h5py and returns the same molecules."""
    path, molecules = written
    copy = tmp_path / "chunked.h5"
    with h5py.File(path, "r") as src, h5py.File(copy, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                kw = dict(chunks=True, compression="gzip") if obj.shape and obj.shape[0] else {}
                dst.create_dataset(name, data=obj[()], dtype=obj.dtype, **kw)

        src.visititems(visit)
    with ConformerStore(copy) as store:
        assert not store._open().rows("conformers/positions").raw
        for i in (0, 13, 59):
            assert_same_molecule(store[i], molecules[i])
        for g, i in zip(store.molecules_at([44, 2, 3]), [44, 2, 3]):
            assert_same_molecule(g, molecules[i])
        for x, y in zip(store.load(), molecules):
            assert_same_molecule(x, y)


def test_corrupt_offsets_are_a_format_error_not_a_silent_read(written, tmp_path):
    path, molecules = written
    bad = tmp_path / "bad.h5"
    bad.write_bytes(path.read_bytes())
    with h5py.File(bad, "r+") as f:
        off = f["molecules/atom_offset"]
        off[-1] = off[-1] + 5  # points past the end of atoms/*
    with ConformerStore(bad) as store:
        assert_same_molecule(store[0], molecules[0])
        with pytest.raises(StoreFormatError, match="atoms/atomic_num.*outside"):
            store[len(molecules) - 1]


def test_a_file_truncated_under_an_open_store_is_a_format_error(written, tmp_path):
    path, molecules = written
    cut = tmp_path / "cut.h5"
    cut.write_bytes(path.read_bytes())
    with ConformerStore(cut) as store:
        assert_same_molecule(store[0], molecules[0])
        positions = store._open().rows("conformers/positions")
        assert positions.raw
        os.truncate(cut, positions.offset + positions.row_bytes)  # keeps one position row
        last = max(i for i, m in enumerate(molecules) if m.num_conformers)
        with pytest.raises(StoreFormatError, match="conformers/positions.*truncated"):
            store[last]


def test_pickled_and_forked_stores_read_their_own_handles(written):
    path, molecules = written
    store = ConformerStore(path)
    store[0]
    clone = pickle.loads(pickle.dumps(store))
    assert clone._open_file is None and "_cached_offsets" not in clone.__dict__
    assert_same_molecule(clone[11], molecules[11])
    dataset = PretrainDataset(store, views="2d", preload=False, seed=2)
    loader = torch.utils.data.DataLoader(dataset, batch_size=20, collate_fn=collate, num_workers=2,
                                         multiprocessing_context="fork")
    in_process = list(torch.utils.data.DataLoader(dataset, batch_size=20, collate_fn=collate))
    in_workers = list(loader)
    assert torch.cat([b.mol_index for b in in_workers]).unique().tolist() == list(range(len(molecules)))
    assert len(in_workers) == len(in_process)
    for a, b in zip(in_workers, in_process):
        assert torch.equal(a.mol_index, b.mol_index) and torch.equal(a.conf_index, b.conf_index)
        assert torch.equal(a.graph_2d.ndata["atom"], b.graph_2d.ndata["atom"])
        assert torch.equal(torch.stack(a.graph_2d.edges()), torch.stack(b.graph_2d.edges()))
    clone.close()
    store.close()


def test_streaming_keeps_nothing_per_molecule(tmp_path):
    """Reading the second half of a store after the first leaves Python's traced memory where it
    was: no cache grows with the molecules read (a kept Molecule is ~1 KB here)."""
    molecules = make_molecules(400, seed=3, min_conf=2)
    store = write(tmp_path / "many.h5", molecules)
    dataset = PretrainDataset(store, views="2d3d", preload=False, seed=0)
    assert dataset.store is store and not dataset.preloaded
    half = len(dataset) // 2
    tracemalloc.start()
    try:
        for i in range(half):
            dataset[i]
        store.molecules_at(range(0, 200))
        before = tracemalloc.get_traced_memory()[0]
        for i in range(half, len(dataset)):
            dataset[i]
        store.molecules_at(range(200, 400))
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    kept_by_a_cache = sum(m.positions.nbytes + m.edge_index.nbytes for m in molecules[200:])
    assert kept_by_a_cache > 100_000
    assert grown < 20_000, grown
    handles = store._open()
    assert len(handles._rows) <= len(ROW_FIELDS) + len(OFFSET_KEYS) + 1 and len(handles._texts) <= 2
    store.close()


# -- datasets: streaming == preloaded -------------------------------------------------------------------
def _equal(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
        return type(a) is type(b) and all(_equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return a == b


@pytest.mark.parametrize("views,sampling", [("2d3d", "all"), ("2d3d", "random"), ("2d", "random")])
def test_streaming_and_preloaded_datasets_give_identical_samples(tmp_path, views, sampling):
    molecules = make_molecules(30, seed=5, min_conf=0 if views == "2d" else 1)
    store = write(tmp_path / "ds.h5", molecules)
    kw = dict(views=views, conformer_sampling=sampling, mask_ratio=0.25, seed=7, cutoff=4.0, max_neighbors=6,
              attrmask=True, contextpred=True, contextpred_k=2, contextpred_r1=1, contextpred_r2=3)
    streaming = PretrainDataset(store, preload=False, **kw)
    loaded = PretrainDataset(store, preload=True, **kw)
    listed = PretrainDataset(store.molecules(), **kw)
    assert isinstance(loaded.store, MoleculeArrays) and loaded.preloaded
    assert streaming.store is store and not streaming.preloaded and not listed.preloaded
    assert len(streaming) == len(loaded) == len(listed)
    for epoch in (0, 3):
        for d in (streaming, loaded, listed):
            d.set_epoch(epoch)
        for i in range(len(streaming)):
            s = streaming[i]
            assert _equal(s, loaded[i]) and _equal(s, listed[i]), (epoch, i)
        assert s.graph.num_atoms > 0
    store.close()


# -- the preload policy --------------------------------------------------------------------------------
def test_auto_preload_threshold_is_the_file_size(written, monkeypatch):
    path, molecules = written
    with ConformerStore(path) as store:
        size = store.preload_bytes()
        assert size == path.stat().st_size
        assert resolve_preload(store, "auto", max_bytes=size) is True
        assert resolve_preload(store, "auto", max_bytes=size - 1) is False
        assert resolve_preload(store, True, max_bytes=0) is True
        assert resolve_preload(store, False, max_bytes=10**12) is False
        # the dataset reads the module's threshold when it is built
        assert PretrainDataset(store, views="2d").preloaded  # a few KB: far below 256 MiB
        monkeypatch.setattr(pretrain_dataset, "PRELOAD_AUTO_MAX_BYTES", size - 1)
        streamed = PretrainDataset(store, views="2d")
        assert not streamed.preloaded and streamed.store is store
        monkeypatch.setattr(pretrain_dataset, "PRELOAD_AUTO_MAX_BYTES", size)
        loaded = PretrainDataset(store, views="2d")
        assert loaded.preloaded and isinstance(loaded.store, MoleculeArrays)
        # what is in memory already is never loaded again
        arrays = store.load()
        for in_memory in (molecules, tuple(molecules), arrays):
            for preload in (True, False, "auto"):
                assert resolve_preload(in_memory, preload) is False
        assert PretrainDataset(arrays, views="2d", preload=True).store is arrays


def test_auto_leaves_sequences_of_unknown_size_alone_and_true_lists_them(written):
    path, molecules = written

    class Lazy:  # a sequence that cannot tell its size in memory
        def __len__(self):
            return len(molecules)

        def __getitem__(self, i):
            return molecules[i]

    lazy = Lazy()
    assert resolve_preload(lazy, "auto", max_bytes=10**12) is False
    assert PretrainDataset(lazy, views="2d").store is lazy
    listed = PretrainDataset(lazy, views="2d", preload=True)
    assert isinstance(listed.store, list) and len(listed.store) == len(molecules)


@pytest.mark.parametrize("bad", ["yes", "Auto", 1, None])
def test_invalid_preload_names_the_allowed_values(written, bad):
    path, _ = written
    with ConformerStore(path) as store, pytest.raises(ValueError, match=r"preload=.*True, False or 'auto'"):
        PretrainDataset(store, views="2d", preload=bad)
