"""Task data downloads through a local HTTP server on 127.0.0.1 started by the test (stdlib
http.server in a thread, Range support, request log, a scripted connection cut). No other network."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from graphmvp.finetune.cli import main
from graphmvp.finetune.data import TableOptions, checksum_manifest, datasets_dir, fetch_task_file, load_dataset
from graphmvp.finetune.errors import FinetuneError
from graphmvp.finetune.tasks import TOX21_LABELS, get_task

SMILES = [
    "CCO", "CCN", "CCC", "CCCl", "CC(=O)O", "c1ccccc1", "c1ccccc1O", "c1ccccc1N", "c1ccncc1", "C1CCCCC1",
    "CC(C)O", "OCCO", "CC#N", "COC", "CCOC(=O)C", "c1ccc(Cl)cc1", "c1ccc(Br)cc1", "NC(=O)N", "CS(=O)C", "C=CC",
    "CC(=O)Nc1ccccc1", "Cc1ccccc1C", "OC1CCCCC1", "NC1CCCCC1", "c1ccoc1", "c1ccsc1", "C1CCOC1", "C1CCNC1",
    "CCCCO", "CCCCN", "OC(=O)c1ccccc1", "Oc1ccc(O)cc1", "CC(C)(C)O", "FC(F)F", "ClCCl", "CCCC(=O)O",
    "c1ccc2ccccc2c1", "C1CC1", "CC1CC1", "bad_smiles(",
]


def tox21_csv_gz(seed: int = 0) -> bytes:
    """A small tox21.csv.gz in the real column layout (12 assays, mol_id, smiles; empty = missing)."""
    rng = np.random.default_rng(seed)
    lines = [",".join(TOX21_LABELS + ("mol_id", "smiles"))]
    for i, smi in enumerate(SMILES):
        cells = [str(int(v)) if u > 0.3 else "" for v, u in zip(rng.integers(0, 2, 12), rng.random(12))]
        lines.append(",".join(cells + [f"TOX{i}", smi]))
    return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)


class _Server:
    """Serves ``files`` (path -> bytes) with Range support; ``cut[path] = k`` cuts the next k
    responses of that path after half of the body; ``requests`` logs (path, Range header)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 5

            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                if server.cut.get(self.path, 0) > 0:
                    server.cut[self.path] -= 1
                    self.wfile.write(part[: len(part) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(part)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHMVP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GRAPHMVP_DATASETS_MIRROR", raising=False)
    return tmp_path / "home"


def test_download_caches_records_checksum_and_featurises(server, home):
    payload = tox21_csv_gz()
    server.files["/tox21.csv.gz"] = payload
    spec = get_task("tox21")
    path = fetch_task_file(spec, urls=[server.url("/tox21.csv.gz")], progress=False)
    assert path == home / "datasets" / "tox21.csv.gz"
    assert path.read_bytes() == payload
    manifest = json.loads(checksum_manifest().read_text())
    assert manifest == {"tox21.csv.gz": hashlib.sha256(payload).hexdigest()}
    # cached: no second request
    n = len(server.requests)
    assert fetch_task_file(spec, urls=[server.url("/tox21.csv.gz")], progress=False) == path
    assert len(server.requests) == n
    ds = load_dataset(path, TableOptions(spec.smiles_col, spec.label_cols, spec.task_type, spec.drop_cols))
    assert ds.num_tasks == 12 and len(ds) == len(SMILES) - 1
    assert [s.smiles for s in ds.skipped] == ["bad_smiles("]


def test_checksum_mismatch_is_rejected_and_leaves_nothing(server, home):
    spec = get_task("tox21")
    server.files["/tox21.csv.gz"] = tox21_csv_gz(0)
    path = fetch_task_file(spec, urls=[server.url("/tox21.csv.gz")], progress=False)
    path.unlink()  # the cached copy is gone; the server now serves other bytes
    server.files["/tox21.csv.gz"] = tox21_csv_gz(1)
    with pytest.raises(FinetuneError, match="SHA-256 mismatch"):
        fetch_task_file(spec, urls=[server.url("/tox21.csv.gz")], progress=False)
    leftovers = sorted(p.name for p in datasets_dir().iterdir())
    assert leftovers == ["sha256.json"]  # no tox21.csv.gz, no .part, no lock


def test_interrupted_download_is_resumed(server, home):
    payload = tox21_csv_gz(2) * 40  # a few hundred kB: several reads
    server.files["/tox21.csv.gz"] = payload
    server.cut["/tox21.csv.gz"] = 1
    path = fetch_task_file(get_task("tox21"), urls=[server.url("/tox21.csv.gz")], progress=False)
    assert path.read_bytes() == payload
    assert server.requests[0] == ("/tox21.csv.gz", None)
    assert server.requests[1] == ("/tox21.csv.gz", f"bytes={len(payload) // 2}-")
    assert len(server.requests) == 2


def test_offline_error_names_url_and_manual_placement(home):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/SAMPL.csv"
    with pytest.raises(FinetuneError) as err:
        fetch_task_file(get_task("freesolv"), urls=[url], progress=False)
    text = str(err.value)
    assert url in text and "To install it by hand" in text and str(home / "datasets" / "SAMPL.csv") in text


def test_cli_finetunes_a_downloaded_classification_task(server, home, tmp_path, capsys, monkeypatch):
    """--task tox21 fetched from a mirror (GRAPHMVP_DATASETS_MIRROR), masked BCE over missing labels."""
    server.files["/mirror/tox21.csv.gz"] = tox21_csv_gz()
    monkeypatch.setenv("GRAPHMVP_DATASETS_MIRROR", server.url("/mirror"))
    out = tmp_path / "run"
    rc = main(["--task", "tox21", "--epochs", "2", "--num-layers", "2", "--emb-dim", "16", "--batch-size", "8",
               "--split", "random", "--seeds", "0", "--out", str(out), "--threads", "1", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "tox21" and summary["method"] == "no pretraining" and summary["metric"] == "roc_auc"
    assert summary["dataset"]["skipped"] == 1 and summary["dataset"]["molecules"] == len(SMILES) - 1
    per_task = summary["per_seed"][0]["test_roc_auc_per_task_at_best"]
    assert len(per_task) == 12
    evaluated = [a for a in per_task if a == a]  # tasks with both classes in the test part
    if evaluated:
        assert summary["result"]["test_at_best_valid"]["values"][0] == pytest.approx(float(np.mean(evaluated)))
    assert (out / "skipped.tsv").read_text().splitlines()[1].split("\t")[2] == "bad_smiles("
    assert server.requests[0][0] == "/mirror/tox21.csv.gz"
