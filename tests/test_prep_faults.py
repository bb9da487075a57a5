"""Bad input: the run finishes, keeps exactly the good molecules, names every bad one in
``STORE.skipped.tsv`` and in the counts; bad paths and empty inputs are one-line errors (exit 2)."""

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from rdkit import Chem

from geom_fixture import (
    GeomEntry,
    conformer_positions,
    conformer_records,
    embed_conformers,
    read_report,
    rebond,
    write_geom_folder,
    write_sdf,
    write_smiles_csv,
)
from graphmvp.prep.config import PrepConfig, PrepError
from graphmvp.prep.pipeline import prepare
from graphmvp.data.store import ConformerStore

canon = lambda s: Chem.MolToSmiles(Chem.MolFromSmiles(s))  # noqa: E731

GOOD1, GOOD2 = "CC(=O)Nc1ccccc1", "OCC(=O)Nc1ccncc1"
ACETONE = "CC(C)=O"  # its lowest-energy conformer is an enol: dropped, the molecule kept


@pytest.fixture(scope="module")
def faulty_geom(tmp_path_factory):
    root = tmp_path_factory.mktemp("faulty_geom")
    acetone = embed_conformers(ACETONE, 3, seed=3)
    # acetone atoms: C0 C1(C2)=O3, H4-H6 on C0. Move H4 from C0 to O3, C1=O3 -> single, C0-C1 -> double
    enol = rebond(acetone[0], remove=[(0, 4)], add=[(3, 4)], set_type=[(1, 3, Chem.BondType.SINGLE), (0, 1, Chem.BondType.DOUBLE)])
    assert Chem.MolToSmiles(Chem.RemoveHs(enol)) == "C=C(C)O"
    ester = embed_conformers("CCOC(C)=O", 2, seed=4)
    dissociated = rebond(ester[1], remove=[(1, 2)])  # C1-O2 broken: two fragments
    assert "." in Chem.MolToSmiles(Chem.RemoveHs(dissociated))
    pyridine = embed_conformers("c1ccncc1", 2, seed=6)
    benzene = embed_conformers("c1ccccc1", 1, seed=7)[0]
    entries = [
        GeomEntry(GOOD1, "good1", conformer_records(embed_conformers(GOOD1, 3, seed=1), [0.3, 0.0, 0.6])),
        GeomEntry(GOOD2, "good2", conformer_records(embed_conformers(GOOD2, 2, seed=2), [0.0, 0.2])),
        GeomEntry(ACETONE, "acetone", conformer_records([enol, acetone[1], acetone[2]], [0.0, 0.1, 0.2])),
        GeomEntry("CCN", "missing", conformer_records(embed_conformers("CCN", 2), [0.0, 0.1]), kind="missing"),
        GeomEntry("CCCO", "truncated", conformer_records(embed_conformers("CCCO", 2), [0.0, 0.1]), kind="truncated"),
        GeomEntry("CCOC(C)=O", "dissociated", conformer_records([ester[0], dissociated], [0.0, 0.1])),
        GeomEntry("c1ccncc1", "other_molecule", conformer_records([benzene, pyridine[1]], [0.0, 0.1])),
        GeomEntry("C1CC(", "bad_smiles", conformer_records(embed_conformers("CCS", 2), [0.0, 0.1])),
        GeomEntry("CC#N", "one_conformer", conformer_records(embed_conformers("CC#N", 1), [0.0])),
        GeomEntry("CCCl", "no_path", conformer_records(embed_conformers("CCCl", 2), [0.0, 0.1]), kind="no_path"),
    ]
    folder = write_geom_folder(root, entries)
    store = root / "faulty.h5"
    result = prepare(PrepConfig(input=str(folder), output=str(store), n_conf=2))
    return {"folder": folder, "store": store, "result": result, "acetone": acetone}


EXPECTED_MOLECULE_SKIPS = {
    ("drugs/missing.pickle", "missing_pickle"),
    ("drugs/truncated.pickle", "unreadable_pickle"),
    ("drugs/dissociated.pickle", "too_few_valid_conformers"),
    ("drugs/other_molecule.pickle", "too_few_valid_conformers"),
    ("drugs/bad_smiles.pickle", "unparsable_smiles"),
    ("drugs/one_conformer.pickle", "too_few_conformers"),
    ("summary_drugs.json[CCCl]", "no_pickle_path"),
}


def test_geom_faults_store_holds_exactly_the_good_molecules(faulty_geom):
    store = ConformerStore(faulty_geom["store"])
    assert {m.smiles for m in store} == {canon(GOOD1), canon(GOOD2), canon(ACETONE)}
    assert len(store) == 3


def test_geom_faults_report_names_every_bad_molecule(faulty_geom):
    rows = read_report(faulty_geom["store"])
    molecule_rows = {(r["source_id"], r["reason"]) for r in rows if r["level"] == "molecule"}
    assert molecule_rows == EXPECTED_MOLECULE_SKIPS
    assert sum(r["level"] == "molecule" for r in rows) == len(EXPECTED_MOLECULE_SKIPS)
    # the store's own skip table says the same
    store = ConformerStore(faulty_geom["store"])
    assert sorted((s.source_id, s.reason) for s in store.skipped()) == sorted((r["source_id"], r["reason"]) for r in rows)
    for r in rows:
        assert r["candidate_index"].isdigit()


def test_geom_changed_graph_conformer_dropped_molecule_kept(faulty_geom):
    rows = [r for r in read_report(faulty_geom["store"]) if r["level"] == "conformer"]
    assert [(r["source_id"], r["reason"]) for r in rows] == [("drugs/acetone.pickle", "conformer_changed_graph")]
    assert "conformer 0" in rows[0]["detail"]
    (m,) = [m for m in ConformerStore(faulty_geom["store"]) if m.smiles == canon(ACETONE)]
    assert m.conf_source_index.tolist() == [1, 2]
    acetone = faulty_geom["acetone"]
    assert np.array_equal(m.positions, np.stack([conformer_positions(acetone[1]), conformer_positions(acetone[2])]))


def test_geom_fault_counts(faulty_geom):
    counts = faulty_geom["result"].counts
    expected_skips = {}
    for _, reason in EXPECTED_MOLECULE_SKIPS:
        expected_skips[reason] = expected_skips.get(reason, 0) + 1
    assert counts == {
        "candidates": 10,
        "kept": 3,
        "skipped": expected_skips,
        "dropped_conformers": {"conformer_changed_graph": 1},
    }
    assert ConformerStore(faulty_geom["store"]).counts == counts


def _info_fields(text):
    fields = {}
    for line in text.splitlines():
        m = re.match(r"^(\s*)(\S+)\s+(\d+)\b", line)
        if m:
            fields[m.group(2)] = int(m.group(3))
    return fields


def test_info_reports_the_counts(faulty_geom, run_cli):
    p = run_cli("info", faulty_geom["store"])
    assert p.returncode == 0, p.stderr
    fields = _info_fields(p.stdout)
    counts = faulty_geom["result"].counts
    assert fields["molecules"] == 3
    assert fields["candidates"] == 10
    assert fields["skipped"] == 7
    for reason, n in counts["skipped"].items():
        assert fields[reason] == n, reason
    p = run_cli("info", faulty_geom["store"], "--skipped")
    assert p.returncode == 0
    listed = [line.split("\t") for line in p.stdout.splitlines() if line.count("\t") == 4]
    assert {(x[1], x[3]) for x in listed} >= EXPECTED_MOLECULE_SKIPS


def test_info_reports_dropped_conformers(faulty_geom):
    """``info`` prints the store's counts: the conformer-level drops too, not only skipped molecules."""
    text = ConformerStore(faulty_geom["store"]).summary().format()
    fields = _info_fields(text)
    assert fields.get("conformer_changed_graph") == 1, text


def test_smiles_csv_faults(tmp_path):
    csv = write_smiles_csv(tmp_path / "in.csv", [GOOD1, "C1CC(", GOOD2, "", "*C", "c1cccc1"])
    store = tmp_path / "s.h5"
    result = prepare(PrepConfig(input=str(csv), output=str(store), n_conf=2, gen_confs=2))
    assert {m.smiles for m in ConformerStore(store)} == {canon(GOOD1), canon(GOOD2)}
    rows = read_report(store)
    # CSV line numbers: header is line 1
    assert {(r["source_id"], r["reason"]) for r in rows} == {
        ("in.csv:3", "unparsable_smiles"),
        ("in.csv:5", "unparsable_smiles"),
        ("in.csv:6", "no_mmff_parameters"),
        ("in.csv:7", "unparsable_smiles"),
    }
    assert result.counts == {"candidates": 6, "kept": 2, "skipped": {"unparsable_smiles": 3, "no_mmff_parameters": 1}, "dropped_conformers": {}}


def test_sdf_unreadable_record_is_skipped(tmp_path):
    sdf = write_sdf(tmp_path / "in.sdf", [GOOD1, GOOD2])
    text = sdf.read_text()
    first, second = text.split("$$$$\n")[:2]
    sdf.write_text(first + "$$$$\nbroken\n  this is not a mol block\n\n$$$$\n" + second + "$$$$\n")
    store = tmp_path / "s.h5"
    result = prepare(PrepConfig(input=str(sdf), output=str(store), n_conf=2, gen_confs=2))
    assert {m.smiles for m in ConformerStore(store)} == {canon(GOOD1), canon(GOOD2)}
    assert [(r["source_id"], r["reason"]) for r in read_report(store)] == [("in.sdf#2 (broken)", "unparsable_record")]
    assert result.counts["skipped"] == {"unparsable_record": 1}


def test_sdf_records_without_title_are_read(tmp_path):
    """RDKit (and many tools) write an empty title line when a molecule has no name: such records
    are valid SDF and must be read like titled ones."""
    sdf = write_sdf(tmp_path / "untitled.sdf", [GOOD1, GOOD2], titled=False)
    assert sdf.read_text().startswith("\n")
    store = tmp_path / "s.h5"
    result = prepare(PrepConfig(input=str(sdf), output=str(store), n_conf=2, gen_confs=2))
    assert result.counts["skipped"] == {}, read_report(store)
    assert {m.smiles for m in ConformerStore(store)} == {canon(GOOD1), canon(GOOD2)}


def test_all_bad_input_is_an_error_with_report(tmp_path):
    csv = write_smiles_csv(tmp_path / "bad.csv", ["C1CC(", "c1cccc1"])
    store = tmp_path / "s.h5"
    with pytest.raises(PrepError, match="no molecule of 2"):
        prepare(PrepConfig(input=str(csv), output=str(store), n_conf=2, gen_confs=2))
    assert not store.exists()
    assert {r["reason"] for r in read_report(store)} == {"unparsable_smiles"}
    assert not Path(str(store) + ".parts").exists()  # the run is over: nothing left to resume
    write_smiles_csv(csv, [GOOD1, GOOD2])  # the input mended, the same command starts afresh
    result = prepare(PrepConfig(input=str(csv), output=str(store), n_conf=2, gen_confs=2))
    assert result.counts["kept"] == 2


# -- command-line errors: one line on stderr, exit code 2, nothing written -------------------------
def assert_one_line_error(p, *needles):
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("graphmvp-prep: error:"), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_cli_wrong_input_path(tmp_path, run_cli):
    p = run_cli(tmp_path / "nowhere.csv", "-o", tmp_path / "s.h5")
    assert_one_line_error(p, "nowhere.csv", "does not exist")
    assert list(tmp_path.iterdir()) == []


def test_cli_empty_inputs(tmp_path, run_cli):
    (tmp_path / "header_only.csv").write_text("smiles\n")
    (tmp_path / "empty.smi").write_text("")
    geom = tmp_path / "geom" / "rdkit_folder"
    geom.mkdir(parents=True)
    (geom / "summary_drugs.json").write_text("{}")
    for inp in ("header_only.csv", "empty.smi", "geom"):
        p = run_cli(tmp_path / inp, "-o", tmp_path / f"{inp}.h5")
        assert_one_line_error(p, "no molecules found")
        assert not (tmp_path / f"{inp}.h5").exists()


def test_cli_folder_without_summary(tmp_path, run_cli):
    (tmp_path / "empty_dir").mkdir()
    p = run_cli(tmp_path / "empty_dir", "-o", tmp_path / "s.h5")
    assert_one_line_error(p, "summary_drugs.json")


def test_cli_bad_store_paths(tmp_path, run_cli):
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = np.arange(3)
    p = run_cli("info", tmp_path / "missing.h5")
    assert_one_line_error(p, "missing.h5")
    p = run_cli("info", tmp_path / "plain.h5")
    assert_one_line_error(p, "plain.h5", "not a graphmvp conformer store")
    p = run_cli("merge", "-o", tmp_path / "m.h5", tmp_path / "missing.h5")
    assert_one_line_error(p, "missing.h5", "does not exist")


def test_cli_info_on_a_file_that_is_not_hdf5_names_it(tmp_path, run_cli):
    """The one-line error must say which file is bad (h5py's own message does not)."""
    (tmp_path / "text.h5").write_text("not hdf5\n")
    p = run_cli("info", tmp_path / "text.h5")
    assert_one_line_error(p, "text.h5")


@pytest.mark.parametrize(
    "option, message",
    [
        (dict(select="lowest"), r"unknown conformer rule 'lowest' \(known: energy, boltzmann, file\)"),
        (dict(hydrogens="none"), r"keep or drop, not 'none'"),
        (dict(source="xyz"), r"unknown source 'xyz' \(known: geom, smiles, sdf\)"),
        (dict(n_conf=0), r"--n-conf must be >= 1, not 0"),
        (dict(min_confs=3, max_confs=2), r"need 1 <= --min-confs <= --max-confs, got 3 and 2"),
        (dict(shard=(3, 3)), r"0 <= i < N, got 3/3"),
        (dict(n_mol=0), r"--n-mol must be >= 1, not 0"),
        (dict(exclude=["/nonexistent/downstream.csv"]), r"--exclude file .*downstream.csv does not exist"),
    ],
)
def test_bad_options_are_named(tmp_path, option, message):
    csv = write_smiles_csv(tmp_path / "in.csv", [GOOD1])
    with pytest.raises(PrepError, match=message):
        prepare(PrepConfig(input=str(csv), output=str(tmp_path / "s.h5"), **option))
    assert not (tmp_path / "s.h5").exists()


def test_existing_store_needs_overwrite(tmp_path, run_cli):
    csv = write_smiles_csv(tmp_path / "in.csv", [GOOD1])
    store = tmp_path / "s.h5"
    store.write_text("an older store")
    p = run_cli(csv, "-o", store, "--n-conf", "1", "--gen-confs", "1")
    assert_one_line_error(p, "exists", "--overwrite")
    assert store.read_text() == "an older store"
    p = run_cli(csv, "-o", store, "--n-conf", "1", "--gen-confs", "1", "--overwrite")
    assert p.returncode == 0, p.stderr
    assert [m.smiles for m in ConformerStore(store)] == [canon(GOOD1)]
    p = run_cli(csv, "-o", tmp_path / "new_dir" / "sub" / "s.h5", "--n-conf", "1", "--gen-confs", "1")
    assert p.returncode == 0, p.stderr  # missing output folders are created
    assert [m.smiles for m in ConformerStore(tmp_path / "new_dir" / "sub" / "s.h5")] == [canon(GOOD1)]
    assert ConformerStore(tmp_path / "new_dir" / "sub" / "s.h5").command == [
        "graphmvp-prep", "run", str(csv), "-o", str(tmp_path / "new_dir" / "sub" / "s.h5"), "--n-conf", "1", "--gen-confs", "1"]
    (tmp_path / "a_file").write_text("")
    p = run_cli(csv, "-o", tmp_path / "a_file" / "s.h5")
    assert_one_line_error(p, "a_file")


def test_a_second_writer_is_refused_naming_the_first_writers_pid(tmp_path, run_cli):
    import os

    from graphmvp.io import writer_lock

    csv = write_smiles_csv(tmp_path / "in.csv", [GOOD1])
    store = tmp_path / "s.h5"
    with writer_lock(store) as lock:
        assert lock.read_text().strip() == str(os.getpid())
        p = run_cli(csv, "-o", store, "--n-conf", "1", "--gen-confs", "1")
        assert_one_line_error(p, f"PID {os.getpid()}", str(lock))
        assert not store.exists()
    assert not lock.exists()
    lock.write_text("999999\n")  # left behind by a writer that died: no flock on it, reused
    p = run_cli(csv, "-o", store, "--n-conf", "1", "--gen-confs", "1")
    assert p.returncode == 0, p.stderr
    assert not lock.exists() and store.is_file()
