"""What every file of a run shares: the run folder's names, the schema version, the error, and
the one encoding of HDF5 attributes (scalars and strings as they are, anything else as JSON).

A run folder::

    RUN/hidden.h5      states, outputs and EDL records       (landscape.store.hidden, .edl)
    RUN/shards/        one file per rank while extracting    (landscape.store.shards)
    RUN/analysis.h5    per-layer results                     (landscape.store.analysis)
    RUN/metrics.csv    the same results as one tidy table    (analyses.run)
    RUN/maps.h5        2-D maps drawn by the report, a cache (landscape.store.maps)
    RUN/report/        index.html and figures/               (figures.report)
    RUN/adapters/      LoRA adapters of the fine-tunes       (extract.finetune)

Example:
    >>> encode_attr({"b": 1, "a": [2]}), decode_attr(encode_attr({"b": 1, "a": [2]}))
    ('{"a": [2], "b": 1}', {'a': [2], 'b': 1})
    >>> encode_attr(3), decode_attr(b"text")
    (3, 'text')
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from landscape import faults

SCHEMA_VERSION = 2  # 2: tasks as data (grouping fields, K choices)
HIDDEN_FILE = "hidden.h5"  # RUN/hidden.h5: states, outputs, EDL records
ANALYSIS_FILE = "analysis.h5"  # RUN/analysis.h5: per-layer results
MAPS_FILE = "maps.h5"  # RUN/maps.h5: 2-D maps drawn by the report (a cache)
REPORT_DIR = "report"  # RUN/report/: index.html and figures/
SHARDS_DIR = "shards"  # RUN/shards/<condition>/rank-<r>.h5 while a multi-process extraction runs
STR = h5py.string_dtype("utf-8")


class SchemaError(ValueError):
    """The file is not a landscape run of this schema version, or lacks what was asked for."""


def encode_attr(value: Any) -> Any:
    """An attribute value as HDF5 keeps it: scalars and strings as they are, the rest as JSON."""
    if isinstance(value, (str, bool, int, float, np.integer, np.floating)):
        return value
    return json.dumps(value, sort_keys=True)


def decode_attr(value: Any) -> Any:
    """``encode_attr`` undone (bytes as text, JSON lists and objects parsed, numpy scalars as Python's)."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def set_attrs(obj: h5py.File | h5py.Group, attrs: Mapping[str, Any]) -> None:
    """Write ``attrs`` onto ``obj``, each encoded (``encode_attr``)."""
    for key, value in attrs.items():
        obj.attrs[key] = encode_attr(value)


def decoded_attrs(obj: h5py.File | h5py.Group) -> dict[str, Any]:
    return {key: decode_attr(value) for key, value in obj.attrs.items()}


def write_ids(group: h5py.Group, name: str, ids: np.ndarray) -> None:
    """Task ids as a dataset: int64 for integer ids (every run so far), UTF-8 strings for string
    ids (``read_array`` tells them apart by the dataset's dtype; the schema is the same)."""
    ids = np.asarray(ids)
    if ids.dtype.kind in "USO":
        group.create_dataset(name, data=ids.astype(object), dtype=STR)
    else:
        group.create_dataset(name, data=np.asarray(ids, dtype=np.int64))


def read_array(dataset: h5py.Dataset) -> np.ndarray:
    """A dataset's values: UTF-8 text as a numpy str array (h5py gives bytes), anything else as stored."""
    if h5py.check_string_dtype(dataset.dtype) is not None:
        return np.asarray(dataset.asstr()[()], dtype=object).astype(str)
    return dataset[()]


def group_done(f: h5py.File, path: str) -> bool:
    """Whether the group at ``path`` was written to the end (``write_group``)."""
    return path in f and bool(f[path].attrs.get("complete", False))


def write_group(f: h5py.File, path: str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
    """(Re)write a group of arrays and attrs; ``complete`` is set last, so a cut-short write is redone."""
    if path in f:
        del f[path]
    group = f.create_group(path)
    for name, given in arrays.items():
        array = np.asarray(given)
        if array.dtype.kind in "UO":  # text: stored as UTF-8 strings
            group.create_dataset(name, data=array.astype(object), dtype=STR)
        else:
            group.create_dataset(name, data=array)
    set_attrs(group, attrs)
    faults.reached("group.before_complete")
    group.attrs["complete"] = True
