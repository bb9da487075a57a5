"""Downloading files into the graphmvp cache: mirrors, resumable transfers, checksums, clear errors.

Used for released checkpoints and for fine-tuning data files. Only the standard library's
``urllib.request`` talks to the network (plus ``tqdm`` for the progress bar).

Guarantees of :func:`download`:

* ``dest`` is never half-written: bytes go to ``<dest>.part`` and the finished file is moved onto
  ``dest`` with :func:`os.replace` (atomic on one file system) only after its size and SHA-256
  (whichever are given) were verified.
* A failed transfer leaves ``<dest>.part`` behind so the next call resumes it (HTTP ``Range``); a
  file that fails verification is deleted, so it cannot be resumed into something wrong.
* Two processes downloading the same ``dest`` at the same time do not interleave their bytes: the
  second one waits (POSIX advisory lock on ``<dest>.lock``) and then finds the finished file.
* Every failure is raised as a :class:`DownloadProblem` subclass: :class:`DownloadError` (no
  source worked; the message lists every URL with its error and how to place the file by hand)
  or :class:`ChecksumError` (the bytes arrived but are not the expected ones).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator, Sequence, Union

from tqdm import tqdm

import graphmvp
from graphmvp.io import write_text_atomic

try:  # POSIX advisory locks; on other platforms concurrent downloads are simply not serialised
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DownloadProblem",
    "DownloadError",
    "ChecksumError",
    "cache_dir",
    "download",
    "sha256_file",
    "record_checksum",
    "known_checksum",
]

log = logging.getLogger(__name__)

Source = Union[str, "os.PathLike[str]"]

BLOCK_SIZE = 1 << 20  # 1 MiB: hashing and copying block, and the largest network read
HTTP_SCHEMES = ("http", "https")
ALLOWED_SOURCES = "http://, https://, file:// URLs or a local path"
# HTTP statuses worth asking again for (the server may recover); any other error status sends the
# download on to the next mirror at once.
RETRYABLE_HTTP_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# Seconds to wait before retrying an attempt that received no bytes at all (doubled each time).
# An attempt cut off mid-file is resumed immediately.
_RETRY_WAIT_S = 1.0
_RETRY_WAIT_MAX_S = 30.0
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


# --------------------------------------------------------------------------------------- errors


class DownloadProblem(RuntimeError):
    """Base class of every error raised by this module for a file that could not be obtained."""


class DownloadError(DownloadProblem):
    """No source delivered the file.

    Attributes: ``dest`` (Path), ``failures`` (list of ``(url, error message)`` in the order
    tried), ``sha256`` (expected hash or None).
    """

    def __init__(self, dest: Path, failures: Sequence[tuple[str, str]], sha256: str | None = None):
        self.dest = Path(dest)
        self.failures = [(str(u), str(e)) for u, e in failures]
        self.sha256 = sha256
        tried = "\n".join(f"  - {u}: {e}" for u, e in self.failures)
        if self.failures:
            hand = f"download {self.failures[0][0]} yourself and put it at {self.dest}"
        else:
            hand = f"put the file at {self.dest}"
        if sha256:
            hand += f" (sha256 {sha256})"
        super().__init__(
            f"could not download {self.dest.name}; tried {len(self.failures)} source(s):\n{tried}\n"
            f"To install it by hand: {hand}."
        )

    def __reduce__(self):  # keep the exception picklable (DataLoader workers, multiprocessing)
        return (type(self), (self.dest, self.failures, self.sha256))


class ChecksumError(DownloadProblem):
    """The downloaded bytes are not the expected ones; the partial file has been deleted.

    Attributes: ``url``, ``dest`` (Path), ``what`` (``"sha256"`` or ``"size"``), ``expected``,
    ``actual`` (hex digests, or sizes in bytes).
    """

    def __init__(self, url: str, dest: Path, what: str, expected, actual):
        self.url, self.dest, self.what = str(url), Path(dest), what
        self.expected, self.actual = expected, actual
        if what == "size":
            detail = f"size mismatch: expected {expected} bytes, got {actual} bytes"
        else:
            detail = f"SHA-256 mismatch: expected {expected}, got {actual}"
        super().__init__(
            f"{detail} for {self.url}; the downloaded file was deleted and nothing was written to "
            f"{self.dest}. The source may serve a different version of the file, or the transfer "
            f"was corrupted: run again to retry, or download it yourself and check its hash."
        )

    def __reduce__(self):
        return (type(self), (self.url, self.dest, self.what, self.expected, self.actual))


class _Retry(Exception):
    """A transient failure of one attempt: ask the same URL again (resuming the .part)."""

    def __init__(self, message: str, progressed: bool):
        super().__init__(message)
        self.progressed = progressed


class _NextSource(Exception):
    """This URL will not deliver the file (404, refused connection, missing local file...)."""


# ----------------------------------------------------------------------------------- public API


def cache_dir() -> Path:
    """The graphmvp cache directory, created if missing.

    ``$GRAPHMVP_HOME`` if set (and non-empty), else ``~/.cache/graphmvp``.
    """
    env = os.environ.get("GRAPHMVP_HOME")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "graphmvp"
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_file(path: Source) -> str:
    """Lower-case hex SHA-256 of the file at ``path``, read in 1 MiB blocks (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(BLOCK_SIZE):
            digest.update(block)
    return digest.hexdigest()


def download(
    urls: Source | Sequence[Source],
    dest: Source,
    sha256: str | None = None,
    size: int | None = None,
    progress: bool = True,
    timeout: float = 30,
    retries: int = 3,
) -> Path:
    """Fetch a file to ``dest`` from the first source that delivers it, and return ``dest``.

    Args:
        urls: one source or a list of mirrors, tried in order. ``http(s)://`` URLs are fetched with
            ``urllib``; ``file://`` URLs and plain local paths are copied.
        dest: where the file ends up; parent directories are created.
        sha256: expected hex SHA-256 (any case), or None to skip the hash check.
        size: expected size in bytes, or None to skip the size check.
        progress: show a tqdm byte progress bar (only when stderr is a terminal).
        timeout: socket timeout in seconds for connecting and for each read.
        retries: how many times one URL is asked again after a transient failure (connection cut
            mid-file, which is resumed from where it stopped; HTTP 408/429/5xx) before moving on to
            the next mirror. A URL is tried at most ``retries + 1`` times.

    Behaviour:
        * If ``dest`` exists and matches ``sha256`` and ``size`` (those given), it is returned
          without any network access. If it does not match, it is downloaded again (the old file
          stays in place until the new one is verified).
        * Bytes are written to ``<dest>.part``. An existing ``.part`` is resumed with
          ``Range: bytes=N-``; a server answering 200 instead of 206 is read from byte zero. If a
          file resumed from an earlier run's ``.part`` fails verification, it is fetched once more
          from zero before giving up (the old ``.part`` may belong to another version of the file).
        * Size, then SHA-256, are checked before ``os.replace(part, dest)``; ``dest`` therefore
          never holds a partial or unverified file.

    Raises:
        ValueError: malformed arguments (empty URL list, unsupported scheme, bad hash, ...).
        ChecksumError: a source delivered bytes with the wrong size or hash (the partial file is
            deleted; later mirrors are not tried, since a wrong expected hash would fail them all).
        DownloadError: every source failed; the message names each URL with its error and says
            how to place the file by hand.
    """
    sources = _check_sources(urls)
    dest = Path(os.fspath(dest)).expanduser()
    sha256 = _check_sha256(sha256, allow_none=True)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ValueError(f"size must be None or a non-negative int (bytes), got {size!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a non-negative int, got {retries!r}")
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")

    seen = _stat_key(dest)
    if _is_complete(dest, sha256, size):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    show = bool(progress) and _stderr_is_tty()

    with _locked(dest.with_name(dest.name + ".lock"), waiting_for=dest.name):
        # Another process may have finished this file while we waited for the lock.
        if _stat_key(dest) != seen and _is_complete(dest, sha256, size):
            return dest
        failures: list[tuple[str, str]] = []
        for url, local in sources:
            transfer = _Transfer(url, local, part, dest, timeout, show)
            error = transfer.run(sha256, size, retries)
            if error is None:
                os.replace(part, dest)
                return dest
            log.warning("download of %s from %s failed: %s", dest.name, url, error)
            failures.append((url, error))
    raise DownloadError(dest, failures, sha256)


def known_checksum(manifest_path: Source, key: str) -> str | None:
    """The SHA-256 recorded under ``key`` in the JSON manifest, or None (also if no manifest)."""
    return _read_manifest(Path(manifest_path)).get(key)


def record_checksum(
    manifest_path: Source, key: str, sha256: str, *, overwrite: bool = False
) -> None:
    """Record ``sha256`` for ``key`` in the JSON manifest ``manifest_path`` (a ``{key: sha256}``
    object), for files whose hash is only known after their first download: record it then, and
    verify against it afterwards.

    The manifest is rewritten atomically (temporary file + ``os.replace``) under a lock, so readers
    never see a half-written manifest and concurrent writers do not lose each other's entries.
    Recording the same hash again is a no-op; a different hash for an existing key raises
    ``ValueError`` unless ``overwrite=True``.
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty string, got {key!r}")
    sha256 = _check_sha256(sha256, allow_none=False)
    path = Path(manifest_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.with_name(path.name + ".lock"), waiting_for=path.name):
        entries = _read_manifest(path)
        old = entries.get(key)
        if old == sha256:
            return
        if old is not None and not overwrite:
            raise ValueError(
                f"{path} already records sha256 {old} for {key!r}, not {sha256}; "
                f"pass overwrite=True to replace it"
            )
        entries[key] = sha256
        write_text_atomic(path, json.dumps(entries, indent=2, sort_keys=True) + "\n", fsync=True)


# ------------------------------------------------------------------------------------ internals


class _Transfer:
    """Fetching one source into ``part``, with retries; ``run`` returns None or an error message."""

    def __init__(
        self, url: str, local: Path | None, part: Path, dest: Path, timeout: float, show: bool
    ):
        self.url, self.local, self.part, self.dest = url, local, part, dest
        self.timeout, self.show = timeout, show
        # True while the .part holds bytes this transfer did not write (left by an earlier run or
        # an earlier mirror); a verification failure then earns one fresh start.
        self.inherited = part.exists() and part.stat().st_size > 0

    def run(self, sha256: str | None, size: int | None, retries: int) -> str | None:
        attempt, fresh_restart_done = 0, False
        while True:
            try:
                self._attempt(size)
            except _NextSource as e:
                return str(e)
            except _Retry as e:
                if attempt >= retries:
                    return f"{e} (gave up after {attempt + 1} attempt(s))"
                attempt += 1
                log.info("%s: %s; retry %d of %d", self.url, e, attempt, retries)
                if not e.progressed:
                    time.sleep(min(_RETRY_WAIT_S * 2 ** (attempt - 1), _RETRY_WAIT_MAX_S))
                continue
            try:
                self._verify(sha256, size)
            except ChecksumError:
                if self.inherited and not fresh_restart_done:
                    log.warning(
                        "%s: file resumed from an earlier partial download failed verification; "
                        "downloading it again from the start", self.dest.name,
                    )
                    fresh_restart_done, self.inherited = True, False
                    continue  # _verify deleted the .part
                raise
            return None

    # one attempt ----------------------------------------------------------------------------

    def _attempt(self, size: int | None) -> None:
        if self.local is not None:
            self._copy_local()
            return
        have = self.part.stat().st_size if self.part.exists() else 0
        if size is not None and have > size:
            self._truncate()
            have = 0
        if size is not None and have == size and have > 0:
            return  # already complete (an earlier run stopped after the last byte); just verify
        self._http_get(have)

    def _truncate(self) -> None:
        self.part.unlink(missing_ok=True)
        self.inherited = False

    def _bar(self, total: int | None, initial: int) -> tqdm:
        return tqdm(
            total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
            desc=self.dest.name, disable=not self.show, leave=False,
        )

    def _copy_local(self) -> None:
        try:
            src = open(self.local, "rb")
        except OSError as e:
            raise _NextSource(f"cannot read {self.local}: {e.strerror or e}") from None
        with src:
            total = os.fstat(src.fileno()).st_size
            self._truncate()
            with open(self.part, "wb") as out, self._bar(total, 0) as bar:
                while True:
                    try:
                        block = src.read(BLOCK_SIZE)
                    except OSError as e:
                        raise _NextSource(f"error reading {self.local}: {e}") from None
                    if not block:
                        break
                    out.write(block)
                    bar.update(len(block))

    def _http_get(self, offset: int) -> None:
        headers = {
            "User-Agent": f"graphmvp/{graphmvp.__version__} (python-urllib)",
            "Accept-Encoding": "identity",
        }
        if offset:
            headers["Range"] = f"bytes={offset}-"
        request = urllib.request.Request(self.url, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            self._http_error(e, offset)  # raises, unless the .part turned out complete
            return
        except urllib.error.URLError as e:  # DNS failure, refused, unreachable, connect timeout
            raise _NextSource(_reason(e.reason)) from None
        except (http.client.HTTPException, OSError) as e:  # dropped before the response headers
            raise _Retry(f"no response: {_reason(e)}", progressed=False) from None

        with response:
            status = response.status
            if status == 206 and offset:
                start = _content_range(response.headers.get("Content-Range"))[0]
                if start != offset:
                    self._truncate()
                    raise _Retry(
                        f"server resumed at byte {start} instead of {offset}; restarting from zero",
                        progressed=True,
                    )
                mode = "ab"
            elif status == 200:
                if offset:
                    log.info("%s: server ignored the Range request; restarting from zero", self.url)
                offset, mode = 0, "wb"
                self.inherited = False
            else:
                raise _NextSource(f"unexpected HTTP status {status} {response.reason}")

            length = response.headers.get("Content-Length")
            length = int(length) if length is not None and length.isdigit() else None
            total = offset + length if length is not None else None
            received = 0
            with open(self.part, mode) as out, self._bar(total, offset) as bar:
                while True:
                    try:
                        block = response.read(BLOCK_SIZE)
                    except (http.client.HTTPException, OSError) as e:
                        raise _Retry(
                            f"connection lost after {offset + received} bytes: {_reason(e)}",
                            progressed=received > 0,
                        ) from None
                    if not block:
                        break
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
            if length is not None and received < length:
                raise _Retry(
                    f"connection closed after {offset + received} of {total} bytes",
                    progressed=received > 0,
                )

    def _http_error(self, e: urllib.error.HTTPError, offset: int) -> None:
        """Classify an HTTP error status: raise _Retry or _NextSource, or return if a 416 says
        the .part already holds the whole file."""
        with contextlib.closing(e):
            if e.code == 416 and offset:
                # Range starts at or beyond the end: complete if the server's size equals ours.
                total = _content_range(e.headers.get("Content-Range"))[2]
                if total == offset:
                    return None  # the .part already holds the whole file: verify it
                self._truncate()
                raise _Retry(f"HTTP 416 for a resume at byte {offset}; restarting from zero", True)
            message = f"HTTP Error {e.code}: {e.reason}"
            if e.code in RETRYABLE_HTTP_STATUS:
                raise _Retry(message, progressed=False)
            raise _NextSource(message)

    # verification ---------------------------------------------------------------------------

    def _verify(self, sha256: str | None, size: int | None) -> None:
        """Check size then hash of the .part; on mismatch delete it and raise ChecksumError."""
        if size is not None:
            actual_size = self.part.stat().st_size
            if actual_size != size:
                self.part.unlink(missing_ok=True)
                raise ChecksumError(self.url, self.dest, "size", size, actual_size)
        if sha256 is not None:
            actual = sha256_file(self.part)
            if actual != sha256:
                self.part.unlink(missing_ok=True)
                raise ChecksumError(self.url, self.dest, "sha256", sha256, actual)


def _reason(reason) -> str:
    if isinstance(reason, BaseException):
        text = str(reason) or type(reason).__name__
        return text if type(reason).__name__ in text else f"{type(reason).__name__}: {text}"
    return str(reason)


def _content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """Parse ``bytes a-b/total`` or ``bytes */total`` into (a, b, total); unknown parts are None."""
    if not value:
        return None, None, None
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*", value)
    if not m:
        return None, None, None
    start, end, total = m.groups()
    as_int = lambda s: int(s) if s is not None and s != "*" else None  # noqa: E731
    return as_int(start), as_int(end), as_int(total)


def _check_sources(urls) -> list[tuple[str, Path | None]]:
    """Validate the sources: [(url as given, local path or None for http(s))]."""
    if isinstance(urls, (str, os.PathLike)):
        urls = [urls]
    try:
        items = list(urls)
    except TypeError:
        raise ValueError(f"urls must be a URL/path or a list of them, got {urls!r}") from None
    if not items:
        raise ValueError(
            f"urls must name at least one source ({ALLOWED_SOURCES}), got an empty list"
        )
    sources = []
    for item in items:
        if isinstance(item, os.PathLike):
            sources.append((os.fspath(item), Path(os.fspath(item)).expanduser()))
            continue
        if not isinstance(item, str) or not item:
            raise ValueError(
                f"each source must be a non-empty string or path ({ALLOWED_SOURCES}), got {item!r}"
            )
        parsed = urllib.parse.urlparse(item)
        scheme = parsed.scheme.lower()
        if scheme in HTTP_SCHEMES:
            if not parsed.netloc:
                raise ValueError(f"URL {item!r} has no host")
            sources.append((item, None))
        elif scheme == "file":
            if parsed.netloc not in ("", "localhost"):
                raise ValueError(
                    f"file URL {item!r} names host {parsed.netloc!r}; only local files work"
                )
            sources.append((item, Path(urllib.request.url2pathname(parsed.path))))
        elif scheme == "" or len(scheme) == 1:  # plain path (one letter: a Windows drive)
            sources.append((item, Path(item).expanduser()))
        else:
            raise ValueError(
                f"unsupported URL scheme {scheme!r} in {item!r}; allowed: {ALLOWED_SOURCES}"
            )
    return sources


def _check_sha256(value, allow_none: bool) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not _SHA256_RE.fullmatch(value.strip().lower()):
        allowed = "64 hexadecimal characters" + (" or None" if allow_none else "")
        raise ValueError(f"sha256 must be {allowed}, got {value!r}")
    return value.strip().lower()


def _stat_key(path: Path):
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _is_complete(dest: Path, sha256: str | None, size: int | None) -> bool:
    if not dest.is_file():
        return False
    if size is not None and dest.stat().st_size != size:
        log.info("%s exists with the wrong size; downloading it again", dest)
        return False
    if sha256 is not None and sha256_file(dest) != sha256:
        log.info("%s exists with the wrong sha256; downloading it again", dest)
        return False
    return True


def _stderr_is_tty() -> bool:
    stream = sys.stderr
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def _locked(lock_path: Path, waiting_for: str = "") -> Iterator[None]:
    """Hold an exclusive POSIX advisory lock on ``lock_path`` (created, and removed on release).

    The lock file is unlinked while still locked; a waiter that then acquires the lock on the
    unlinked file notices that the path now names another file (or none) and locks again.
    Without ``fcntl`` (Windows) or on file systems refusing locks, it runs unlocked.
    """
    if fcntl is None:
        yield
        return
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another process to finish %s (%s)", waiting_for, lock_path)
                fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:  # e.g. ENOLCK on some network file systems
            os.close(fd)
            log.warning("cannot lock %s (%s); continuing without a lock", lock_path, e)
            yield
            return
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        os.close(fd)


def _read_manifest(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DownloadProblem(
            f"checksum manifest {path} is not valid JSON ({e}); "
            f"delete it to record checksums afresh"
        ) from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise DownloadProblem(
            f"checksum manifest {path} must be a JSON object of name -> sha256 strings; "
            f"delete it to record checksums afresh"
        )
    return data
