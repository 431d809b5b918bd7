"""Reading a run: one layer of one condition as a numpy array, with its labels.

Each call opens the file, reads, and closes it: no handle or state is kept.

Example::

    import landscape
    layer = landscape.load_layer("runs/default", "5shot", 12)
    layer.X.shape          # (N, d) float32
    layer.subjects[:3]     # subject of each row
    landscape.conditions("runs/default")   # ['0shot', '5shot', 'sft']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from landscape import schema

@dataclass(frozen=True)
class Layer:
    """One layer of one condition: ``X`` (N, d) and per-row labels (N,)."""

    condition: str
    layer: int
    X: np.ndarray
    ids: np.ndarray
    subjects: np.ndarray
    answers: np.ndarray
    pred: np.ndarray
    splits: np.ndarray


def hidden_path(run: str | Path) -> Path:
    """``run`` may be the run folder or the hidden.h5 file itself."""
    path = Path(run)
    return path / schema.HIDDEN_FILE if path.is_dir() else path


def open_run_file(run: str | Path) -> h5py.File:
    """hidden.h5 of a run, open read-only, its schema version checked."""
    path = hidden_path(run)
    if not path.is_file():
        raise FileNotFoundError(f"no {schema.HIDDEN_FILE} at {path}: run `landscape extract` first")
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise schema.SchemaError(f"{path} is not a readable HDF5 file ({error})") from None
    schema.check_version(f)
    return f


def conditions(run: str | Path) -> list[str]:
    with open_run_file(run) as f:
        return schema.condition_names(f)


def info(run: str | Path) -> dict:
    """Root attrs plus, per condition, its attrs and layer count."""
    with open_run_file(run) as f:
        out = schema.read_attrs(f)
        out["conditions"] = {
            name: {**schema.condition_attrs(schema.get_condition(f, name)), "layers": schema.n_layers(f, name)}
            for name in schema.condition_names(f)
        }
        return out


def examples(run: str | Path) -> schema.Examples:
    with open_run_file(run) as f:
        return schema.read_examples(f)


def load_layer(run: str | Path, condition: str, layer: int) -> Layer:
    """Hidden states (N, d) of ``layer`` (0 = embeddings) in ``condition``, with labels."""
    with open_run_file(run) as f:
        ex = schema.read_examples(f)
        X = schema.read_layer(f, condition, layer)
        _, _, pred = schema.read_outputs(f, condition)
        n = schema.n_layers(f, condition)
    return Layer(
        condition=condition,
        layer=layer % n,
        X=np.asarray(X, dtype=np.float32),
        ids=ex.ids,
        subjects=ex.subjects,
        answers=ex.answers,
        pred=pred,
        splits=ex.splits,
    )
