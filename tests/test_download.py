"""graphmvp.download against a local HTTP server on 127.0.0.1 started by the tests (stdlib
http.server in a thread, Range support written here, request log, scripted faults: a connection
cut mid-file, Range ignored, error statuses). No other network access."""

from __future__ import annotations

import hashlib
import http.server
import json
import pickle
import random
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from graphmvp import download as dl
from graphmvp.download import (
    ChecksumError,
    DownloadError,
    DownloadProblem,
    cache_dir,
    download,
    known_checksum,
    record_checksum,
    sha256_file,
)

PAYLOAD = random.Random(0).randbytes(300_000)  # several socket reads; not a multiple of 1 MiB
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
WRONG_SHA = "0" * 64


# ------------------------------------------------------------------------------- the test server


class _State:
    """Files served, faults to inject, and the log of (path, Range header) of every request."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}  # path -> how many of the next responses are cut at half
        self.ignore_range: set[str] = set()
        self.statuses: dict[str, list[int]] = {}  # path -> error statuses to answer first
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()

    def count(self, path: str | None = None) -> int:
        with self.lock:
            return sum(1 for p, _ in self.requests if path is None or p == path)


class _Handler(http.server.BaseHTTPRequestHandler):
    timeout = 5  # socket timeout: a stuck client cannot hold a server thread

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        st: _State = self.server.state
        path, rng = self.path, self.headers.get("Range")
        with st.lock:
            st.requests.append((path, rng))
            status = st.statuses[path].pop(0) if st.statuses.get(path) else None
            cut = st.cut.get(path, 0) > 0
            if cut:
                st.cut[path] -= 1
        if status is not None:
            self.send_error(status)
            return
        data = st.files.get(path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if rng is not None and path not in st.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cut:  # announce the full length, send half, close the connection (HTTP/1.0)
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    """(state, base URL) of a threaded HTTP server on 127.0.0.1; always shut down afterwards,
    and by a watchdog after 60 s whatever happens."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = _State()
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    watchdog = threading.Timer(60, httpd.shutdown)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield httpd.state, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        watchdog.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
        assert not thread.is_alive()


@pytest.fixture(autouse=True)
def _no_proxy_no_wait(monkeypatch):
    """Talk to 127.0.0.1 directly (whatever proxy the environment sets) and never sleep."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(dl, "_RETRY_WAIT_S", 0.0)


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# ----------------------------------------------------------------------------------------- tests


def test_sha256_file_matches_hashlib(tmp_path):
    big = tmp_path / "big"
    data = random.Random(1).randbytes((1 << 20) * 2 + 17)  # spans three 1 MiB blocks
    big.write_bytes(data)
    assert sha256_file(big) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_success_content_and_hash(server, tmp_path):
    st, base = server
    st.files["/model.pth"] = PAYLOAD
    dest = tmp_path / "sub" / "model.pth"
    got = download(
        f"{base}/model.pth", dest, sha256=PAYLOAD_SHA.upper(), size=len(PAYLOAD), progress=False
    )
    assert got == dest
    assert dest.read_bytes() == PAYLOAD
    assert sha256_file(dest) == PAYLOAD_SHA
    assert _leftovers(dest.parent) == ["model.pth"]  # no .part, no .lock
    assert st.requests == [("/model.pth", None)]


def test_second_call_does_not_touch_network(server, tmp_path):
    st, base = server
    st.files["/a.bin"] = PAYLOAD
    dest = tmp_path / "a.bin"
    download(f"{base}/a.bin", dest, sha256=PAYLOAD_SHA, progress=False)
    assert st.count() == 1
    download(f"{base}/a.bin", dest, sha256=PAYLOAD_SHA, progress=False)
    download(f"{base}/a.bin", dest, progress=False)  # no hash: existence is enough
    download([f"http://127.0.0.1:{_closed_port()}/a.bin"], dest, sha256=PAYLOAD_SHA, progress=False)
    assert st.count() == 1


def test_existing_file_with_wrong_hash_is_downloaded_again(server, tmp_path):
    st, base = server
    st.files["/a.bin"] = PAYLOAD
    dest = tmp_path / "a.bin"
    dest.write_bytes(b"an older version")
    download(f"{base}/a.bin", dest, sha256=PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert st.count() == 1


def test_resume_after_connection_cut_mid_file(server, tmp_path):
    st, base = server
    st.files["/big.bin"] = PAYLOAD
    st.cut["/big.bin"] = 1
    dest = tmp_path / "big.bin"
    download(f"{base}/big.bin", dest, sha256=PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    half = len(PAYLOAD) // 2
    assert st.requests == [("/big.bin", None), ("/big.bin", f"bytes={half}-")]
    assert not _part(dest).exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    st, base = server
    st.files["/big.bin"] = PAYLOAD
    st.cut["/big.bin"] = 1
    st.ignore_range.add("/big.bin")
    dest = tmp_path / "big.bin"
    download(f"{base}/big.bin", dest, sha256=PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD  # a 200 answer was not appended to the half file
    assert st.requests == [("/big.bin", None), ("/big.bin", f"bytes={len(PAYLOAD) // 2}-")]


def test_existing_part_is_resumed(server, tmp_path):
    st, base = server
    st.files["/big.bin"] = PAYLOAD
    dest = tmp_path / "big.bin"
    _part(dest).write_bytes(PAYLOAD[:1234])  # left by an interrupted earlier run
    download(f"{base}/big.bin", dest, sha256=PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert st.requests == [("/big.bin", "bytes=1234-")]


def test_stale_part_failing_the_hash_is_fetched_again_from_zero(server, tmp_path):
    st, base = server
    st.files["/big.bin"] = PAYLOAD
    dest = tmp_path / "big.bin"
    _part(dest).write_bytes(b"x" * 1000)  # .part of some other version of the file
    download(f"{base}/big.bin", dest, sha256=PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert st.requests == [("/big.bin", "bytes=1000-"), ("/big.bin", None)]


def test_complete_part_answered_416_is_verified_and_kept(server, tmp_path):
    st, base = server
    st.files["/big.bin"] = PAYLOAD
    dest = tmp_path / "big.bin"
    _part(dest).write_bytes(PAYLOAD)  # an earlier run stopped just before the rename
    download(f"{base}/big.bin", dest, sha256=PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert st.requests == [("/big.bin", f"bytes={len(PAYLOAD)}-")]
    # With the size known, a complete .part needs no request at all.
    dest.unlink()
    _part(dest).write_bytes(PAYLOAD)
    download(f"{base}/big.bin", dest, sha256=PAYLOAD_SHA, size=len(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD and st.count() == 1


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    st, base = server
    st.files["/a.bin"] = PAYLOAD
    dest = tmp_path / "a.bin"
    url = f"{base}/a.bin"
    with pytest.raises(ChecksumError) as info:
        download(url, dest, sha256=WRONG_SHA, progress=False)
    message = str(info.value)
    assert url in message and WRONG_SHA in message and PAYLOAD_SHA in message
    assert "deleted" in message
    err = info.value
    assert (err.what, err.expected, err.actual) == ("sha256", WRONG_SHA, PAYLOAD_SHA)
    assert _leftovers(tmp_path) == []  # no dest, no .part, no .lock
    assert isinstance(info.value, DownloadProblem) and isinstance(info.value, RuntimeError)


def test_size_mismatch(server, tmp_path):
    st, base = server
    st.files["/a.bin"] = PAYLOAD
    dest = tmp_path / "a.bin"
    with pytest.raises(ChecksumError) as info:
        download(f"{base}/a.bin", dest, size=len(PAYLOAD) + 1, progress=False)
    err = info.value
    assert (err.what, err.expected, err.actual) == ("size", len(PAYLOAD) + 1, len(PAYLOAD))
    assert f"expected {len(PAYLOAD) + 1} bytes, got {len(PAYLOAD)} bytes" in str(info.value)
    assert _leftovers(tmp_path) == []


def test_404_names_url_and_how_to_place_the_file(server, tmp_path):
    _, base = server
    dest = tmp_path / "missing.pth"
    url = f"{base}/missing.pth"
    with pytest.raises(DownloadError) as info:
        download(url, dest, sha256=PAYLOAD_SHA, progress=False)
    message = str(info.value)
    assert f"{url}: HTTP Error 404" in message
    assert f"download {url} yourself and put it at {dest} (sha256 {PAYLOAD_SHA})" in message
    assert info.value.failures[0][0] == url
    assert _leftovers(tmp_path) == []


def test_server_down(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/x.bin"
    dest = tmp_path / "x.bin"
    t0 = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download(url, dest, progress=False, timeout=5)
    assert time.monotonic() - t0 < 5  # a refused connection is not retried
    assert url in str(info.value) and "refused" in str(info.value).lower()
    assert not dest.exists()


def test_mirror_fallback_and_one_message_for_all_failures(server, tmp_path):
    st, base = server
    st.files["/good/a.bin"] = PAYLOAD
    dest = tmp_path / "a.bin"
    down = f"http://127.0.0.1:{_closed_port()}/a.bin"
    mirrors = [down, f"{base}/bad/a.bin", f"{base}/good/a.bin"]
    download(mirrors, dest, sha256=PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert [p for p, _ in st.requests] == ["/bad/a.bin", "/good/a.bin"]

    with pytest.raises(DownloadError) as info:
        download([down, f"{base}/bad/b.bin"], tmp_path / "b.bin", progress=False)
    message = str(info.value)
    assert down in message and f"{base}/bad/b.bin: HTTP Error 404" in message
    assert "tried 2 source(s)" in message
    # No hash known: the hint has no "(sha256 ...)".
    assert f"download {down} yourself and put it at {tmp_path / 'b.bin'}." in message


def test_retryable_status_then_success(server, tmp_path):
    st, base = server
    st.files["/a.bin"] = PAYLOAD
    st.statuses["/a.bin"] = [503, 500]
    dest = tmp_path / "a.bin"
    download(f"{base}/a.bin", dest, sha256=PAYLOAD_SHA, progress=False, retries=2)
    assert dest.read_bytes() == PAYLOAD and st.count("/a.bin") == 3


def test_retries_exhausted_keeps_part_for_a_later_resume(server, tmp_path):
    st, base = server
    st.files["/a.bin"] = PAYLOAD
    st.cut["/a.bin"] = 3
    dest = tmp_path / "a.bin"
    with pytest.raises(DownloadError) as info:
        download(f"{base}/a.bin", dest, sha256=PAYLOAD_SHA, progress=False, retries=2)
    assert "gave up after 3 attempt(s)" in str(info.value)
    assert st.count() == 3 and not dest.exists()
    # Three halves: 150000, then half of the remaining 150000, then half of the remaining 75000.
    assert _part(dest).stat().st_size == 150_000 + 75_000 + 37_500
    download(f"{base}/a.bin", dest, sha256=PAYLOAD_SHA, progress=False)  # resumes where it stopped
    assert dest.read_bytes() == PAYLOAD
    assert st.requests[-1] == ("/a.bin", "bytes=262500-")


def test_file_url_and_plain_path(tmp_path):
    src = tmp_path / "src" / "data.csv"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    out = tmp_path / "out"
    download(src.as_uri(), out / "via_url.csv", sha256=PAYLOAD_SHA, progress=False)
    download(str(src), out / "via_str.csv", sha256=PAYLOAD_SHA, progress=False)
    download(src, out / "via_path.csv", size=len(PAYLOAD), progress=False)
    for name in ("via_url.csv", "via_str.csv", "via_path.csv"):
        assert (out / name).read_bytes() == PAYLOAD
    assert _leftovers(out) == ["via_path.csv", "via_str.csv", "via_url.csv"]
    with pytest.raises(DownloadError, match="cannot read"):
        download((tmp_path / "nope.csv").as_uri(), out / "nope.csv", progress=False)


def test_bad_arguments(tmp_path):
    dest = tmp_path / "x"
    with pytest.raises(ValueError, match="at least one source"):
        download([], dest)
    with pytest.raises(ValueError, match="unsupported URL scheme 'ftp'.*allowed"):
        download("ftp://example.org/x", dest)
    with pytest.raises(ValueError, match="64 hexadecimal"):
        download("http://127.0.0.1/x", dest, sha256="abc")
    with pytest.raises(ValueError, match="size"):
        download("http://127.0.0.1/x", dest, size=-1)
    with pytest.raises(ValueError, match="retries"):
        download("http://127.0.0.1/x", dest, retries=-1)
    with pytest.raises(ValueError, match="timeout"):
        download("http://127.0.0.1/x", dest, timeout=0)
    assert _leftovers(tmp_path) == []


def test_waits_for_a_concurrent_download_of_the_same_file(server, tmp_path):
    st, base = server
    st.files["/a.bin"] = PAYLOAD
    dest = tmp_path / "a.bin"
    result = {}

    def worker():
        result["path"] = download(f"{base}/a.bin", dest, sha256=PAYLOAD_SHA, progress=False)

    with dl._locked(dest.with_name(dest.name + ".lock")):  # "another process" is downloading
        thread = threading.Thread(target=worker, daemon=True)
        thread.start()
        thread.join(0.1)
        assert thread.is_alive() and st.count() == 0  # blocked on the lock, not downloading
        dest.write_bytes(PAYLOAD)  # the other process finishes
    thread.join(5)
    assert not thread.is_alive() and result["path"] == dest
    assert st.count() == 0  # found the finished file, no network
    assert _leftovers(tmp_path) == ["a.bin"]


def test_checksum_manifest_round_trip(tmp_path):
    manifest = tmp_path / "cache" / "checksums.json"
    assert known_checksum(manifest, "tox21.csv.gz") is None
    record_checksum(manifest, "tox21.csv.gz", PAYLOAD_SHA.upper())
    record_checksum(manifest, "bbbp.csv", WRONG_SHA)
    record_checksum(manifest, "bbbp.csv", WRONG_SHA)  # same again: fine
    assert known_checksum(manifest, "tox21.csv.gz") == PAYLOAD_SHA
    assert known_checksum(manifest, "bbbp.csv") == WRONG_SHA
    assert known_checksum(manifest, "other") is None
    assert json.loads(manifest.read_text()) == {"bbbp.csv": WRONG_SHA, "tox21.csv.gz": PAYLOAD_SHA}
    with pytest.raises(ValueError, match="already records"):
        record_checksum(manifest, "bbbp.csv", PAYLOAD_SHA)
    record_checksum(manifest, "bbbp.csv", PAYLOAD_SHA, overwrite=True)
    assert known_checksum(manifest, "bbbp.csv") == PAYLOAD_SHA
    with pytest.raises(ValueError, match="64 hexadecimal"):
        record_checksum(manifest, "x", "nothex")
    assert _leftovers(manifest.parent) == ["checksums.json"]  # no temp or lock files left
    manifest.write_text("{not json")
    with pytest.raises(DownloadProblem, match="not valid JSON"):
        known_checksum(manifest, "bbbp.csv")


def test_cache_dir_respects_graphmvp_home(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHMVP_HOME", str(tmp_path / "home" / "gm"))
    assert cache_dir() == tmp_path / "home" / "gm"
    assert (tmp_path / "home" / "gm").is_dir()
    monkeypatch.delenv("GRAPHMVP_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert cache_dir() == tmp_path / "user" / ".cache" / "graphmvp"
    assert (tmp_path / "user" / ".cache" / "graphmvp").is_dir()


def test_errors_survive_pickling(tmp_path):
    err = DownloadError(tmp_path / "a", [("http://h/a", "HTTP Error 404: Not Found")], PAYLOAD_SHA)
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) and back.failures == err.failures
    err = ChecksumError("http://h/a", tmp_path / "a", "sha256", WRONG_SHA, PAYLOAD_SHA)
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) and back.actual == PAYLOAD_SHA
