"""benchmarks/vs_peers_docs.py: the side-by-side tables of docs/benchmarks.md are computed from
finetune_vs_peers' results, between markers, and the committed document agrees with the committed
results."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def docs():
    return load_benchmark("vs_peers_docs")


def _rec(dataset, method, seed, value, metric="rmse", last=None, init=None):
    r = {"dataset": dataset, "method": method, "init": init, "seed": seed, "metric": metric,
         "valid": {metric: 0.0}, "test": {metric: value}, "seconds": 1.0}
    if last is not None:
        r["test_last"] = {metric: last}
    return r


def test_cells_are_mean_and_population_std_over_the_first_record_of_each_seed(docs):
    rs = [_rec("esol", "chemprop", s, v, last=v + 1) for s, v in enumerate([1.0, 2.0, 3.0])]
    rs.append(_rec("esol", "chemprop", 0, 100.0))  # a second process ran seed 0 again: ignored
    groups = docs.group(rs)
    assert len(groups[("esol", "chemprop")]) == 3
    assert docs.cell(groups[("esol", "chemprop")]) == "2.000 (0.816)"  # std of 1,2,3 with ddof=0: sqrt(2/3)
    assert docs.cell(groups[("esol", "chemprop")], "test_last") == "3.000 (0.816)"
    assert docs.cell(groups[("esol", "chemprop")][:2]) == "1.500 (0.500) [2 seeds]"
    assert docs.cell(groups[("esol", "chemprop")][:1]) == "1.000 (0.000) [1 seed]"
    assert docs.cell([]) == "-"
    assert docs.cell([_rec("esol", "x", 0, 1.0)], "test_last") == "n/a"  # recorded before test_last was kept


def test_a_grid_leaves_out_rows_and_columns_without_results(docs):
    grid = docs.Grid("test RMSE", (("a", "A"), ("b", "B"), ("never", "N")), ("esol", "lipo", "ace:CHEMBL1_Ki"))
    groups = docs.group([_rec("esol", "a", 0, 0.5), _rec("ace:CHEMBL1_Ki", "b", 0, 0.25)])
    assert grid.render(groups).split("\n") == [
        "| data (test RMSE) | A | B |",
        "|---|---|---|",
        "| esol | 0.500 (0.000) [1 seed] | - |",
        "| CHEMBL1_Ki | - | 0.250 (0.000) [1 seed] |",
    ]
    with pytest.raises(ValueError, match="no results"):
        docs.Grid("x", (("never", "N"),), ("esol",)).render(groups)


def test_relative_rmse_against_chemprop_counts_the_sets_a_row_is_ahead_on(docs):
    rs = [_rec("esol", "chemprop", s, 2.0) for s in range(3)] + [_rec("lipo", "chemprop", 0, 1.0)]
    rs += [_rec("esol", "gin", 0, 1.0), _rec("esol", "gin", 1, 2.0),  # mean 1.5 against 2.0: -25%
           _rec("lipo", "gin", 0, 1.1)]  # +10%
    rel = docs.Relative((("gin", "GIN"), ("absent", "no results")), datasets=("esol", "lipo", "freesolv"))
    assert rel.render(docs.group(rs)).split("\n") == [
        "| test RMSE against chemprop | esol | lipo | mean | ahead on |",
        "|---|---|---|---|---|",
        "| GIN | -25.0% | +10.0% | -7.5% | 1/2 |",
    ]


DOC = """# Title
Prose before, kept.
<!-- vs-peers: user-classification -->
| an old table |
<!-- /vs-peers -->
Prose between.
<!-- vs-peers: classification-last-epoch -->
<!-- /vs-peers -->
Prose after."""


def test_fill_rewrites_only_between_the_markers_and_is_idempotent(docs):
    groups = docs.group([_rec("bbbp", "chemprop", s, 0.6 + s / 100, metric="roc_auc") for s in range(3)]
                        + [_rec("bace", "gin-default-scratch", 0, 0.7, metric="roc_auc", last=0.75)])
    out = docs.fill(DOC, groups)
    lines = out.split("\n")
    assert lines[:3] == DOC.split("\n")[:3] and lines[-1] == "Prose after." and "Prose between." in lines
    assert "| an old table |" not in out
    assert "| bbbp | 0.610 (0.008) | - |" in lines  # chemprop, then the GIN column with bace only
    assert "| bace | 0.750 (0.000) [1 seed] |" in lines  # the last-epoch view reads test_last
    assert docs.fill(out, groups) == out


@pytest.mark.parametrize("text, message", [
    ("a\n<!-- vs-peers: no-such-view -->\n<!-- /vs-peers -->", r"doc:2: unknown view 'no-such-view'"),
    ("a\n<!-- vs-peers: user-classification -->\n| t |", r"doc:2: view 'user-classification' is not closed"),
    ("<!-- vs-peers: user-classification -->\n<!-- vs-peers: chemprop-lead -->\n<!-- /vs-peers -->", "not closed"),
])
def test_fill_refuses_unknown_views_and_open_markers_naming_the_line(docs, text, message):
    groups = docs.group([_rec("bbbp", "chemprop", 0, 0.6, metric="roc_auc")])
    with pytest.raises(ValueError, match=message):
        docs.fill(text, groups, "doc")


def test_check_reports_a_stale_table_and_the_rewrite_fixes_it(docs, tmp_path, capsys):
    results = tmp_path / "results.jsonl"
    recs = [_rec("bbbp", "chemprop", s, 0.6, metric="roc_auc") for s in range(3)]
    recs.append(_rec("bbbp", "gin-paper-scratch", 0, 0.6, metric="roc_auc", last=0.7))
    results.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    doc = tmp_path / "doc.md"
    doc.write_text(DOC)
    args = ["--results", str(results), "--doc", str(doc)]
    assert docs.main([*args, "--check"]) == 1
    assert doc.read_text() == DOC  # --check writes nothing
    assert docs.main(args) == 0
    assert "| bbbp | 0.600 (0.000) |" in doc.read_text()
    assert docs.main([*args, "--check"]) == 0
    doc.write_text("<!-- vs-peers: nope -->\n<!-- /vs-peers -->")
    assert docs.main(args) == 2 and "unknown view 'nope'" in capsys.readouterr().err
    results.write_text(json.dumps(_rec("bbbp", "chemprop", 0, 0.6, metric="roc_auc")) + "\n")
    doc.write_text(DOC)
    assert docs.main(args) == 2  # the last-epoch view has no GIN row to show
    assert "doc.md:7: view 'classification-last-epoch': no results" in capsys.readouterr().err


def test_the_committed_document_agrees_with_the_committed_results(docs):
    """docs/benchmarks.md's side-by-side tables are what results.jsonl gives: after new results,
    run python benchmarks/vs_peers_docs.py and commit both."""
    assert docs.main(["--check"]) == 0
