"""One writer a run: a command that writes a run folder holds ``RUN/.landscape.lock`` while it
runs (an exclusive ``flock``, with its pid and host inside), and a second one is refused in one
line that names the first. The system drops the lock when its holder ends, killed or not, so a
lock file a dead process left behind never blocks; the holder removes the file when it is done.

Under ``accelerate launch`` the ranks of one launch share their rank 0's lock. Where the
filesystem has no ``flock`` (or on Windows) there is no lock: HDF5's own, where it has one,
still refuses a second writer (``is_hdf5_lock`` tells its error).

Example:
    >>> import tempfile
    >>> run = Path(tempfile.mkdtemp())
    >>> with writing(run):
    ...     holder(run) == (os.getpid(), socket.gethostname())
    True
    >>> holder(run), (run / LOCK_FILE).exists()
    (None, False)
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

LOCK_FILE = ".landscape.lock"


class RunBusy(ValueError):
    """Another landscape process is writing this run."""


@contextmanager
def writing(run: str | Path) -> Iterator[None]:
    """Hold the run's lock while the body runs; ``RunBusy`` if another process holds it. A folder
    that does not exist yet is not locked (no other process writes it yet)."""
    path = Path(run) / LOCK_FILE
    fd = _acquire(path) if Path(run).is_dir() and os.environ.get("RANK", "0") == "0" else None
    try:
        yield
    finally:
        if fd is not None:
            with suppress(OSError):
                path.unlink()
            os.close(fd)


def holder(run: str | Path) -> tuple[int, str] | None:
    """(pid, host) of the process that holds the run's lock, or None when none does."""
    path = Path(run) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # nobody holds it: a file a dead process left
    except BlockingIOError:
        return _read(fd)
    except (ImportError, OSError):
        return None
    finally:
        os.close(fd)


def busy_message(run: str | Path, what: str = "this run") -> str:
    """One line: who writes the run (when known) and what to do."""
    who = holder(run)
    if who is None or who == (os.getpid(), socket.gethostname()):  # ours: the other process is not landscape
        return (
            f"another process is writing {what} ({run}): wait for it to finish, or stop it, then run this command again"
        )
    pid, host = who
    where = "" if host == socket.gethostname() else f" on {host}"
    return (
        f"another landscape process (pid {pid}{where}) is writing {what} ({run}): wait for it to finish, "
        f"or stop it (kill {pid}), then run this command again"
    )


def is_hdf5_lock(error: BaseException) -> bool:
    """Whether ``error`` is HDF5 refusing a file another process holds open ("unable to lock file")."""
    return isinstance(error, OSError) and (
        "unable to lock file" in str(error)
        or (error.errno in (errno.EAGAIN, errno.EWOULDBLOCK) and "lock" in str(error))
    )


def _acquire(path: Path) -> int | None:
    """The lock file's descriptor, locked, with our pid in it; None where there is no ``flock``."""
    try:
        import fcntl
    except ImportError:
        return None
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunBusy(busy_message(path.parent)) from None
        except OSError:  # a filesystem without flock
            os.close(fd)
            return None
        try:  # the holder before us may have removed the file between our open and our lock
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    return fd


def _read(fd: int) -> tuple[int, str] | None:
    try:
        pid, host = os.pread(fd, 4096, 0).decode().split()[:2]
        return int(pid), host
    except (OSError, ValueError):
        return None
