"""The layout of ``RUN/hidden.h5``: the one module that spells paths inside it (its ``/edl`` group:\n``landscape.store.edl``).

Everything else reads and writes through these functions, so a change of layout is a change
here (and a bump of ``layout.SCHEMA_VERSION``)::

    /                                 attrs: schema_version, model, model_hash, model_source,
                                             task, task_file, task_text, task_hash, dataset,
                                             dataset_hash, groups, choice_labels, score,
                                             group_values, split_seed, partition,
                                             representation, versions, created_at
    /examples/{id,answer,split}       (N,)  one row per example, the row order of every condition;
                                            ``id``: the task's ids, int64 (integer ids) or UTF-8
                                            strings (string ids: int64|str below), read by dtype
    /examples/group/<field>           (N,)  the value of each grouping field of the task (its order
                                            in the root attr ``groups``; the first draws demos)
    /partition/{demos,train}/{id,group}   the rest of the seeded partition (eval = /examples);
                                          ``group``: the first grouping field's value
    /conditions/<name>/               attrs: kind (icl|sft), shots, accuracy, complete, settings,
                                             instance (random id of this creation of it); of
                                             the process that finished it: seconds, processes,
                                             token_budget or batch_size, batches_run
        hidden  (n_layers+1, N, d) float32, contiguous (a layer is one block: it reads alone); stored
                                      as the condition's ``store_dtype`` asks (float16, or
                                      bfloat16 as its uint16 bits with attr encoding=bfloat16),
                                      always read back as float32 (``read_layer``); with
                                      ``--layers``, (S, N, d): the S layers of ``layers``
        layers  (S,)   int32          only with ``--layers``: the model layer of each stored row
                                      of ``hidden``, ascending, the last layer among them; attr
                                      model_layers (n_layers+1)
        logits  (N, K) float32        score of each of the K choices: letter scoring, the logits
                                      of the letter tokens " A", " B", ...; text scoring, the
                                      summed log-probability (nats) of each choice's continuation
        logsumexp (N,) float32        letter scoring: log-sum-exp of all vocabulary logits at that
                                      token, so log p(letter) = logits - logsumexp[:, None] (nats);
                                      text scoring: 0 (the scores are log-probabilities already)
        pred    (N,)   int8           argmax of ``logits``
        done    (N,)   bool           rows written; a resumed run redoes the others
        demo_ids (N, k) int64|str     ICL: the task ids of each row's demonstrations, in prompt order
        demo_set (N,)  int32          ICL: rows with the same demos share a number ("which demo set")
        norm/{weight,eps[,bias]}      the norm that reads each layer (row l: block l's input norm,
                                      row L: the final norm), attr kind (rms|rms_offset|layer) or
                                      unavailable (why): ``--states normed`` (landscape.normed)
        head/{weight[,bias]}          (K, d) the choice tokens' unembedding rows (letter scoring),
                                      attrs softcap, verified + max_error (the lens at the last
                                      layer against the stored logits), or unavailable (why):
                                      the logit lens (landscape.readouts)

Example:
    >>> import h5py, numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "hidden.h5")
    >>> ex = Examples(ids=np.array([3, 7]), answers=np.array([0, 2]), splits=np.array(["eval", "eval"]),
    ...               groups={"topic": np.array(["a", "b"])})
    >>> with h5py.File(path, "w") as f:
    ...     write_header(f, {"model": "m"}, ex, {})
    ...     group = create_condition(f, "0shot", n_layers=2, n_rows=2, width=4, n_choices=4, attrs={"kind": "icl"})
    ...     write_rows(group, np.array([0, 1]), np.ones((3, 2, 4)), np.zeros((2, 4)), np.zeros(2))
    >>> with h5py.File(path, "r") as f:
    ...     read_layer(f, "0shot", 1).shape
    (2, 4)
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from landscape import faults
from landscape.normed import STATES, apply_norm
from landscape.store.encoding import STORE_DTYPES, decode_states, encode_states, storage_dtype
from landscape.store.layout import (
    SCHEMA_VERSION,
    STR,
    SchemaError,
    decode_attr,
    decoded_attrs,
    encode_attr,
    read_array,
    set_attrs,
    write_ids,
)
from landscape.store.readout import read_norms
from landscape.store.run_file import (
    _CONDITIONS,
    _EXAMPLES,
    check_version,
    condition_names,  # noqa: F401  (store.hidden.condition_names, as its readers call it)
    get_condition,
)

_PARTITION = "partition"
_LAYERS = "layers"
# Rows per chunk where states are chunked (a compressed copy, bench/bench_storage.py); a condition's
# own `hidden` is contiguous (create_condition says why).
_CHUNK_ROWS = 256


@dataclass(frozen=True)
class Examples:
    """The rows of a run: ``ids`` are the task's item ids (int64, or str for a string-id task);
    every array has shape (N,).

    ``groups`` maps each grouping field of the task to its values, in the task's order: the
    first is the one demonstrations are drawn by and values are selected from."""

    ids: np.ndarray
    answers: np.ndarray
    splits: np.ndarray
    groups: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def group_names(self) -> list[str]:
        return list(self.groups)

    @property
    def first_group(self) -> np.ndarray:
        """(N,) values of the first grouping field."""
        return next(iter(self.groups.values()))


def write_header(
    f: h5py.File,
    attrs: Mapping[str, Any],
    examples: Examples,
    partition: Mapping[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    """Write the root attrs, ``/examples`` and ``/partition`` of a new file.

    ``partition`` maps a part name (``demos``, ``train``) to its ``(ids, first-group values)``.
    Values of ``attrs`` that are not scalars or strings are stored as JSON.
    """
    f.attrs["schema_version"] = SCHEMA_VERSION
    set_attrs(f, attrs)
    f.attrs["groups"] = encode_attr(list(examples.groups))
    group = f.create_group(_EXAMPLES)
    write_ids(group, "id", examples.ids)
    group.create_dataset("answer", data=np.asarray(examples.answers, dtype=np.int8))
    group.create_dataset("split", data=np.asarray(examples.splits, dtype=object), dtype=STR)
    for name, values in examples.groups.items():
        group.create_dataset(f"group/{name}", data=np.asarray(values, dtype=object), dtype=STR)
    parts = f.create_group(_PARTITION)
    for name, (ids, values) in partition.items():
        part = parts.create_group(name)
        write_ids(part, "id", ids)
        part.create_dataset("group", data=np.asarray(values, dtype=object), dtype=STR)


def read_attrs(f: h5py.File) -> dict[str, Any]:
    """Root attrs, with JSON-encoded values decoded."""
    return decoded_attrs(f)


def read_examples(f: h5py.File) -> Examples:
    check_version(f)
    group = f[_EXAMPLES]
    names = decode_attr(f.attrs["groups"])
    return Examples(
        ids=read_array(group["id"]),
        answers=group["answer"][:].astype(np.int64),
        splits=group["split"].asstr()[:].astype(str),
        groups={name: group["group"][name].asstr()[:].astype(str) for name in names},
    )


def read_partition(f: h5py.File) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    check_version(f)
    return {
        name: (read_array(part["id"]), part["group"].asstr()[:].astype(str)) for name, part in f[_PARTITION].items()
    }


def create_condition(
    f: h5py.File,
    name: str,
    *,
    n_layers: int,
    n_rows: int,
    width: int,
    n_choices: int,
    attrs: Mapping[str, Any],
    store_dtype: str = "float32",
    layers: Sequence[int] | None = None,
) -> h5py.Group:
    """Create ``/conditions/<name>`` with empty datasets; ``n_layers`` counts blocks (layer 0 is
    extra); the states are stored as ``store_dtype`` (``STORE_DTYPES``), of every layer or of
    ``layers`` alone (``landscape.layers``: ascending, the last one among them)."""
    every = list(range(n_layers + 1))
    layers = every if layers is None else [int(layer) for layer in layers]
    if layers != sorted(set(layers)) or not set(layers) <= set(every) or layers[-1] != n_layers:
        raise SchemaError(f"stored layers must ascend within 0..{n_layers} and end with it, got {layers}")
    if store_dtype not in STORE_DTYPES:
        raise SchemaError(f"unknown store dtype {store_dtype!r}; known: {', '.join(STORE_DTYPES)}")
    group = f.require_group(_CONDITIONS).create_group(name)
    set_attrs(group, attrs)
    group.attrs["complete"] = False
    group.attrs["instance"] = uuid.uuid4().hex  # tells this creation's shards from a replaced one's
    # Contiguous, not chunked: a layer is one block on disk (read in one piece), and a batch's
    # rows, scattered by the length sort, are written in place. In chunks of ~256 rows each row
    # written into a chunk that did not fit HDF5's chunk cache rewrote the whole chunk: 200 ms a
    # batch of 8 at the 8B shape (33 x 4,096), 15 ms contiguous (bench/bench_storage.py). HDF5
    # allocates the space at the first write without filling it (a sparse file until written).
    hidden = group.create_dataset(  # HDF5 has no bfloat16: its bits are kept as uint16
        "hidden", shape=(len(layers), n_rows, width), dtype=storage_dtype(store_dtype), chunks=None
    )
    hidden.attrs["encoding"] = store_dtype
    if layers != every:  # a subset: which layer each stored row of states is (every layer: no dataset)
        group.create_dataset(_LAYERS, data=np.asarray(layers, dtype=np.int32)).attrs["model_layers"] = n_layers + 1
    group.create_dataset("logits", shape=(n_rows, n_choices), dtype=np.float32)
    group.create_dataset("logsumexp", shape=(n_rows,), dtype=np.float32)
    group.create_dataset("pred", shape=(n_rows,), dtype=np.int8)
    group.create_dataset("done", shape=(n_rows,), dtype=bool, fillvalue=False)
    return group


def chunk_rows(n_rows: int) -> int:
    """Rows per chunk of chunked states (a filtered copy): about 256 (one layer's block reads contiguously), dividing
    the rows evenly: HDF5 allocates whole chunks, so 1,800 rows in chunks of 256 would take 2,048
    rows of space (bench/bench_storage.py measured the 14 % this saves at the default)."""
    return max(1, -(-n_rows // max(1, -(-n_rows // _CHUNK_ROWS))))


def delete_condition(f: h5py.File, name: str) -> None:
    del f[_CONDITIONS][name]


def condition_attrs(group: h5py.Group) -> dict[str, Any]:
    return decoded_attrs(group)


def condition_instance(group: h5py.Group) -> str:
    """The identity of this condition's creation (shards of another creation are not merged)."""
    return str(group.attrs.get("instance", ""))


def write_rows(
    group: h5py.Group,
    rows: np.ndarray,
    hidden: np.ndarray,
    logits: np.ndarray,
    logsumexp: np.ndarray,
) -> None:
    """Write a batch at ``rows`` (B,): ``hidden`` (n_layers+1, B, d), ``logits`` (B, K), ``logsumexp`` (B,).

    ``pred`` is derived here (argmax of the choice scores), so it can never disagree with them.

    Rows are marked done last, so a write cut short leaves them to be redone.
    """
    order = np.argsort(rows)  # h5py wants increasing indices
    rows = np.asarray(rows)[order]
    hidden = np.asarray(hidden, dtype=np.float32)[:, order]
    if np.all(np.diff(rows) == 1):  # contiguous: one hyperslab, much faster than a point list
        index: slice | np.ndarray = slice(int(rows[0]), int(rows[-1]) + 1)
    else:
        index = rows
    group["hidden"][:, index, :] = encode_states(hidden, _encoding(group["hidden"]))
    logits = np.asarray(logits, dtype=np.float32)[order]
    group["logits"][index] = logits
    group["logsumexp"][index] = np.asarray(logsumexp, dtype=np.float32)[order]
    group["pred"][index] = logits.argmax(axis=1).astype(np.int8)
    faults.reached("rows.before_done")
    group["done"][index] = True


def write_demo_plan(group: h5py.Group, demo_ids: np.ndarray, demo_set: np.ndarray) -> None:
    """Record (once, before any row) which demonstrations precede each row's question."""
    if "demo_ids" in group:
        if not np.array_equal(read_array(group["demo_ids"]), demo_ids):
            raise SchemaError(f"{group.name} was started with other demonstrations: use --overwrite")
        return
    write_ids(group, "demo_ids", demo_ids)
    group.create_dataset("demo_set", data=np.asarray(demo_set, dtype=np.int32))


def read_demo_sets(f: h5py.File, condition: str) -> np.ndarray | None:
    """(N,) "which demo set" of an ICL condition with demonstrations, else None."""
    group = get_condition(f, condition)
    attrs = condition_attrs(group)
    if attrs.get("kind") != "icl" or int(attrs.get("shots", 0)) == 0 or "demo_set" not in group:
        return None
    return group["demo_set"][:]


def read_demo_ids(f: h5py.File, condition: str) -> np.ndarray | None:
    """(N, k) demonstration ids of each row of an ICL condition, when stored."""
    group = get_condition(f, condition)
    return read_array(group["demo_ids"]) if "demo_ids" in group else None


def rows_done(group: h5py.Group) -> np.ndarray:
    """(N,) bool: which rows hold data."""
    return group["done"][:]


def update_condition_attrs(group: h5py.Group, attrs: Mapping[str, Any]) -> None:
    set_attrs(group, attrs)


def finish_condition(group: h5py.Group, attrs: Mapping[str, Any]) -> None:
    set_attrs(group, attrs)
    group.attrs["complete"] = True


def n_layers(f: h5py.File, condition: str) -> int:
    """Number of the model's layers (blocks + 1 for the embeddings), stored or not."""
    return _layer_index(get_condition(f, condition))[0]


def stored_layers(f: h5py.File, condition: str) -> list[int]:
    """The layers whose states a condition holds, ascending (all of them unless extracted with ``--layers``)."""
    return _layer_index(get_condition(f, condition))[1]


def _layer_index(group: h5py.Group) -> tuple[int, list[int]]:
    """(the model's layer count, the stored layers) of a condition's group."""
    if _LAYERS in group:
        return int(group[_LAYERS].attrs["model_layers"]), group[_LAYERS][:].tolist()
    return int(group["hidden"].shape[0]), list(range(group["hidden"].shape[0]))


def read_layer(f: h5py.File, condition: str, layer: int, states: str = "residual") -> np.ndarray:
    """(N, d) float32 states of one layer (0 = embeddings; negative: from the last) of one
    condition: the stored residual stream, or (``states="normed"``) it after the norm that reads
    it (``landscape.normed``)."""
    if states not in STATES:
        raise SchemaError(f"unknown states {states!r}; known: {', '.join(STATES)}")
    group = get_condition(f, condition)
    total, stored = _layer_index(group)
    if not -total <= layer < total:
        raise SchemaError(f"layer {layer} out of range: {condition!r} has layers 0..{total - 1}")
    layer %= total
    if layer not in stored:
        raise SchemaError(
            f"layer {layer} of {condition!r} is not stored (it keeps layers {', '.join(map(str, stored))}: "
            "extracted with --layers)"
        )
    hidden = group["hidden"]
    residual = decode_states(hidden[stored.index(layer)], _encoding(hidden))
    if states == "residual":
        return residual
    norms = read_norms(f, condition)
    return apply_norm(residual, *norms.layer(layer), norms.kind)


def store_dtype(f: h5py.File, condition: str) -> str:
    """How a condition's states are stored (``STORE_DTYPES``; files from before the choice: float32)."""
    return _encoding(get_condition(f, condition)["hidden"])


def _encoding(dataset: h5py.Dataset) -> str:
    return str(dataset.attrs.get("encoding", "float32"))


def read_outputs(f: h5py.File, condition: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, K) choice scores, (N,) full-vocabulary log-sum-exp and (N,) predictions of one condition."""
    group = get_condition(f, condition)
    return group["logits"][:], group["logsumexp"][:], group["pred"][:].astype(np.int64)
