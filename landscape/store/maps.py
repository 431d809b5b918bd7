"""The layout of ``RUN/maps.h5``, the report's cache of 2-D maps (deleting it loses nothing)::

    /maps/<split>/<condition>/<layer:03d>/   attrs: complete, key (JSON of method, seed, source)
        xy (n, 2) float32   2-D map of the split's rows, in /examples order

A map is used again only when its key (method, seed, the states it was made from) matches.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from landscape.store.layout import decode_attr, encode_attr, group_done, write_group


def map_path(condition: str, layer: int, *, split: str) -> str:
    return f"maps/{split}/{condition}/{layer:03d}"


def write_map(f: h5py.File, path: str, xy: np.ndarray, key: Mapping[str, Any]) -> None:
    write_group(f, path, {"xy": np.asarray(xy, dtype=np.float32)}, {"key": dict(key)})


def read_map(f: h5py.File, path: str, key: Mapping[str, Any]) -> np.ndarray | None:
    """The cached map at ``path`` if it was made with ``key``, else None."""
    if not group_done(f, path) or decode_attr(f[path].attrs["key"]) != json.loads(encode_attr(dict(key))):
        return None
    return f[path]["xy"][:]
