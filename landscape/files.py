"""Files the suite reads but does not write: one shipped inside a package (located without
importing the package, whose own imports may pull in what we do not want), and a file's sha256
(the provenance every run records of its model and data).

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.txt")
    >>> _ = open(path, "w").write("abc")
    >>> file_sha256(path)[:12]
    'ba7816bf8f01'
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path


class MissingFile(ValueError):
    """A package or a file inside it is not installed."""


def package_file(package: str, relpath: str) -> Path:
    """Path of a file shipped inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingFile(f"package {package!r} is not installed (run `make setup`)")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relpath
        if candidate.is_file():
            return candidate
    raise MissingFile(f"package {package!r} has no file {relpath}")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
