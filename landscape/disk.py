"""Room on the disk: a write that will not fit is refused before it starts, and a disk that fills
anyway is said in plain words (what was written, what it needs, that the same command resumes).

Checked before, not only caught after: a write HDF5 itself cannot complete leaves it unable to
flush or close the file (its next flush or close may crash the process), so the extraction
checks for room before each condition and each batch.

Example:
    >>> check_room(".", 1, "a byte")  # fits: returns quietly
    >>> size(2.5 * 2**30), size(3 * 2**20)
    ('2.5 GiB', '3.0 MiB')
    >>> is_full(OSError(28, "No space left on device")), is_full(OSError(13, "Permission denied"))
    (True, False)
"""

from __future__ import annotations

import errno
import re
import shutil
from pathlib import Path

# Kept free beyond the states themselves: HDF5's metadata, the small datasets, a page a row at worst.
RESERVE = 32 * 2**20
RESUMES = "free some space, then run the same command again: it resumes where it stopped"


class DiskFull(OSError):
    """No room on the disk for what a command writes (errno ENOSPC); its text is one plain line."""

    def __init__(self, message: str):
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return self.strerror or ""  # (always the message: set in __init__)


def free_bytes(folder: str | Path) -> int | None:
    """Bytes free to this user on the disk of ``folder`` (or of its nearest existing parent); None
    where the filesystem does not say."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return None
    return usage.free if usage.total > 0 else None  # some network and FUSE filesystems report nothing


def check_room(folder: str | Path, need: int, what: str) -> None:
    """Refuse (``DiskFull``) when ``need`` bytes of ``what`` and ``RESERVE`` do not fit on ``folder``'s disk."""
    free = free_bytes(folder)
    if free is not None and need + RESERVE > free:
        raise DiskFull(
            f"no room for {what} in {folder}: it needs {size(need)} (and {size(RESERVE)} to spare), "
            f"the disk has {size(free)} free; {RESUMES}"
        )


def is_full(error: BaseException | None) -> bool:
    """Whether ``error``, or one it arose from, is a full disk (h5py says so in its message, or
    as a RuntimeError when HDF5 cannot flush a file it is closing)."""
    for cause in _chain(error):
        if (isinstance(cause, OSError) and cause.errno == errno.ENOSPC) or "No space left on device" in str(cause):
            return True
    return False


def full_message(error: BaseException) -> str:
    """One line for a full disk met mid-write: ours when we said it, else the file HDF5 names."""
    for cause in _chain(error):
        if isinstance(cause, DiskFull):
            return str(cause)
    where = next(
        (match[1] for cause in _chain(error) if (match := re.search(r"filename = '([^']+)'", str(cause)))), None
    )
    where = where or next((cause.filename for cause in _chain(error) if getattr(cause, "filename", None)), None)
    return f"the disk is full (No space left on device){f' while writing {where}' if where else ''}; {RESUMES}"


def hdf5_failed(error: BaseException) -> bool:
    """Whether HDF5 itself failed to write (not a check of ours): then it can neither flush nor
    close the file, and its cleanup at the interpreter's exit crashes."""
    return any("file write failed" in str(cause) for cause in _chain(error))


def size(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def _chain(error: BaseException | None):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__
