"""Atomic file writes: nothing half-written is ever left where a good file is expected.

Every writer of the project (stores, reports, run folders, checkpoints, manifests) goes through
:func:`atomic_path`: write a temporary file next to the target, rename it over the target only
when the write succeeded, and remove the temporary file otherwise.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds.

    With ``fsync`` the file's data reaches the disk before the rename (for files whose loss after
    a power cut would cost a long run: checkpoints, manifests). On any exception, including one
    raised by the caller inside the block to reject what it wrote, the temporary file is removed
    and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, fsync: bool = False) -> None:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str, fsync: bool = False) -> None:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _lock_file(target: str | os.PathLike) -> Path:
    return Path(str(target) + ".lock")


def lock_holder(target: str | os.PathLike) -> int | None:
    """The PID that :func:`writer_lock` of ``target`` names, when that process is alive; None when
    there is no lock file, it names nobody, or its writer is gone. It reads the file without taking
    the lock, so asking never makes a writer fail (a dead PID reused by another process reads as
    alive: good enough to report, not to decide on)."""
    try:
        pid = int(_lock_file(target).read_text().split()[0])
        os.kill(pid, 0)
    except PermissionError:  # alive, another user's
        return pid
    except (OSError, ValueError, IndexError):
        return None
    return pid


class LockedError(RuntimeError):
    """Another process holds the lock (the message names its PID and the lock file)."""


@contextmanager
def writer_lock(target: str | os.PathLike) -> Iterator[Path]:
    """Hold ``TARGET.lock`` while writing ``target``: a second writer gets :class:`LockedError`
    naming the first writer's PID. The lock is an ``flock`` on the file, so it is released when
    its holder exits, even killed; a lock file left behind by a dead writer is simply reused."""
    import fcntl

    lock = _lock_file(target)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise LockedError(f"{target} is being written by another process (PID {holder}, lock file {lock}); "
                              "wait for it to finish or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield lock
        finally:
            lock.unlink(missing_ok=True)  # still holding the flock: nobody else can be inside
    finally:
        os.close(fd)
