"""Release manifest and verified checkpoint downloads (checkpoints package, graphmvp-download).

Downloads go to a local HTTP server on 127.0.0.1 started here (stdlib http.server in a thread,
with Range support and scripted faults: a connection cut mid-file, 404); the cache is a temporary
GRAPHMVP_HOME. The served file is a real encoder file, loaded at the end with load_pretrained.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import socket
import threading
from pathlib import Path

import pytest
import torch

from graphmvp.checkpoints import (
    MANIFEST_PATH,
    REQUIRED_CONFIG_KEYS,
    ManifestError,
    cache_path,
    checkpoint_status,
    fetch,
    load_manifest,
    sources_for,
)
from graphmvp.download import ChecksumError, DownloadError, sha256_file
from graphmvp.download_cli import main as download_main
from graphmvp.models import GIN
from graphmvp.pretrained import load_encoder_file, load_pretrained, save_encoder_file

NAME = "tiny-gin"
FILE = "tiny-gin-v1.pt"


# ------------------------------------------------------------------------------- the test server


class _State:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}  # path -> number of next responses cut after half the body
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()

    def paths(self) -> list[str]:
        with self.lock:
            return [p for p, _ in self.requests]


class _Handler(http.server.BaseHTTPRequestHandler):
    timeout = 5

    def log_message(self, *args):
        pass

    def do_GET(self):
        st: _State = self.server.state
        rng = self.headers.get("Range")
        with st.lock:
            st.requests.append((self.path, rng))
            cut = st.cut.get(self.path, 0) > 0
            if cut:
                st.cut[self.path] -= 1
        data = st.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1)) if rng else 0
        body = data[start:]
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cut:  # promise the whole body, send half, drop the connection
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = _State()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh GRAPHMVP_HOME and no mirrors from the environment."""
    path = tmp_path / "home"
    monkeypatch.setenv("GRAPHMVP_HOME", str(path))
    monkeypatch.delenv("GRAPHMVP_MIRRORS", raising=False)
    return path


TINY_CONFIG = {"encoder": "gin", "num_layers": 2, "emb_dim": 16, "dropout": 0.0, "jk": "last",
               "num_atom_type": 120, "num_chirality": 3, "pooling": "mean", "hydrogens": "drop",
               "features": "hu-simple"}


@pytest.fixture(scope="module")
def payload(tmp_path_factory) -> bytes:
    """The bytes of a real (tiny) encoder file, a few hundred KiB after padding with an extra."""
    torch.manual_seed(0)
    gin = GIN(num_layers=2, emb_dim=16)
    path = tmp_path_factory.mktemp("payload") / FILE
    # a padding extra makes the file big enough for several socket reads and a meaningful cut
    save_encoder_file(path, gin.state_dict(), TINY_CONFIG, padding=torch.zeros(60_000))
    return path.read_bytes()


def entry_dict(payload: bytes, urls, **over) -> dict:
    d = {
        "name": NAME,
        "description": "A two-layer GIN for tests. Random weights.",
        "file": FILE,
        "urls": list(urls),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
        "format": "graphmvp-encoder-v1",
        "config": dict(TINY_CONFIG),
        "recipe": {"data": "none", "epochs": 0, "loss": "none"},
        "licence": "MIT",
    }
    d.update(over)
    return d


def write_manifest(folder: Path, *entries: dict, version: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.json"
    path.write_text(json.dumps({"format_version": version, "checkpoints": list(entries)}))
    return path


def cache_files(home: Path) -> list[str]:
    folder = home / "checkpoints"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# ------------------------------------------------------------------------------ shipped manifest


def test_shipped_manifest_entries_match_their_files():
    """Every entry of the shipped manifest is complete and honest: shipped files have the listed
    size and SHA-256 and store the listed config; URLs are https release URLs or package files."""
    manifest = load_manifest()
    assert MANIFEST_PATH.is_file() and len(manifest) >= 1
    shipped = [e for e in manifest if e.package_file is not None]
    assert shipped, "at least one checkpoint must ship with the package (offline load_pretrained)"
    for e in manifest:
        assert e.licence and e.recipe and e.description
        assert set(REQUIRED_CONFIG_KEYS) <= set(e.config)
        for url in e.urls:
            assert url.startswith("https://github.com/graphmvp/graphmvp/releases/download/"), url
            assert url.endswith("/" + e.file)
        for key in ("data", "command", "loss", "epochs"):
            assert key in e.recipe, f"{e.name}: recipe lacks {key}"
    for e in shipped:
        assert e.package_path.is_file(), e.package_path
        assert e.package_path.stat().st_size == e.size
        assert sha256_file(e.package_path) == e.sha256
        assert e.size < 8 * 2**20, "shipped checkpoints must stay a few MB"
        raw = torch.load(e.package_path, map_location="cpu", weights_only=True)
        assert raw["format"] == e.format == "graphmvp-encoder-v1"
        assert raw["config"] == dict(e.config)


def test_shipped_checkpoint_status_and_fetch_need_no_network(home, monkeypatch):
    import urllib.request

    def offline(*a, **k):
        raise AssertionError("no network access expected")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    for e in load_manifest():
        if e.package_file is None:
            continue
        assert checkpoint_status(e, verify=True) == ("shipped", e.package_path)
        assert fetch(e.name) == e.package_path
    assert cache_files(home) == []  # used in place, not copied


# ------------------------------------------------------------------------------ manifest schema


@pytest.mark.parametrize(
    "change, message",
    [
        ({"sha256": "abc"}, "sha256 must be 64"),
        ({"size": 0}, "size must be a positive integer"),
        ({"name": "list"}, "must match"),
        ({"name": "Has Space"}, "must match"),
        ({"file": "../evil.pt"}, "bare file name"),
        ({"urls": ["ftp://x/y.pt"]}, "scheme 'ftp'"),
        ({"urls": []}, "needs at least one source"),
        ({"colour": "red"}, "unknown field"),
        ({"config": {"encoder": "gin"}}, "config lacks num_layers"),
        ({"recipe": {}}, "recipe must be a non-empty"),
    ],
)
def test_manifest_validation(tmp_path, payload, change, message):
    entry = entry_dict(payload, ["https://example.org/x.pt"])
    entry.update(change)
    path = write_manifest(tmp_path, entry)
    with pytest.raises(ManifestError, match=message):
        load_manifest(path)


def test_manifest_file_level_errors(tmp_path, payload):
    e = entry_dict(payload, ["https://example.org/x.pt"])
    with pytest.raises(ManifestError, match="listed twice"):
        load_manifest(write_manifest(tmp_path / "a", e, e))
    with pytest.raises(ManifestError, match="format_version 2"):
        load_manifest(write_manifest(tmp_path / "b", e, version=2))
    missing = {k: v for k, v in e.items() if k != "licence"}
    with pytest.raises(ManifestError, match="missing field.*licence"):
        load_manifest(write_manifest(tmp_path / "c", missing))
    (tmp_path / "d.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not readable JSON"):
        load_manifest(tmp_path / "d.json")
    with pytest.raises(ManifestError, match="does not exist"):
        load_manifest(tmp_path / "nope.json")
    m = load_manifest(write_manifest(tmp_path / "e", e))
    with pytest.raises(ValueError, match="unknown checkpoint 'other'; released checkpoints: tiny-gin"):
        m.get("other")
    assert m.get(NAME).to_dict() == e


# ------------------------------------------------------------------------------------ downloads


def test_download_success_then_cached_and_loadable(tmp_path, home, server, payload, capsys):
    server.state.files["/rel/" + FILE] = payload
    mpath = write_manifest(tmp_path / "m", entry_dict(payload, [server.base + "/rel/" + FILE]))
    assert download_main(["list", "--manifest", str(mpath)]) == 0
    assert re.search(rf"{NAME}\s+\S+ KiB\s+not downloaded", capsys.readouterr().out)

    assert download_main([NAME, "--manifest", str(mpath), "--quiet"]) == 0
    out = capsys.readouterr().out
    dest = home / "checkpoints" / FILE
    assert f"{NAME}: {dest} (cached; sha256" in out
    assert dest.read_bytes() == payload and cache_files(home) == [FILE]  # no .part, no .lock left

    assert download_main(["list", "--manifest", str(mpath), "--verify"]) == 0
    assert f"cached ({dest})" in capsys.readouterr().out
    n = len(server.state.requests)
    manifest = load_manifest(mpath)
    model, config = load_pretrained(NAME, manifest=manifest, progress=False)  # from the cache
    assert len(server.state.requests) == n and config == TINY_CONFIG and isinstance(model, GIN)

    # a cached file damaged later is noticed (hash) and fetched again before anything loads it
    dest.write_bytes(payload[:-10] + b"0123456789")
    assert checkpoint_status(manifest.get(NAME), verify=True)[0] == "corrupt"
    assert fetch(NAME, manifest=manifest, progress=False) == dest
    assert dest.read_bytes() == payload and len(server.state.requests) == n + 1


def test_resume_after_connection_cut(tmp_path, home, server, payload):
    """A transfer cut mid-file: the next attempt asks for the rest with Range (within one call,
    and across calls after a failed run left the .part behind)."""
    path = "/rel/" + FILE
    server.state.files[path] = payload
    manifest = load_manifest(write_manifest(tmp_path / "m", entry_dict(payload, [server.base + path])))
    server.state.cut[path] = 1
    assert fetch(NAME, manifest=manifest, progress=False) == cache_path(manifest.get(NAME))
    assert cache_path(manifest.get(NAME)).read_bytes() == payload
    ranges = [r for _, r in server.state.requests]
    assert ranges[0] is None and ranges[1] == f"bytes={len(payload) // 2}-"

    # across runs: retries=0 makes the first call give up and leave the partial file
    cache_path(manifest.get(NAME)).unlink()
    server.state.requests.clear()
    server.state.cut[path] = 1
    with pytest.raises(DownloadError):
        fetch(NAME, manifest=manifest, progress=False, retries=0)
    part = home / "checkpoints" / (FILE + ".part")
    assert part.stat().st_size == len(payload) // 2 and not (home / "checkpoints" / FILE).exists()
    fetch(NAME, manifest=manifest, progress=False)
    assert (home / "checkpoints" / FILE).read_bytes() == payload and not part.exists()
    assert [r for _, r in server.state.requests] == [None, f"bytes={len(payload) // 2}-"]


def test_checksum_mismatch_leaves_nothing(tmp_path, home, server, payload, capsys):
    server.state.files["/rel/" + FILE] = payload[:-1] + b"X"  # same size, other bytes
    mpath = write_manifest(tmp_path / "m", entry_dict(payload, [server.base + "/rel/" + FILE]))
    with pytest.raises(ChecksumError, match="SHA-256 mismatch"):
        fetch(NAME, manifest=load_manifest(mpath), progress=False)
    assert cache_files(home) == []
    assert download_main([NAME, "--manifest", str(mpath), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and "deleted" in err
    assert cache_files(home) == []


def test_404_and_server_down_name_the_url_and_the_hand_placement(tmp_path, home, server, payload, capsys):
    missing = server.base + "/rel/" + FILE  # nothing served there: 404
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}/rel/{FILE}"
    mpath = write_manifest(tmp_path / "m", entry_dict(payload, [missing, down]))
    with pytest.raises(DownloadError) as e:
        fetch(NAME, manifest=load_manifest(mpath), progress=False)
    text = str(e.value)
    assert missing in text and "404" in text and down in text
    assert str(home / "checkpoints" / FILE) in text and hashlib.sha256(payload).hexdigest() in text
    assert cache_files(home) == []
    assert download_main([NAME, "--manifest", str(mpath), "--quiet"]) == 1
    assert "To install it by hand" in capsys.readouterr().err


def test_mirrors_and_url_override(tmp_path, home, server, payload, monkeypatch):
    server.state.files["/mirror-a/" + FILE] = payload
    server.state.files["/mirror-b/" + FILE] = payload
    server.state.files["/other/name.pt"] = payload
    official = "https://github.invalid/rel/" + FILE  # would fail: never reached
    manifest = load_manifest(write_manifest(tmp_path / "m", entry_dict(payload, [official])))
    entry = manifest.get(NAME)
    monkeypatch.setenv("GRAPHMVP_MIRRORS", f"{server.base}/mirror-b, ")
    assert sources_for(entry, mirrors=[server.base + "/mirror-a/"]) == [
        f"{server.base}/mirror-a/{FILE}", f"{server.base}/mirror-b/{FILE}", official]
    fetch(NAME, manifest=manifest, progress=False, mirrors=[server.base + "/mirror-a"])
    assert server.state.paths() == ["/mirror-a/" + FILE]
    cache_path(entry).unlink()
    fetch(NAME, manifest=manifest, progress=False)  # env mirror first
    assert server.state.paths()[-1] == "/mirror-b/" + FILE
    cache_path(entry).unlink()
    assert sources_for(entry, urls=[server.base + "/other/name.pt"]) == [server.base + "/other/name.pt"]
    assert download_main([NAME, "--manifest", str(manifest.path), "--quiet", "--url",
                          server.base + "/other/name.pt"]) == 0
    assert server.state.paths()[-1] == "/other/name.pt" and cache_path(entry).read_bytes() == payload


def test_package_file_entries(tmp_path, home, server, payload, caplog):
    """A shipped copy next to the manifest is used in place; a damaged one is ignored (warning)
    and the checkpoint downloaded; with no URL to fall back on, the error says so."""
    folder = tmp_path / "pkg"
    mpath = write_manifest(folder, entry_dict(payload, [server.base + "/rel/" + FILE], package_file=FILE))
    (folder / FILE).write_bytes(payload)
    manifest = load_manifest(mpath)
    assert fetch(NAME, manifest=manifest, progress=False) == folder / FILE
    assert server.state.requests == []
    model, config = load_pretrained(NAME, manifest=manifest)
    assert config["emb_dim"] == 16

    (folder / FILE).write_bytes(payload[:-1] + b"Z")
    server.state.files["/rel/" + FILE] = payload
    assert fetch(NAME, manifest=manifest, progress=False) == home / "checkpoints" / FILE
    assert "does not match the manifest" in caplog.text

    only_shipped = write_manifest(tmp_path / "pkg2", entry_dict(payload, [], package_file=FILE))
    (tmp_path / "pkg2" / FILE).write_bytes(payload[:-1] + b"Z")
    (home / "checkpoints" / FILE).unlink()
    with pytest.raises(DownloadError, match="shipped copy does not match"):
        fetch(NAME, manifest=load_manifest(only_shipped), progress=False)


def test_manifest_config_must_match_the_file(tmp_path, home, payload):
    folder = tmp_path / "pkg"
    wrong = dict(TINY_CONFIG, hydrogens="keep")
    mpath = write_manifest(folder, entry_dict(payload, [], package_file=FILE, config=wrong))
    (folder / FILE).write_bytes(payload)
    with pytest.raises(ValueError, match="manifest entry and the file disagree on hydrogens"):
        load_pretrained(NAME, manifest=load_manifest(mpath))
    assert load_encoder_file(folder / FILE)[1]["hydrogens"] == "drop"


def test_cli_argument_errors(tmp_path, payload, capsys, home):
    mpath = write_manifest(tmp_path / "m", entry_dict(payload, ["https://example.org/" + FILE]))
    assert download_main(["nope", "--manifest", str(mpath)]) == 2
    assert "unknown checkpoint(s) nope; released: tiny-gin" in capsys.readouterr().err
    assert download_main(["list", NAME, "--manifest", str(mpath)]) == 2
    assert download_main(["list", "--manifest", str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_release_tool_from_a_run_folder(tmp_path, home):
    """graphmvp.checkpoints.release: run folder -> float16 package file + manifest entry whose recipe is
    taken from the run's records; the result validates and loads by name."""
    from graphmvp.checkpoints.release import main as release_main

    run = tmp_path / "run"
    torch.manual_seed(1)
    gin = GIN(num_layers=2, emb_dim=16)
    save_encoder_file(run / "model_2d.pt", gin.state_dict(), TINY_CONFIG, epoch=2, loss=0.5)
    (run / "config.yaml").write_text("preset: graphmvp\nloss: [ebm-nce, vrr]\nepochs: 2\nbatch_size: 4\nlr: 0.001\nseed: 0\n")
    (run / "metrics.csv").write_text(
        "epoch,steps,samples,loss_ebm_nce,loss_vrr,loss_total,acc_cl,samples_per_s,seconds,data_seconds\n"
        "1,5,20,1.3,4.0,5.3,0.5,10,2.0,0.1\n2,5,20,1.2,2.0,3.2,0.6,10,2.5,0.1\n"
    )
    pkg = tmp_path / "pkg"
    write_manifest(pkg)
    assert release_main([str(run), "--name", "tiny-release", "--description", "Tiny. For tests.",
                         "--data", "four molecules", "--command", "graphmvp-pretrain --epochs 2",
                         "--dtype", "float16", "--ship", "--manifest", str(pkg / "manifest.json"),
                         "--url-base", "https://github.com/graphmvp/graphmvp/releases/download/v0.1.0"]) == 0
    manifest = load_manifest(pkg / "manifest.json")
    e = manifest.get("tiny-release")
    assert e.package_path == pkg / "tiny-release.pt" and sha256_file(e.package_path) == e.sha256
    assert e.urls == ("https://github.com/graphmvp/graphmvp/releases/download/v0.1.0/tiny-release.pt",)
    r = e.recipe
    assert (r["loss"], r["epochs_done"], r["optimizer_steps"], r["samples_seen"]) == ("ebm-nce+vrr", 2, 10, 40)
    assert r["final_epoch_losses"] == {"ebm_nce": 1.2, "vrr": 2.0, "total": 3.2} and r["wall_seconds"] == 4.5
    assert r["weights_dtype"] == "float16" and r["command"] == ["graphmvp-pretrain --epochs 2"]
    model, config = load_pretrained("tiny-release", manifest=manifest)
    assert config == TINY_CONFIG
    for k, v in gin.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v.half().to(v.dtype))
