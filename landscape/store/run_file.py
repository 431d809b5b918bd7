"""Where hidden.h5 keeps its examples and conditions, the check that a file is a run file of
this schema, and a condition's group: what ``landscape.store.hidden`` (the layout of the rest)
and ``landscape.store.readout`` (a condition's norm and head) both read, kept below them both.
"""

from __future__ import annotations

import h5py

from landscape.store.layout import SCHEMA_VERSION, SchemaError

_EXAMPLES = "examples"
_CONDITIONS = "conditions"


def check_version(f: h5py.File) -> None:
    """Raise SchemaError unless ``f`` is a run file of this schema version."""
    version = f.attrs.get("schema_version")
    if version is None or _EXAMPLES not in f:
        raise SchemaError(f"{f.filename} is not a landscape run file (no schema_version)")
    if int(version) != SCHEMA_VERSION:
        raise SchemaError(
            f"{f.filename} has schema version {int(version)}; this landscape reads version {SCHEMA_VERSION}"
        )


def condition_names(f: h5py.File) -> list[str]:
    check_version(f)
    return list(f[_CONDITIONS].keys()) if _CONDITIONS in f else []


def get_condition(f: h5py.File, name: str) -> h5py.Group:
    check_version(f)
    if _CONDITIONS not in f or name not in f[_CONDITIONS]:
        have = ", ".join(condition_names(f)) or "none"
        raise SchemaError(f"no condition {name!r} in {f.filename} (it has: {have})")
    return f[_CONDITIONS][name]
