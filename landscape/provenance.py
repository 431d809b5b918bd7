"""What every output records about how it was made: the command, when, and the versions."""

from __future__ import annotations

import datetime as _dt
import platform
import sys
from importlib import metadata

PACKAGES = ("landscape", "numpy", "h5py", "torch", "transformers", "peft", "dadapy", "scikit-learn", "plotly")


def versions() -> dict[str, str]:
    """Installed versions of the packages that decide the numbers (read from metadata: no imports)."""
    out = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return out


def stamp() -> dict:
    """``command``, ``created_at`` (UTC, ISO 8601) and ``versions`` of this process."""
    return {
        "command": " ".join(["landscape", *sys.argv[1:]]),
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "versions": versions(),
    }
