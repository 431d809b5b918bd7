"""Write-then-rename, so that a file or folder is either whole or absent, never half-written.

Example:
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> replace_atomically(target, lambda tmp: tmp.write_text("done"))
    >>> target.read_text()
    'done'
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def replace_atomically(target: Path, write: Callable[[Path], object], *, suffix: str = "") -> None:
    """Call ``write(tmp)`` on a sibling temporary path, then rename it onto ``target``.

    ``suffix`` ends the temporary name, for writers that append one (``np.savez`` adds ".npz").
    A folder already at ``target`` is removed first (a rename cannot replace a non-empty one).
    """
    target = Path(target)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}{suffix}")
    _remove(tmp)
    try:
        write(tmp)
    except BaseException:  # a full disk, a bug, Ctrl-C: the target is untouched, the half-written copy goes
        _remove(tmp)
        raise
    if target.is_dir():
        shutil.rmtree(target)
    os.replace(tmp, target)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
