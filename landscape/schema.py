"""The layout of ``RUN/hidden.h5``: the one module that spells paths inside it.

Everything else reads and writes through these functions, so a change of layout is a change
here (and a bump of ``SCHEMA_VERSION``)::

    /                                 attrs: schema_version, model, model_hash, model_source,
                                             task, task_file, task_text, task_hash, dataset,
                                             dataset_hash, groups, choice_labels, score,
                                             group_values, split_seed, partition,
                                             representation, versions, created_at
    /examples/{id,answer,split}       (N,)  one row per example, the row order of every condition
    /examples/group/<field>           (N,)  the value of each grouping field of the task (its order
                                            in the root attr ``groups``; the first draws demos)
    /partition/{demos,train}/{id,group}   the rest of the seeded partition (eval = /examples);
                                          ``group``: the first grouping field's value
    /conditions/<name>/               attrs: kind (icl|sft), shots, accuracy, complete, settings,
                                             instance (random id of this creation of it)
        hidden  (n_layers+1, N, d) float32, chunked (1, rows, d): one layer reads alone; stored
                                      as the condition's ``store_dtype`` asks (float16, or
                                      bfloat16 as its uint16 bits with attr encoding=bfloat16),
                                      always read back as float32 (``read_layer``)
        logits  (N, K) float32        score of each of the K choices: letter scoring, the logits
                                      of the letter tokens " A", " B", ...; text scoring, the
                                      summed log-probability (nats) of each choice's continuation
        logsumexp (N,) float32        letter scoring: log-sum-exp of all vocabulary logits at that
                                      token, so log p(letter) = logits - logsumexp[:, None] (nats);
                                      text scoring: 0 (the scores are log-probabilities already)
        pred    (N,)   int8           argmax of ``logits``
        done    (N,)   bool           rows written; a resumed run redoes the others
        demo_ids (N, k) int64         ICL: the task ids of each row's demonstrations, in prompt order
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

import itertools
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from landscape import faults
from landscape.names import grouped
from landscape.normed import STATES, NormParameters, apply_norm
from landscape.readouts import Unembedding

SCHEMA_VERSION = 2  # 2: tasks as data (grouping fields, K choices)
HIDDEN_FILE = "hidden.h5"  # RUN/hidden.h5: states, outputs, EDL records
ANALYSIS_FILE = "analysis.h5"  # RUN/analysis.h5: per-layer results
MAPS_FILE = "maps.h5"  # RUN/maps.h5: 2-D maps drawn by the report (a cache)
REPORT_DIR = "report"  # RUN/report/: index.html and figures/

_EXAMPLES = "examples"
_PARTITION = "partition"
_CONDITIONS = "conditions"
_NORM = "norm"
_HEAD = "head"
_STR = h5py.string_dtype("utf-8")
# Rows per chunk of `hidden`: a chunk is one layer x this many rows x d floats (~0.6 MB at d=576).
_CHUNK_ROWS = 256


class SchemaError(ValueError):
    """The file is not a landscape run of this schema version, or lacks what was asked for."""


@dataclass(frozen=True)
class Examples:
    """The rows of a run: ``ids`` are the task's item ids; every array has shape (N,).

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


# ---------------------------------------------------------------- header, examples, partition


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
    for key, value in attrs.items():
        f.attrs[key] = _attr_value(value)
    f.attrs["groups"] = _attr_value(list(examples.groups))
    group = f.create_group(_EXAMPLES)
    group.create_dataset("id", data=np.asarray(examples.ids, dtype=np.int64))
    group.create_dataset("answer", data=np.asarray(examples.answers, dtype=np.int8))
    group.create_dataset("split", data=np.asarray(examples.splits, dtype=object), dtype=_STR)
    for name, values in examples.groups.items():
        group.create_dataset(f"group/{name}", data=np.asarray(values, dtype=object), dtype=_STR)
    parts = f.create_group(_PARTITION)
    for name, (ids, values) in partition.items():
        part = parts.create_group(name)
        part.create_dataset("id", data=np.asarray(ids, dtype=np.int64))
        part.create_dataset("group", data=np.asarray(values, dtype=object), dtype=_STR)


def check_version(f: h5py.File) -> None:
    """Raise SchemaError unless ``f`` is a run file of this schema version."""
    version = f.attrs.get("schema_version")
    if version is None or _EXAMPLES not in f:
        raise SchemaError(f"{f.filename} is not a landscape run file (no schema_version)")
    if int(version) != SCHEMA_VERSION:
        raise SchemaError(
            f"{f.filename} has schema version {int(version)}; this landscape reads version {SCHEMA_VERSION}"
        )


def read_attrs(f: h5py.File) -> dict[str, Any]:
    """Root attrs, with JSON-encoded values decoded."""
    return _decoded_attrs(f)


def read_examples(f: h5py.File) -> Examples:
    check_version(f)
    group = f[_EXAMPLES]
    names = _decode_attr(f.attrs["groups"])
    return Examples(
        ids=group["id"][:],
        answers=group["answer"][:].astype(np.int64),
        splits=group["split"].asstr()[:].astype(str),
        groups={name: group["group"][name].asstr()[:].astype(str) for name in names},
    )


def read_partition(f: h5py.File) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    check_version(f)
    return {
        name: (part["id"][:], part["group"].asstr()[:].astype(str))
        for name, part in f[_PARTITION].items()
    }


# ---------------------------------------------------------------- conditions


def condition_names(f: h5py.File) -> list[str]:
    check_version(f)
    return list(f[_CONDITIONS].keys()) if _CONDITIONS in f else []


STORE_DTYPES = ("float32", "float16", "bfloat16")


def create_condition(
    f: h5py.File, name: str, *, n_layers: int, n_rows: int, width: int, n_choices: int, attrs: Mapping[str, Any],
    store_dtype: str = "float32",
) -> h5py.Group:
    """Create ``/conditions/<name>`` with empty datasets; ``n_layers`` counts blocks (layer 0 is
    extra); the states are stored as ``store_dtype`` (``STORE_DTYPES``)."""
    if store_dtype not in STORE_DTYPES:
        raise SchemaError(f"unknown store dtype {store_dtype!r}; known: {', '.join(STORE_DTYPES)}")
    group = f.require_group(_CONDITIONS).create_group(name)
    for key, value in attrs.items():
        group.attrs[key] = _attr_value(value)
    group.attrs["complete"] = False
    group.attrs["instance"] = uuid.uuid4().hex  # tells this creation's shards from a replaced one's
    hidden = group.create_dataset(  # HDF5 has no bfloat16: its bits are kept as uint16
        "hidden", shape=(n_layers + 1, n_rows, width), dtype=storage_dtype(store_dtype), chunks=(1, chunk_rows(n_rows), width))
    hidden.attrs["encoding"] = store_dtype
    group.create_dataset("logits", shape=(n_rows, n_choices), dtype=np.float32)
    group.create_dataset("logsumexp", shape=(n_rows,), dtype=np.float32)
    group.create_dataset("pred", shape=(n_rows,), dtype=np.int8)
    group.create_dataset("done", shape=(n_rows,), dtype=bool, fillvalue=False)
    return group


def chunk_rows(n_rows: int) -> int:
    """Rows per chunk of the states: about 256 (one layer's block reads contiguously), dividing
    the rows evenly: HDF5 allocates whole chunks, so 1,800 rows in chunks of 256 would take 2,048
    rows of space (bench/bench_storage.py measured the 14 % this saves at the default)."""
    return max(1, -(-n_rows // max(1, -(-n_rows // _CHUNK_ROWS))))


def get_condition(f: h5py.File, name: str) -> h5py.Group:
    check_version(f)
    if _CONDITIONS not in f or name not in f[_CONDITIONS]:
        have = ", ".join(condition_names(f)) or "none"
        raise SchemaError(f"no condition {name!r} in {f.filename} (it has: {have})")
    return f[_CONDITIONS][name]


def delete_condition(f: h5py.File, name: str) -> None:
    del f[_CONDITIONS][name]


def condition_attrs(group: h5py.Group) -> dict[str, Any]:
    return _decoded_attrs(group)


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
        if not np.array_equal(group["demo_ids"][:], demo_ids):
            raise SchemaError(f"{group.name} was started with other demonstrations: use --overwrite")
        return
    group.create_dataset("demo_ids", data=np.asarray(demo_ids, dtype=np.int64))
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
    return group["demo_ids"][:] if "demo_ids" in group else None


def write_norms(group: h5py.Group, params: "NormParameters | str") -> None:
    """Record the norm that reads each layer of a condition (once), or why there is none."""
    node = _new_readout_node(group, _NORM, params)
    if node is not None:
        node.attrs["kind"] = params.kind
        node.create_dataset("weight", data=params.weight.astype(np.float32))
        node.create_dataset("eps", data=params.eps.astype(np.float64))
        if params.bias is not None:
            node.create_dataset("bias", data=params.bias.astype(np.float32))


def write_head(group: h5py.Group, head: "Unembedding | str") -> None:
    """Record (once) the choice tokens' unembedding rows of a condition's model, or why the
    logit lens is unavailable for it; ``mark_head_unavailable`` replaces them with a reason."""
    node = _new_readout_node(group, _HEAD, head)
    if node is not None:
        node.create_dataset("weight", data=head.weight.astype(np.float32))
        if head.bias is not None:
            node.create_dataset("bias", data=head.bias.astype(np.float32))
        if head.softcap is not None:
            node.attrs["softcap"] = float(head.softcap)


def _new_readout_node(group: h5py.Group, name: str, value) -> h5py.Group | None:
    """The empty group to fill with ``value``'s arrays; None when it exists already (written
    once) or when ``value`` is the reason it cannot be (recorded as attr ``unavailable``)."""
    if name in group:
        return None
    node = group.create_group(name)
    if isinstance(value, str):
        node.attrs["unavailable"] = value
        return None
    return node


def mark_head_unavailable(group: h5py.Group, reason: str) -> None:
    if _HEAD in group:
        del group[_HEAD]
    _new_readout_node(group, _HEAD, reason)


def head_checked(group: h5py.Group) -> bool:
    """Whether the stored head was checked against the model's own logits (``icl``), or is unavailable."""
    return _HEAD in group and (bool(group[_HEAD].attrs.get("verified", False)) or "unavailable" in group[_HEAD].attrs)


def set_head_verified(group: h5py.Group, max_error: float) -> None:
    group[_HEAD].attrs["verified"] = True
    group[_HEAD].attrs["max_error"] = float(max_error)


def read_head(f: h5py.File, condition: str) -> Unembedding:
    """The choice tokens' head of a condition (``landscape.readouts``); SchemaError says why there is none."""
    node = _readout_node(f, condition, _HEAD, "the logit lens is")
    return Unembedding(weight=node["weight"][:], bias=node["bias"][:] if "bias" in node else None,
                       softcap=float(node.attrs["softcap"]) if "softcap" in node.attrs else None)


def read_norms(f: h5py.File, condition: str) -> NormParameters:
    """The norm parameters of a condition (``landscape.normed``); SchemaError says why there are none."""
    node = _readout_node(f, condition, _NORM, "normed states are")
    return NormParameters(kind=_decode_attr(node.attrs["kind"]), weight=node["weight"][:], eps=node["eps"][:],
                          bias=node["bias"][:] if "bias" in node else None)


def _readout_node(f: h5py.File, condition: str, name: str, what: str) -> h5py.Group:
    """A condition's ``norm`` or ``head`` group, or a SchemaError saying why it cannot be used."""
    group = get_condition(f, condition)
    if name not in group:
        raise SchemaError(f"condition {condition!r} of {f.filename} has no {name} parameters (extracted before they were "
                          "stored): run its `landscape extract` / `landscape finetune` again to add them")
    node = group[name]
    if "unavailable" in node.attrs:
        raise SchemaError(f"{what} unavailable for {condition!r}: {_decode_attr(node.attrs['unavailable'])}")
    return node


def rows_done(group: h5py.Group) -> np.ndarray:
    """(N,) bool: which rows hold data."""
    return group["done"][:]


def update_condition_attrs(group: h5py.Group, attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        group.attrs[key] = _attr_value(value)


def finish_condition(group: h5py.Group, attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        group.attrs[key] = _attr_value(value)
    group.attrs["complete"] = True


def n_layers(f: h5py.File, condition: str) -> int:
    """Number of stored layers (blocks + 1 for the embeddings)."""
    return int(get_condition(f, condition)["hidden"].shape[0])


def read_layer(f: h5py.File, condition: str, layer: int, states: str = "residual") -> np.ndarray:
    """(N, d) float32 states of one layer (0 = embeddings) of one condition: the stored residual
    stream, or (``states="normed"``) it after the norm that reads it (``landscape.normed``)."""
    if states not in STATES:
        raise SchemaError(f"unknown states {states!r}; known: {', '.join(STATES)}")
    hidden = get_condition(f, condition)["hidden"]
    if not -hidden.shape[0] <= layer < hidden.shape[0]:
        raise SchemaError(f"layer {layer} out of range: {condition!r} has layers 0..{hidden.shape[0] - 1}")
    residual = decode_states(hidden[layer], _encoding(hidden))
    if states == "residual":
        return residual
    norms = read_norms(f, condition)
    return apply_norm(residual, *norms.layer(layer % hidden.shape[0]), norms.kind)


def store_dtype(f: h5py.File, condition: str) -> str:
    """How a condition's states are stored (``STORE_DTYPES``; files from before the choice: float32)."""
    return _encoding(get_condition(f, condition)["hidden"])


def _encoding(dataset: h5py.Dataset) -> str:
    return str(dataset.attrs.get("encoding", "float32"))


def storage_dtype(encoding: str) -> np.dtype:
    """The HDF5 dtype of states stored as ``encoding`` (``STORE_DTYPES``; bfloat16: its uint16 bits)."""
    return np.dtype(np.uint16 if encoding == "bfloat16" else encoding)


def encode_states(values: np.ndarray, encoding: str) -> np.ndarray:
    """States as ``encoding`` stores them (``storage_dtype``)."""
    if encoding == "bfloat16":  # round to nearest even, as torch does
        import torch

        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    return np.asarray(values, dtype=storage_dtype(encoding))


def decode_states(values: np.ndarray, encoding: str) -> np.ndarray:
    """float32 states from stored values (``encode_states`` undone)."""
    if encoding == "bfloat16":
        return (values.astype(np.uint32) << 16).view(np.float32)
    return np.asarray(values, dtype=np.float32)


def read_outputs(f: h5py.File, condition: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, K) choice scores, (N,) full-vocabulary log-sum-exp and (N,) predictions of one condition."""
    group = get_condition(f, condition)
    return group["logits"][:], group["logsumexp"][:], group["pred"][:].astype(np.int64)


# ---------------------------------------------------------------- attrs helpers


def _attr_value(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float, np.integer, np.floating)):
        return value
    return json.dumps(value, sort_keys=True)


def _decoded_attrs(obj: h5py.File | h5py.Group) -> dict[str, Any]:
    return {key: _decode_attr(value) for key, value in obj.attrs.items()}


def _result_scalars(group: h5py.Group) -> dict[str, float]:
    """The metric attrs of a result group (all but its bookkeeping)."""
    return {k: float(v) for k, v in group.attrs.items() if k not in ("complete", "skipped")}


def _decode_attr(value: Any) -> Any:
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


# ================================================================ RUN/shards/ (multi-process extraction)
#
#   RUN/shards/<condition>/rank-<r>.h5   attrs: condition, instance (the condition's, below)
#       rows (n,) int64   rows of /examples written by rank r, in the order it computed them;
#                         grown last, so n counts only whole rows
#       hidden (n_layers+1, n, d) float32, logits (n, K), logsumexp (n,)   as in a condition
#
# Each rank of ``accelerate launch`` appends to its own shard (HDF5 has no safe concurrent
# writers); the main rank then merges the shards into the condition and deletes them, so
# hidden.h5 ends as a single-process run would leave it. A shard left by a killed run is merged
# on the next run if it belongs to the same instance of the condition, else dropped.

SHARDS_DIR = "shards"


def shard_path(run_dir: Path, condition: str, rank: int) -> Path:
    """RUN/shards/<condition>/rank-<rank>.h5"""
    return Path(run_dir) / SHARDS_DIR / condition / f"rank-{rank}.h5"


def create_shard(f: h5py.File, condition: str, instance: str, *, n_layers: int, width: int, n_choices: int) -> None:
    """Lay out an empty shard: datasets that grow along the rows axis."""
    f.attrs["condition"] = condition
    f.attrs["instance"] = instance
    chunk_rows = 64
    f.create_dataset("hidden", shape=(n_layers + 1, 0, width), maxshape=(n_layers + 1, None, width),
                     dtype=np.float32, chunks=(1, chunk_rows, width))
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


def condition_instance(group: h5py.Group) -> str:
    """The identity of this condition's creation (shards of another creation are not merged)."""
    return str(group.attrs.get("instance", ""))


def merge_shard(group: h5py.Group, f: h5py.File, *, block_rows: int = 256) -> int:
    """Write a shard's rows into its condition (``write_rows``, a block at a time); returns how many.

    A shard of another instance of the condition contributes nothing."""
    if f.attrs.get("condition") != group.name.rsplit("/", 1)[-1] or str(f.attrs.get("instance")) != condition_instance(group):
        return 0
    rows = f["rows"][:]
    order = np.argsort(rows, kind="stable")
    for start in range(0, len(order), block_rows):
        take = np.sort(order[start : start + block_rows])  # positions in the shard, increasing
        write_rows(group, rows[take], f["hidden"][:, take, :], f["logits"][take], f["logsumexp"][take])
    return len(rows)


# ================================================================ RUN/analysis.h5
#
#   /                                          attrs: schema_version, settings (JSON), source_hidden,
#                                              instances (JSON: condition -> the instance analysed)
#   /layers/<split>/<condition>/<layer:03d>/   attrs: complete, skipped, <scalar metrics>
#        rows, cluster, core, log_density, purity[<grouping>], knn, gride_*, centers,
#        saddle_log_density, tree_clusters, tree_linkage   (per-row arrays: the split's rows)
#        lens_pred (the logit lens's argmax; analyses.readouts)
#   /decisions/<split>/<condition>/<layer:03d>/  attrs: lens_decided (share of rows whose lens answer
#        is final from this layer on); the last layer's group: decision_layer (n,)
#   /pairs/<split>/<a>~<b>/<layer:03d>/        attrs: complete, skipped, data_overlap, ari_clusters
#        data_overlap (n,)
#   /similarity/<split>/layers/<condition>/     attrs: complete, k, n_rows, n_dropped (rows duplicated
#        in some layer, left out)   layer (R,) int: the condition's layers with a geometry;
#        cka, cka_debiased, mutual_knn, cknna, imbalance (R, R) float64, layer i against layer j
#        (imbalance[i, j] = Delta(i -> j)); metrics.csv rows: '<condition>' at layer i, '<measure>[layer:<j>]'
#   /similarity/<split>/conditions/<layer:03d>/  the same over condition (R,) str: the conditions at a
#        layer; metrics.csv rows: pairs 'a~b' with cka, ..., imbalance_a_to_b, imbalance_b_to_a
#   /correlations/<split>/<target>/<layer:03d>/  attrs: complete, skipped, <feature>_{rho,low,high}
#   /seeds/<split>/<base>/<layer:03d>/         attrs: how far apart the landscapes of fine-tunes that
#        differ only in their seed are (overlap, ARI, ID range) next to their loss and accuracy spread
#   /complexity/                               attrs: baseline_accuracy, target_accuracy, smallest_bits,
#        bits_per_parameter; strategy, label, bits, accuracy, on_front (P,)   (task complexity)

_LAYERS = "layers"
_PAIRS = "pairs"
_SIMILARITY = "similarity"


_CORRELATIONS = "correlations"
_DECISIONS = "decisions"
_SEEDS = "seeds"
_COMPLEXITY = "complexity"


def seeds_path(base: str, layer: int, *, split: str) -> str:
    """Group of the seed-to-seed comparison of the fine-tunes ``base``, ``base-seed<k>``, ..."""
    return f"{_SEEDS}/{split}/{base}/{layer:03d}"


def write_complexity(f: h5py.File, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
    _write_group(f, _COMPLEXITY, arrays, attrs)


def read_complexity(f: h5py.File) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    if not result_done(f, _COMPLEXITY):
        return None
    group = f[_COMPLEXITY]
    arrays = {name: group[name][()] for name in group}
    for name in ("strategy", "label"):
        arrays[name] = group[name].asstr()[()].astype(str)
    return arrays, _decoded_attrs(group)


def result_path(condition: str, layer: int, other: str | None = None, *, split: str = "eval") -> str:
    """Group of one layer's results on one split: of a condition, or of the pair (condition, other)."""
    if other is None:
        return f"{_LAYERS}/{split}/{condition}/{layer:03d}"
    return f"{_PAIRS}/{split}/{pair_name(condition, other)}/{layer:03d}"


def pair_name(a: str, b: str) -> str:
    """The name of the pair of conditions (a, b) in analysis.h5 and metrics.csv."""
    return f"{a}~{b}"


def similarity_path(split: str, *, condition: str | None = None, layer: int | None = None) -> str:
    """Group of the similarity of a condition's layers (``condition``) or of the conditions at a ``layer``."""
    if (condition is None) == (layer is None):
        raise ValueError("a similarity group is of one condition or of one layer")
    return f"{_SIMILARITY}/{split}/layers/{condition}" if layer is None else f"{_SIMILARITY}/{split}/conditions/{layer:03d}"


def write_similarity(f: h5py.File, path: str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
    """(Re)write a similarity group: ``arrays`` holds ``layer`` (R,) int or ``condition`` (R,) str,
    the representations compared, and each measure's (R, R) matrix (``similarity_matrices``)."""
    _write_group(f, path, arrays, attrs)


def read_similarity(f: h5py.File, path: str) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]] | None:
    """(over (R,), matrices, attrs) of a similarity group, or None when it is not complete."""
    if not result_done(f, path):
        return None
    group = f[path]
    key = "layer" if "layer" in group else "condition"
    over = group[key][()] if key == "layer" else group[key].asstr()[()].astype(str)
    return over, {name: group[name][()] for name in group if name != key}, _decoded_attrs(group)


def versus_layer(layer: int) -> str:
    """The grouping of a layer x layer similarity: which layer the row's layer is compared with."""
    return f"layer:{layer}"


def _similarity_rows(f: h5py.File, split: str):
    """(label, layer, scalars) rows of a split's similarity groups (see the layout above)."""
    for name in f.get(f"{_SIMILARITY}/{split}/layers", {}):
        found = read_similarity(f, similarity_path(split, condition=name))
        if found is not None:
            layers, matrices, _ = found
            for i, j in itertools.permutations(range(len(layers)), 2):
                yield name, int(layers[i]), {
                    grouped("imbalance_a_to_b" if m == "imbalance" else m, versus_layer(int(layers[j]))): float(v[i, j])
                    for m, v in matrices.items()}
    for layer_name in f.get(f"{_SIMILARITY}/{split}/conditions", {}):
        found = read_similarity(f, similarity_path(split, layer=int(layer_name)))
        if found is not None:
            conditions, matrices, _ = found
            for i, j in itertools.combinations(range(len(conditions)), 2):  # the analysed order: pairs named (earlier, later)
                scalars = {m: float(v[i, j]) for m, v in matrices.items() if m != "imbalance"}
                scalars.update(imbalance_a_to_b=float(matrices["imbalance"][i, j]), imbalance_b_to_a=float(matrices["imbalance"][j, i]))
                yield pair_name(conditions[i], conditions[j]), int(layer_name), scalars


def decision_path(condition: str, layer: int, *, split: str) -> str:
    """Group of the logit lens's decisions of a condition up to a layer (``lens_decided``)."""
    return f"{_DECISIONS}/{split}/{condition}/{layer:03d}"


def correlation_path(target: str, layer: int, *, split: str) -> str:
    """Group of the correlations of a per-example target (e.g. EDL of a condition) with features."""
    return f"{_CORRELATIONS}/{split}/{target}/{layer:03d}"


def write_analysis_header(f: h5py.File, settings: Mapping[str, Any], source: str, stamp: Mapping[str, Any]) -> None:
    f.attrs["schema_version"] = SCHEMA_VERSION
    f.attrs["settings"] = _attr_value(dict(settings))
    f.attrs["source_hidden"] = source
    for key, value in stamp.items():  # command, created_at, versions
        f.attrs[key] = _attr_value(value)


def analyzed_instances(f: h5py.File) -> dict[str, str]:
    """condition -> the ``instance`` of it whose results analysis.h5 holds (root attr ``instances``)."""
    return dict(_decode_attr(f.attrs["instances"])) if "instances" in f.attrs else {}


def record_instances(f: h5py.File, instances: Mapping[str, str]) -> None:
    f.attrs["instances"] = _attr_value({**analyzed_instances(f), **instances})


def delete_results_of(f: h5py.File, condition: str) -> int:
    """Delete every result computed from ``condition`` (its layers, its pairs, the correlations
    that read it); returns how many groups went. Seeds and complexity are rewritten by every run."""
    doomed = []
    for top in (_LAYERS, _DECISIONS, _PAIRS, _CORRELATIONS):
        for split, by_split in f.get(top, {}).items():
            for name in by_split:
                uses = {
                    _LAYERS: name == condition,
                    _DECISIONS: name == condition,
                    _PAIRS: condition in name.split("~"),
                    # targets are edl:<fine-tune> / gain:<fine-tune>; their features come from 0shot too
                    _CORRELATIONS: name.split(":", 1)[-1] == condition or condition == "0shot",
                }[top]
                if uses:
                    doomed.append(f"{top}/{split}/{name}")
    for split, by_split in f.get(_SIMILARITY, {}).items():
        if condition in by_split.get("layers", {}):
            doomed.append(f"{_SIMILARITY}/{split}/layers/{condition}")
        for layer_name, group in by_split.get("conditions", {}).items():  # every condition at a layer
            if "condition" not in group or condition in group["condition"].asstr()[()]:
                doomed.append(f"{_SIMILARITY}/{split}/conditions/{layer_name}")
    for path in doomed:
        del f[path]
    return len(doomed)


def analysis_attrs(f: h5py.File) -> dict[str, Any]:
    return _decoded_attrs(f)


def analysis_settings(f: h5py.File) -> dict[str, Any]:
    if int(f.attrs.get("schema_version", -1)) != SCHEMA_VERSION:
        raise SchemaError(f"{f.filename} is not an analysis file of schema version {SCHEMA_VERSION}")
    return _decode_attr(f.attrs["settings"])


def result_done(f: h5py.File, path: str) -> bool:
    return path in f and bool(f[path].attrs.get("complete", False))


def _write_group(f: h5py.File, path: str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
    """(Re)write a group of arrays and attrs; ``complete`` is set last, so a cut-short write is redone."""
    if path in f:
        del f[path]
    group = f.create_group(path)
    for name, array in arrays.items():
        array = np.asarray(array)
        if array.dtype.kind in "UO":  # text: stored as UTF-8 strings
            group.create_dataset(name, data=array.astype(object), dtype=_STR)
        else:
            group.create_dataset(name, data=array)
    for key, value in attrs.items():
        group.attrs[key] = _attr_value(value)
    faults.reached("group.before_complete")
    group.attrs["complete"] = True


def write_result(f: h5py.File, path: str, scalars: Mapping[str, float], arrays: Mapping[str, np.ndarray], skipped: str) -> None:
    """Write one result group: scalar metrics as attrs, arrays as datasets."""
    _write_group(f, path, arrays, {**{k: float(v) for k, v in scalars.items()}, "skipped": skipped})


def read_result(f: h5py.File, path: str, arrays: tuple[str, ...] | None = None) -> tuple[dict[str, float], dict[str, np.ndarray], str]:
    """(scalars, arrays, skipped) of one result group; ``arrays`` names the ones to read (default: all)."""
    if path not in f:
        raise SchemaError(f"no result {path} in {f.filename}: run `landscape analyze` first")
    group = f[path]
    scalars = _result_scalars(group)
    names = [name for name in group if arrays is None or name in arrays]
    return scalars, {name: group[name][()] for name in names}, str(group.attrs.get("skipped", ""))


def iter_results(f: h5py.File):
    """Yield (split, condition, layer, scalars, skipped) for every complete result.

    Pairs of conditions are named 'a~b'; correlations 'corr:<target>'; seed comparisons 'seeds:<base>';
    the similarity matrices come as rows of their conditions and pairs (``_similarity_rows``).
    """
    prefixes = {_CORRELATIONS: "corr:", _SEEDS: "seeds:"}
    for top in (_LAYERS, _DECISIONS, _PAIRS, _CORRELATIONS, _SEEDS):
        if top not in f:
            continue
        for split, by_split in f[top].items():
            for name, group in by_split.items():
                label = prefixes.get(top, "") + name
                for layer_name, result in group.items():
                    if result.attrs.get("complete", False):
                        yield split, label, int(layer_name), _result_scalars(result), str(result.attrs.get("skipped", ""))
    for split in f.get(_SIMILARITY, {}):
        for label, layer, scalars in _similarity_rows(f, split):
            yield split, label, layer, scalars, ""


# ================================================================ EDL bookkeeping (in hidden.h5)
#
#   /edl/<condition>/   attrs: labels (true|random), n_train, n_heldout, n_trainable, settings (JSON),
#                              the totals of landscape.edl, each with <name>_low / <name>_high (95 %
#                              bootstrap interval): edl_heldout_bits (the headline EDL), edl_train_bits,
#                              edl_format_only_bits, gain_beyond_format_bits, mdl_bits,
#                              format_only_mdl_bits; accuracy_gain (+ interval); final_bits,
#                              heldout_residual_bits, format_only_heldout_residual_bits, base_bits,
#                              uniform_bits, marginal_mdl_bits, marginal_entropy_bits, heldout_labels
#       rows (n,) int64 row in /examples; label (n,) int8 the label trained on; order (n,) the
#       prequential order; online_bits, final_bits, base_bits, marginal_online_bits,
#       format_online_bits (n,) float64   -log2 p(label | prompt), K-way; format_params (K+1,)
#       eval_rows (m,), eval_base_bits, eval_final_bits, eval_gain_bits (m,)   (true answers)
#       heldout_final_bits, heldout_format_bits (m,)   the held-out residuals' per-row bits

_EDL = "edl"


def write_edl(f: h5py.File, condition: str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
    """(Re)write the EDL record of a fine-tuned condition."""
    _write_group(f, f"{_EDL}/{condition}", arrays, attrs)


def edl_names(f: h5py.File) -> list[str]:
    check_version(f)
    if _EDL not in f:
        return []
    return [name for name, group in f[_EDL].items() if group.attrs.get("complete", False)]


def read_edl(f: h5py.File, condition: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, attrs) of the EDL record of a fine-tuned condition."""
    if condition not in edl_names(f):
        raise SchemaError(f"no EDL record for {condition!r} in {f.filename}: run `landscape finetune` first")
    group = f[_EDL][condition]
    return {name: group[name][()] for name in group}, _decoded_attrs(group)


# ================================================================ RUN/maps.h5 (a cache of the report)
#
#   /maps/<split>/<condition>/<layer:03d>/   attrs: complete, key (JSON of method, seed, source)
#       xy (n, 2) float32   2-D map of the split's rows, in /examples order


def map_path(condition: str, layer: int, *, split: str) -> str:
    return f"maps/{split}/{condition}/{layer:03d}"


def write_map(f: h5py.File, path: str, xy: np.ndarray, key: Mapping[str, Any]) -> None:
    _write_group(f, path, {"xy": np.asarray(xy, dtype=np.float32)}, {"key": dict(key)})


def read_map(f: h5py.File, path: str, key: Mapping[str, Any]) -> np.ndarray | None:
    """The cached map at ``path`` if it was made with ``key``, else None."""
    if not result_done(f, path) or _decode_attr(f[path].attrs["key"]) != json.loads(_attr_value(dict(key))):
        return None
    return f[path]["xy"][:]
