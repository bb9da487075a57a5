"""Shards + merge, worker counts and interrupted runs all give the store of one plain run."""

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from geom_fixture import ZINC_SMILES, assert_same_datasets, assert_same_molecule, store_counts, write_smiles_csv
from graphmvp.prep import cli
from graphmvp.prep.config import PrepConfig, PrepError
from graphmvp.prep.merge import merge_stores
from graphmvp.prep.pipeline import prepare
from graphmvp.data.store import ConformerStore

OPTS = dict(n_conf=2, gen_confs=2)
# 7 molecules, one of them unparsable: after the shuffle it lands in exactly one shard
SHARD_SMILES = [ZINC_SMILES[0], ZINC_SMILES[1], "C1CC(", ZINC_SMILES[4], ZINC_SMILES[5], ZINC_SMILES[6], ZINC_SMILES[2]]


def report_text(store: Path) -> str:
    return Path(str(store) + ".skipped.tsv").read_text()


def assert_same_store(a: Path, b: Path) -> None:
    """Same datasets (molecules, conformers, skip table), same counts, same report."""
    assert_same_datasets(a, b)
    assert store_counts(a) == store_counts(b)
    assert report_text(a) == report_text(b)


@pytest.fixture(scope="module")
def shard_input(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    return d, write_smiles_csv(d / "in.csv", SHARD_SMILES)


def run(inp, out, **kw):
    return prepare(PrepConfig(input=str(inp), output=str(out), **{**OPTS, **kw}))


def run_shards(d, inp, n, tag, **kw):
    paths = []
    for i in range(n):
        p = d / f"{tag}_shard{i}of{n}.h5"
        if not p.exists():
            run(inp, p, shard=(i, n), **kw)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def single(shard_input):
    d, inp = shard_input
    out = d / "single.h5"
    result = run(inp, out)
    assert result.counts["skipped"] == {"unparsable_smiles": 1} and result.counts["kept"] == 6
    return out


def test_shards_merged_equal_a_single_run(shard_input, single):
    d, inp = shard_input
    shards = run_shards(d, inp, 3, "plain")
    faulty = [p for p in shards if ConformerStore(p).skipped()]
    assert len(faulty) == 1  # the unparsable SMILES is in one shard only
    merged = d / "merged.h5"
    result = merge_stores([str(p) for p in reversed(shards)], str(merged))  # given in any order
    assert_same_store(single, merged)
    assert result.counts == store_counts(single)
    cfg = ConformerStore(merged).config
    ref = ConformerStore(single).config
    assert {k: v for k, v in cfg.items() if k != "output"} == {k: v for k, v in ref.items() if k != "output"}
    assert cfg["shard"] is None


def test_shards_with_n_mol_merged_equal_a_capped_single_run(shard_input):
    d, inp = shard_input
    capped = d / "single_cap.h5"
    run(inp, capped, n_mol=4)
    assert len(ConformerStore(capped)) == 4
    shards = run_shards(d, inp, 3, "cap", n_mol=4)
    assert sum(len(ConformerStore(p)) for p in shards) == 6  # shards do not apply the cap
    merged = d / "merged_cap.h5"
    merge_stores([str(p) for p in shards], str(merged))
    assert_same_store(capped, merged)


def test_workers_and_chunk_size_do_not_change_the_store(shard_input, single):
    d, inp = shard_input
    two = d / "two_workers.h5"
    run(inp, two, workers=2, chunk_size=1)
    assert_same_store(single, two)
    big_chunks = d / "big_chunks.h5"
    run(inp, big_chunks, chunk_size=5)
    assert_same_store(single, big_chunks)
    # with a cap, the parallel run stops early but keeps the same first molecules
    capped_1, capped_2 = d / "cap_w1.h5", d / "cap_w2.h5"
    run(inp, capped_1, n_mol=3, chunk_size=1)
    run(inp, capped_2, n_mol=3, chunk_size=1, workers=2)
    assert_same_store(capped_1, capped_2)
    assert len(ConformerStore(capped_2)) == 3


def test_merge_refuses_bad_shard_sets(shard_input, single):
    d, inp = shard_input
    s0, s1, s2 = map(str, run_shards(d, inp, 3, "plain"))
    out = str(d / "refused.h5")
    with pytest.raises(PrepError, match=r"shards 2/3 are missing"):
        merge_stores([s0, s1], out)
    with pytest.raises(PrepError, match=r"shard 0/3 given twice"):
        merge_stores([s0, s1, s0, s2], out)
    other_seed = d / "seed_shard1of3.h5"
    run(inp, other_seed, shard=(1, 3), seed=778)
    with pytest.raises(PrepError, match=r"different options .*\(seed\)"):
        merge_stores([s0, str(other_seed), s2], out)
    two_way = d / "two_shard0of2.h5"
    run(inp, two_way, shard=(0, 2))
    with pytest.raises(PrepError, match=r"different options .*shard count"):
        merge_stores([s0, str(two_way), s2], out)
    with pytest.raises(PrepError, match=r"not a shard"):
        merge_stores([str(single)], out)
    with pytest.raises(PrepError, match=r"exists"):
        merge_stores([s0, s1, s2], str(single))
    assert not Path(out).exists()


def test_merge_creates_the_output_folder_and_refuses_a_second_writer(shard_input, single):
    import os

    from graphmvp.io import writer_lock

    d, inp = shard_input
    shards = [str(p) for p in run_shards(d, inp, 3, "plain")]
    out = d / "new_folder" / "sub" / "merged.h5"
    out.parent.mkdir(parents=True)
    with writer_lock(out) as lock:
        with pytest.raises(PrepError, match=rf"being written by another process \(PID {os.getpid()}"):
            merge_stores(shards, str(out))
        assert not out.exists()
    assert not lock.exists()
    out.parent.rmdir()
    merge_stores(shards, str(out))  # the missing folder is created
    assert_same_store(single, out)


def test_a_shard_of_only_bad_molecules_still_merges(tmp_path):
    """A shard whose molecules are all skipped is a valid part of the data set: it must produce
    a (molecule-less) shard store so that the merge equals the single run."""
    inp = write_smiles_csv(tmp_path / "in.csv", [ZINC_SMILES[0], ZINC_SMILES[1], "C1CC("])
    single = tmp_path / "single.h5"
    run(inp, single, shuffle=False)
    shards = []
    for i in range(3):
        p = tmp_path / f"s{i}.h5"
        run(inp, p, shuffle=False, shard=(i, 3))  # shard 2/3 holds only the unparsable SMILES
        shards.append(str(p))
    merged = tmp_path / "merged.h5"
    merge_stores(shards, str(merged))
    assert_same_store(single, merged)


# -- interrupted runs ------------------------------------------------------------------------------
N_RESUME = 40
RESUME_ARGS = ["--n-conf", "2", "--gen-confs", "3", "--chunk-size", "2"]


@pytest.fixture(scope="module")
def resume_input(zinc_csv, tmp_path_factory):
    """The first 40 molecules of the shared ZINC file as a small CSV."""
    import gzip

    with gzip.open(zinc_csv, "rt") as f:
        lines = [next(f) for _ in range(N_RESUME + 1)]
    d = tmp_path_factory.mktemp("resume")
    path = d / "zinc40.csv"
    path.write_text("".join(lines))
    return d, path


def chunk_files(parts: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(parts.glob("chunk_*.h5"))}


def test_killed_run_resumes_to_the_same_store(resume_input, monkeypatch, capsys):
    d, inp = resume_input
    store = d / "resumed.h5"
    parts = Path(str(store) + ".parts")
    argv = ["run", str(inp), "-o", str(store), *RESUME_ARGS]
    proc = subprocess.Popen([sys.executable, "-m", "graphmvp.prep.cli", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(list(parts.glob("chunk_*.h5"))) < 2:
            assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()!r}"
            assert time.monotonic() < deadline, "no chunk written in 120 s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not store.exists()
    before = chunk_files(parts)
    n_chunks = N_RESUME // 2
    assert 2 <= len(before) < n_chunks

    # a leftover from a run with different options is refused (and left alone) unless --overwrite
    other = d / "other.h5"
    shutil.copytree(parts, Path(str(other) + ".parts"))
    assert cli.main(["run", str(inp), "-o", str(store), *RESUME_ARGS, "--seed", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different options (seed)" in err[0] and "--overwrite" in err[0], err
    assert chunk_files(parts) == before and not store.exists()

    # restart with the same command, in this process so that we see the parts folder just
    # before the finished run removes it
    seen = {}
    real_rmtree = shutil.rmtree

    def spy_rmtree(path, *a, **kw):
        if Path(path) == parts:
            seen.update(chunk_files(parts))
        return real_rmtree(path, *a, **kw)

    monkeypatch.setattr("graphmvp.prep.pipeline.shutil.rmtree", spy_rmtree)
    assert cli.main(argv) == 0
    assert len(seen) == n_chunks
    for name, stamp in before.items():
        assert seen[name] == stamp, f"{name} was rewritten on resume"
    log = Path(str(store) + ".log").read_text()
    assert f"resuming: {len(before)} of {n_chunks} chunks already done" in log
    assert not parts.exists()

    # equals an uninterrupted run
    clean = d / "clean.h5"
    assert cli.main(["run", str(inp), "-o", str(clean), *RESUME_ARGS]) == 0
    assert_same_store(store, clean)
    assert store_counts(store)["candidates"] == N_RESUME

    # --overwrite discards the other run's leftover parts instead of resuming them
    assert cli.main(["run", str(inp), "-o", str(other), *RESUME_ARGS, "--n-mol", "3"]) == 2
    assert "different options (n_mol)" in capsys.readouterr().err
    assert cli.main(["run", str(inp), "-o", str(other), *RESUME_ARGS, "--n-mol", "3", "--overwrite"]) == 0
    assert "resuming" not in Path(str(other) + ".log").read_text()
    got, ref = ConformerStore(other), ConformerStore(clean)
    assert len(got) == 3
    for x, y in zip(got, ref.molecules(0, 3)):
        assert_same_molecule(x, y)
