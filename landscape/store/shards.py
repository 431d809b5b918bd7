"""The layout of ``RUN/shards/``: one file per rank of a multi-process extraction::

    RUN/shards/<condition>/rank-<r>.h5   attrs: condition, instance (the condition's, landscape.store.hidden)
        rows (n,) int64   rows of /examples written by rank r, in the order it computed them;
                          grown last, so n counts only whole rows
        hidden (S, n, d) float32, logits (n, K), logsumexp (n,)   as in a condition (S: its stored layers)

Each rank of ``accelerate launch`` appends to its own shard (HDF5 has no safe concurrent
writers); the main rank then merges the shards into the condition and deletes them, so
hidden.h5 ends as a single-process run would leave it. A shard left by a killed run is merged
on the next run if it belongs to the same instance of the condition, else dropped.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from landscape import faults
from landscape.store.hidden import condition_instance, write_rows
from landscape.store.layout import SHARDS_DIR


def shard_path(run_dir: Path, condition: str, rank: int) -> Path:
    """RUN/shards/<condition>/rank-<rank>.h5"""
    return Path(run_dir) / SHARDS_DIR / condition / f"rank-{rank}.h5"


def create_shard(f: h5py.File, condition: str, instance: str, *, n_states: int, width: int, n_choices: int) -> None:
    """Lay out an empty shard: datasets that grow along the rows axis; ``n_states`` layers a row
    (those its condition stores)."""
    f.attrs["condition"] = condition
    f.attrs["instance"] = instance
    chunk_rows = 64
    f.create_dataset(
        "hidden",
        shape=(n_states, 0, width),
        maxshape=(n_states, None, width),
        dtype=np.float32,
        chunks=(1, chunk_rows, width),
    )
    f.create_dataset("logits", shape=(0, n_choices), maxshape=(None, n_choices), dtype=np.float32)
    f.create_dataset("logsumexp", shape=(0,), maxshape=(None,), dtype=np.float32)
    f.create_dataset("rows", shape=(0,), maxshape=(None,), dtype=np.int64)


def append_shard(f: h5py.File, rows: np.ndarray, hidden: np.ndarray, logits: np.ndarray, logsumexp: np.ndarray) -> None:
    """Append a batch (same shapes as ``write_rows``); its rows count once ``rows`` has grown."""
    have, add = len(f["rows"]), len(rows)
    for name, values in (("hidden", hidden), ("logits", logits), ("logsumexp", logsumexp)):
        dataset = f[name]
        axis = 1 if name == "hidden" else 0
        if dataset.shape[axis] < have + add:
            dataset.resize(have + add, axis=axis)
        if axis == 1:
            dataset[:, have : have + add] = np.asarray(values, dtype=np.float32)
        else:
            dataset[have : have + add] = np.asarray(values, dtype=np.float32)
    faults.reached("rows.before_done")
    f["rows"].resize(have + add, axis=0)
    f["rows"][have:] = np.asarray(rows, dtype=np.int64)


def merge_shard(group: h5py.Group, f: h5py.File, *, block_rows: int = 256) -> int:
    """Write a shard's rows into its condition (``write_rows``, a block at a time); returns how many.

    A shard of another instance of the condition contributes nothing."""
    if f.attrs.get("condition") != group.name.rsplit("/", 1)[-1] or str(f.attrs.get("instance")) != condition_instance(
        group
    ):
        return 0
    rows = f["rows"][:]
    order = np.argsort(rows, kind="stable")
    for start in range(0, len(order), block_rows):
        take = np.sort(order[start : start + block_rows])  # positions in the shard, increasing
        write_rows(group, rows[take], f["hidden"][:, take, :], f["logits"][take], f["logsumexp"][take])
    return len(rows)
