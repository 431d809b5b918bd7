"""Reading a run: one layer of one condition as a numpy array, with its labels.

Each call opens the file, reads, and closes it: no handle or state is kept.

Example::

    import landscape
    layer = landscape.load_layer("runs/default", "5shot", 12)
    layer.X.shape          # (N, d) float32
    layer.groups["subject"][:3]   # each row's value of a grouping field of the task
    landscape.conditions("runs/default")   # ['0shot', '5shot', 'sft']
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from landscape import names, store


@dataclass(frozen=True)
class Layer:
    """One layer of one condition: ``X`` (N, d) and per-row labels (N,)."""

    condition: str
    layer: int
    X: np.ndarray
    ids: np.ndarray
    groups: dict[str, np.ndarray]
    answers: np.ndarray
    pred: np.ndarray
    splits: np.ndarray


def hidden_path(run: str | Path) -> Path:
    """``run`` may be the run folder or the hidden.h5 file itself."""
    path = Path(run)
    return path / store.HIDDEN_FILE if path.is_dir() else path


def open_run_file(run: str | Path) -> h5py.File:
    """hidden.h5 of a run, open read-only, its schema version checked."""
    path = hidden_path(run)
    if not path.is_file():
        raise FileNotFoundError(f"no {store.HIDDEN_FILE} at {path}: run `landscape extract` first")
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        if "unable to lock file" not in str(error):
            raise store.SchemaError(f"{path} is not a readable HDF5 file ({error})") from None
        # Another process is writing it (an extraction in progress): read what it has flushed.
        try:
            f = h5py.File(path, "r", locking=False)
        except OSError as again:
            raise store.SchemaError(
                f"{path} is being written by another process and cannot be read now ({again})"
            ) from None
    store.hidden.check_version(f)
    return f


def conditions(run: str | Path) -> list[str]:
    with open_run_file(run) as f:
        return store.hidden.condition_names(f)


def info(run: str | Path) -> dict:
    """Root attrs plus, per condition, its attrs, the model's layer count and the layers it stores."""
    with open_run_file(run) as f:
        out = store.hidden.read_attrs(f)
        out["conditions"] = {
            name: {
                **store.hidden.condition_attrs(store.hidden.get_condition(f, name)),
                "layers": store.hidden.n_layers(f, name),
                "layers_stored": store.hidden.stored_layers(f, name),
            }
            for name in store.hidden.condition_names(f)
        }
        return out


def examples(run: str | Path) -> store.hidden.Examples:
    with open_run_file(run) as f:
        return store.hidden.read_examples(f)


def load_layer(run: str | Path, condition: str, layer: int, states: str = "residual") -> Layer:
    """States (N, d) of ``layer`` (0 = embeddings) in ``condition``, with labels: the residual
    stream, or ``states="normed"``, it after the norm that reads it (Doimo et al.'s state)."""
    with open_run_file(run) as f:
        ex = store.hidden.read_examples(f)
        X = store.hidden.read_layer(f, condition, layer, states)
        _, _, pred = store.hidden.read_outputs(f, condition)
        n = store.hidden.n_layers(f, condition)
    return Layer(
        condition=condition,
        layer=layer % n,
        X=np.asarray(X, dtype=np.float32),
        ids=ex.ids,
        groups=ex.groups,
        answers=ex.answers,
        pred=pred,
        splits=ex.splits,
    )


def status(run: str | Path) -> dict:
    """What each stage has written so far, for ``landscape info``.

    ``extract``: per condition, rows done of N and whether complete; ``finetune``: the EDL records
    (totals, settings, provenance); ``analyze``: analysis.h5's provenance and, per split and
    condition, layers complete of those stored; ``report``: the page's path, if written.
    """
    hidden = hidden_path(run)
    out: dict = {"extract": {}, "finetune": {}, "analyze": None, "report": None}
    with open_run_file(hidden) as f:
        for name in store.hidden.condition_names(f):
            group = store.hidden.get_condition(f, name)
            done = store.hidden.rows_done(group)
            shards = sorted(store.shards.shard_path(hidden.parent, name, 0).parent.glob("rank-*.h5"))
            out["extract"][name] = {
                "rows_done": int(done.sum()),
                "rows": len(done),
                "shards": len(shards),
                "complete": bool(group.attrs["complete"]),
                "layers": store.hidden.n_layers(f, name),
            }
        for name in store.edl.edl_names(f):
            out["finetune"][name] = store.edl.read_edl(f, name)[1]
    analysis = hidden.with_name(store.ANALYSIS_FILE)
    if analysis.is_file():
        try:
            with h5py.File(analysis, "r") as f:
                layers: dict = {}  # distinct layers: a condition's layer may have several result groups
                for split, name, layer, _, _ in store.analysis.iter_results(f):
                    layers.setdefault(split, {}).setdefault(name, set()).add(layer)
                counts = {split: {name: len(ls) for name, ls in by_name.items()} for split, by_name in layers.items()}
                out["analyze"] = {**store.analysis.analysis_attrs(f), "layers_complete": counts}
        except OSError as error:
            out["analyze"] = {"error": f"unreadable: {error}"}
    page = hidden.parent / store.REPORT_DIR / "index.html"
    if page.is_file():
        out["report"] = str(page)
    return out


def describe_status(info_: dict, status_: dict) -> str:
    """A few readable lines: provenance, then each stage and what it holds."""
    lines = [
        f"model     {info_.get('model')}  sha256 {info_.get('model_hash')}"
        + (f"  from {info_['model_source']}" if info_.get("model_source") else ""),
        f"task      {info_.get('task')} ({info_.get('task_file')})  sha256 {info_.get('task_hash')}  "
        f"{len(info_.get('choice_labels') or [])} choices, {info_.get('score')} scoring, groups {', '.join(info_.get('groups') or [])}",
        f"data      {info_.get('dataset')}  sha256 {info_.get('dataset_hash')}",
        f"partition {json.dumps(info_.get('partition'))}  split seed {info_.get('split_seed')}",
        f"created   {info_.get('created_at')}  by `{info_.get('command')}`",
        f"versions  {json.dumps(info_.get('versions'))}",
        "extract:",
    ]
    for name, s in status_["extract"].items():
        attrs = info_["conditions"][name]
        state = (
            "complete"
            if s["complete"]
            else f"INCOMPLETE ({s['rows_done']}/{s['rows']} rows): re-run the command to resume"
        )
        if s.get("shards"):
            state += f" (+ rows in {s['shards']} rank shards, merged on resume)"
        accuracy = f"accuracy {attrs['accuracy']:.4f}" if "accuracy" in attrs else ""
        stored = attrs.get("layers_stored", [])
        layers = (
            f"{s['layers']} layers"
            if len(stored) in (0, s["layers"])
            else f"{len(stored)} of {s['layers']} layers ({','.join(map(str, stored))})"
        )
        lines.append(
            f"  {name:<22} {attrs.get('kind', '')} {attrs.get('shots', '')}-shot {attrs.get('demo_sampling', '')}"
            f"  {s['rows']} rows x {layers}  {state}  {accuracy}"
            + (f"  [{attrs['created_at']} `{attrs['command']}`]" if "command" in attrs else "")
        )
    lines.append("finetune:" + ("" if status_["finetune"] else " not run (landscape finetune RUN)"))
    for name, attrs in status_["finetune"].items():
        seed = attrs.get("settings", {}).get("seed")
        lines.append(
            f"  {name:<22} {attrs.get('labels')} labels, n={attrs.get('n_train')}, EDL (held-out) "
            f"{attrs.get('edl_heldout_bits', float('nan')):.1f} bits [{attrs.get('edl_heldout_bits_low', float('nan')):.1f}, "
            f"{attrs.get('edl_heldout_bits_high', float('nan')):.1f}], training-row EDL {attrs.get('edl_train_bits', float('nan')):.1f}, "
            f"format-only EDL {attrs.get('edl_format_only_bits', float('nan')):.1f}, gain beyond format "
            f"{attrs.get('gain_beyond_format_bits', float('nan')):.1f} bits, seed {seed}"
        )
    analyze = status_["analyze"]
    if analyze is None:
        lines.append("analyze: not run (landscape analyze RUN)")
    elif "error" in analyze:
        lines.append(f"analyze: {analyze['error']}")
    else:
        made = f"{analyze['created_at']} by `{analyze['command']}`  " if "command" in analyze else ""
        settings = dict(analyze.get("settings") or {})
        recipe = settings.pop("recipe", "suite (made before recipes were recorded)")
        overrides = settings.pop("overrides", [])
        changed = f" with {', '.join(overrides)} changed" if overrides else ""
        lines.append(f"analyze: {made}recipe {recipe}{changed}; states {settings.get('states', 'residual')}")
        lines.append(f"  settings {json.dumps(settings, sort_keys=True)}")
        for split, by_name in analyze["layers_complete"].items():
            counts = ", ".join(
                f"{name} {n}" for name, n in sorted(by_name.items()) if names.parse_result(name)[0] == "condition"
            )
            lines.append(f"  {split}: layers complete: {counts}")
    lines.append(f"report: {status_['report'] or 'not written (landscape report RUN)'}")
    return "\n".join(lines)
