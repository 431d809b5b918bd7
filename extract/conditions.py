"""One condition of hidden.h5, written: its rows in batches (a prefix's key/value cache shared),
resumed row by row, shared among ranks through shards, then finished and its readout checked.

``extract_condition`` is called by ``extract.icl`` (one per k-shot condition) and by
``extract.finetune`` (the fine-tuned model's states).
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from extract import demos, forward, readout
from extract.ranks import SINGLE, Ranks
from landscape import disk, faults, provenance, store, tasks
from landscape.layers import select_layers
from landscape.readouts import lens_logits
from landscape.tasks import Item, Task


class RunMismatch(ValueError):
    """The run folder holds a run made with other settings."""


def extract_condition(
    path: Path,
    name: str,
    settings: dict,
    model,
    tokenizer,
    examples: store.hidden.Examples,
    by_id: dict[int | str, Item],
    *,
    prefix_text,
    plan: demos.DemoPlan | None = None,
    task: Task,
    scoring: forward.Scoring,
    batch_size: int,
    token_budget: int | None = None,
    prefix_cache: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    ranks: Ranks = SINGLE,
) -> float:
    """Write condition ``name`` of hidden.h5 (every row of ``examples``); returns its eval accuracy.

    ``prefix_text(row)`` is the text before that row's question (header + demos); ``plan`` the
    demos behind it, stored beside the states. Rows sharing a prefix run on one key/value cache of
    it; a prefix of its own (resampled demos) is run with its question, batched with others.
    A complete condition with the same settings is skipped; rows already done are kept.

    Several ``ranks`` (``accelerate launch``) share the batches; each appends its rows to its own
    shard, which the main rank merges into the condition: the same file as one process writes.
    ``settings["layers"]`` (``landscape.layers``), when there, keeps only those layers' states.

    Batches hold ``batch_size`` rows, or (``token_budget``, ``extract.budget``) as many rows as
    keep rows x (cached prefix + longest question) within it; either way the same rows, in the
    same places of hidden.h5.
    """
    layers = select_layers(settings.get("layers"), forward.n_blocks(model) + 1)
    if ranks.main:
        _prepare_condition(
            path,
            name,
            settings,
            model,
            examples,
            plan,
            task,
            scoring,
            layers,
            overwrite=overwrite,
            processes=ranks.count,
        )
    ranks.barrier()
    complete, done, instance, accuracy = _condition_state(path, name)
    ranks.barrier()  # every rank has closed the file before the main rank opens it to write
    if complete:
        if ranks.main:
            print(f"{name}: already complete (accuracy {accuracy:.3f}); skipped", file=sys.stderr)
        return accuracy
    started = time.perf_counter()
    batching = Batching(batch_size, token_budget, task.n_choices if scoring.letter_ids is None else 1)
    work = _work_left(done, examples, tokenizer, task, by_id, prefix_text, batching, prefix_cache)
    mine = ranks.share(
        work, costs=[len(batch) * (len(prefix) + max(len(ids) for _, ids in batch)) for prefix, batch in work]
    )
    _compute_rows(
        path,
        name,
        instance,
        model,
        tokenizer,
        mine,
        examples,
        by_id,
        task,
        scoring,
        layers,
        progress=progress,
        ranks=ranks,
    )
    if ranks.main:
        _finish(
            path,
            name,
            examples,
            task,
            by_id,
            started=started,
            processes=ranks.count,
            batching=batching,
            batches=len(mine),
        )
    ranks.barrier()
    with h5py.File(path, "r") as f:
        accuracy = float(store.hidden.get_condition(f, name).attrs["accuracy"])
    ranks.barrier()
    if ranks.main:
        n_eval = int((examples.splits == "eval").sum())
        print(f"{name}: accuracy {accuracy:.3f} on {n_eval} eval questions", file=sys.stderr)
    return accuracy


def _prepare_condition(
    path: Path,
    name: str,
    settings: dict,
    model,
    examples: store.hidden.Examples,
    plan: demos.DemoPlan | None,
    task: Task,
    scoring: forward.Scoring,
    layers: list[int],
    *,
    overwrite: bool,
    processes: int = 1,
) -> None:
    """Open or create the condition's group (main rank) and store its readout parameters; check the
    head of a complete one, give an unfinished one its demo plan and the rows the ranks' shards hold,
    and refuse it when its states will not fit on the disk."""
    with h5py.File(path, "a") as f:
        group = _open_condition(
            f,
            name,
            settings,
            forward.n_blocks(model),
            len(examples),
            forward.hidden_width(model),
            task.n_choices,
            layers,
            overwrite=overwrite,
        )
        # Readout parameters; also added to a condition made before they were stored.
        store.readout.write_norms(group, _norms_or_reason(model))
        store.readout.write_head(group, _head_or_reason(model, scoring))
        if group.attrs["complete"]:
            _verify_head(group, name)
        else:
            if plan is not None:
                store.hidden.write_demo_plan(group, plan.demo_ids, plan.demo_sets)
            _merge_shards(group, path.parent, name)  # rows of an interrupted multi-process run
            _check_room(group, name, path, processes)


def _check_room(group: h5py.Group, name: str, path: Path, processes: int) -> None:
    """Refuse, before a row is computed, states that will not fit on the disk: the rows not done
    yet, of every stored layer, in the store dtype (several processes write each row twice: into
    their shards, then into hidden.h5)."""
    layers, _, width = group["hidden"].shape
    left = int((~store.hidden.rows_done(group)).sum())
    need = left * layers * width * group["hidden"].dtype.itemsize * (1 if processes == 1 else 2)
    disk.check_room(
        path.parent,
        need,
        f"the states of {name} ({left} rows x {layers} layers x {width}, {store.hidden.store_dtype(group.file, name)})",
    )


def _condition_state(path: Path, name: str) -> tuple[bool, np.ndarray, str, float]:
    """(complete, rows done, the condition's instance, its accuracy) as hidden.h5 holds them."""
    with h5py.File(path, "r") as f:
        group = store.hidden.get_condition(f, name)
        complete, done, instance = (
            bool(group.attrs["complete"]),
            store.hidden.rows_done(group),
            store.hidden.condition_instance(group),
        )
        accuracy = float(group.attrs.get("accuracy", np.nan))
    return complete, done, instance, accuracy


def _work_left(
    done: np.ndarray,
    examples: store.hidden.Examples,
    tokenizer,
    task: Task,
    by_id,
    prefix_text,
    batching: Batching,
    prefix_cache: bool,
) -> list[tuple[list[int], list[tuple[int, list[int]]]]]:
    """[(shared prefix ids or [], batch)] of the batches with a row not done yet."""
    # Batches are planned over all rows, done or not, and a batch is redone whole unless every
    # row of it is done: a resumed run with the same batching computes each row in the very batch
    # it would have had, so its states are bit-identical to an uninterrupted run's (and so are
    # several ranks'). A token budget sized by free memory may differ on a restart: then equal
    # to float tolerance.
    return [
        (prefix_ids, batch)
        for prefix_ids, batches in _plan_batches(examples, tokenizer, task, by_id, prefix_text, batching, prefix_cache)
        for batch in batches
        if not done[[row for row, _ in batch]].all()
    ]


def _compute_rows(
    path: Path,
    name: str,
    instance: str,
    model,
    tokenizer,
    mine: list,
    examples: store.hidden.Examples,
    by_id: dict[int | str, Item],
    task: Task,
    scoring: forward.Scoring,
    layers: list[int],
    *,
    progress: bool,
    ranks: Ranks,
) -> None:
    """Run this rank's batches; write their rows (the states of ``layers``) into the condition (one
    process) or the rank's shard."""
    keep = None if layers == list(range(forward.n_blocks(model) + 1)) else layers
    bar = tqdm(
        total=sum(len(batch) for _, batch in mine),
        desc=name if ranks.count == 1 else f"{name} (rank 0 of {ranks.count})",
        unit="q",
        disable=not progress or not ranks.main,
    )
    if ranks.count == 1:
        with h5py.File(path, "a") as f:
            group = store.hidden.get_condition(f, name)
            batches = _run_batches(model, mine, scoring, _continuations(task, tokenizer, examples, by_id, scoring))
            _write_batches(
                f, batches, lambda *arrays: store.hidden.write_rows(group, *arrays), bar, keep, f"{name}'s states"
            )
    else:
        shard = store.shards.shard_path(path.parent, name, ranks.index)
        shard.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(shard, "w") as f:
            store.shards.create_shard(
                f, name, instance, n_states=len(layers), width=forward.hidden_width(model), n_choices=task.n_choices
            )
            batches = _run_batches(model, mine, scoring, _continuations(task, tokenizer, examples, by_id, scoring))
            _write_batches(
                f, batches, lambda *arrays: store.shards.append_shard(f, *arrays), bar, keep, f"{name}'s states"
            )
        ranks.barrier()
    bar.close()


def _write_batches(f: h5py.File, batches, write, bar, keep: list[int] | None, what: str) -> None:
    """Write each batch's rows as it comes (``write(rows, hidden, logits, logsumexp)``; the states
    of the ``keep`` layers, or all), flushed: a kill keeps them. A batch the disk has no room for
    is refused before HDF5 meets the full disk (``landscape.disk``); rows written stay."""
    for rows, pending in batches:
        out = pending.wait()  # its copy from the GPU (queued behind its forward pass) is complete
        hidden = out.hidden.numpy() if keep is None else out.hidden.numpy()[keep]
        disk.check_room(Path(f.filename).parent, hidden.nbytes, f"the next batch of {what}")
        try:
            write(rows, hidden, out.letter_logits.numpy(), out.logsumexp.numpy())
            f.flush()
        except (OSError, RuntimeError) as error:
            if not disk.is_full(error):
                raise
            raise disk.DiskFull(
                f"the disk is full (No space left on device) while writing {what} to {f.filename}; {disk.RESUMES}"
            ) from error
        faults.reached("extract.batch")
        bar.update(len(rows))


def _finish(
    path: Path,
    name: str,
    examples: store.hidden.Examples,
    task: Task,
    by_id,
    *,
    started: float,
    processes: int,
    batching: Batching,
    batches: int,
) -> None:
    """Merge the ranks' shards, check every row is done, mark the condition complete (its accuracies), check its head."""
    with h5py.File(path, "a") as f:
        group = store.hidden.get_condition(f, name)
        _merge_shards(group, path.parent, name)
        if not store.hidden.rows_done(group).all():
            raise RuntimeError(f"{name}: rows missing after the merge of the ranks' shards")
        logits, _, pred = store.hidden.read_outputs(f, name)
        store.hidden.finish_condition(
            group,
            {
                "accuracy": split_accuracy(pred, examples, "eval"),
                "accuracy_train": split_accuracy(pred, examples, "train"),
                **_normalised_accuracies(task, logits, examples, by_id),
                "pred_fraction": (np.bincount(pred, minlength=task.n_choices) / len(pred)).round(4).tolist(),
                "seconds": round(time.perf_counter() - started, 3),
                "processes": processes,
                **batching.record(batches),
            },
        )
        _verify_head(group, name)


def _head_or_reason(model, scoring: forward.Scoring):
    """The choice tokens' head behind the logit lens, or why there is none."""
    if scoring.letter_ids is None:
        return "text-scored task: its choices are continuations, not single tokens the head scores"
    try:
        return readout.choice_head(model, scoring.letter_ids)
    except readout.ReadoutError as error:
        return str(error)


# The lens at the last layer must give the model's own choice logits: a head doing more than the
# final norm and these rows (a logit scale, another cap) is caught here, not in a figure.
LENS_TOLERANCE = 1e-3  # of the logits' spread


def _verify_head(group, name: str) -> None:
    """Check condition ``name``'s stored norm and head against its own logits (once); mark the
    lens unavailable, with the error, when they do not reproduce them."""
    if store.readout.head_checked(group):
        return
    f = group.file
    try:
        norms, head = store.readout.read_norms(f, name), store.readout.read_head(f, name)
    except store.SchemaError as error:
        store.readout.mark_head_unavailable(group, str(error))
        return
    last = norms.weight.shape[0] - 1
    states, logits = store.hidden.read_layer(f, name, last), group["logits"][:]
    lens = lens_logits(states, norms.layer(last), norms.kind, head)
    relative = float(np.abs(lens - logits).max() / max(np.abs(logits).max(), 1e-6))
    if relative > LENS_TOLERANCE:
        store.readout.mark_head_unavailable(
            group,
            f"the final norm and head rows do not reproduce the model's logits "
            f"(relative error {relative:.1e}): its head does more than that",
        )
    else:
        store.readout.set_head_verified(group, relative)


def _norms_or_reason(model):
    """The norm parameters behind ``--states normed``, or why this model has none."""
    try:
        return readout.norm_parameters(model)
    except readout.ReadoutError as error:
        return str(error)


def _run_batches(
    model, work: list[tuple[list[int], list[tuple[int, list[int]]]]], scoring: forward.Scoring, continuations
):
    """Yield (rows (B,), forward output) of each (shared prefix ids or [], batch); a prefix's
    key/value cache is computed once (on the device) for the consecutive batches that share it.
    ``continuations(row)``: the token ids of each choice's text (text scoring), else unused.

    A batch is yielded once the next one is queued: on a GPU, the host writes a batch's states
    while the device computes the next (``.wait()`` on an output before reading it)."""
    cached_ids, prefix, pending = None, None, None
    for prefix_ids, batch in work:
        if prefix_ids is not cached_ids:
            cached_ids, prefix = prefix_ids, (forward.encode_prefix(model, prefix_ids) if prefix_ids else None)
        out = forward.last_token_states(
            model,
            [ids for _, ids in batch],
            prefix=prefix,
            letter_ids=scoring.letter_ids,
            non_blocking=True,
            continuations=None if scoring.letter_ids is not None else [continuations(row) for row, _ in batch],
        )
        if pending is not None:
            yield pending
        pending = np.array([row for row, _ in batch]), out
    if pending is not None:
        yield pending


def _merge_shards(group: h5py.Group, run_dir: Path, name: str) -> None:
    """Merge every rank's shard of condition ``name`` into ``group``, then delete the shards.
    A shard a SIGKILL left unreadable is dropped: its rows are simply redone."""
    folder = store.shards.shard_path(run_dir, name, 0).parent
    if not folder.is_dir():
        return
    merged, shards = 0, sorted(folder.glob("rank-*.h5"))
    for shard in shards:
        try:
            with h5py.File(shard, "r") as f:
                merged += store.shards.merge_shard(group, f)
        except OSError as error:
            print(f"{name}: dropped the unreadable shard {shard.name} ({error}); its rows are redone", file=sys.stderr)
        group.file.flush()
    if shards:
        print(f"{name}: merged {merged} rows from {len(shards)} rank shards", file=sys.stderr)
    shutil.rmtree(folder)
    if not any(folder.parent.iterdir()):
        folder.parent.rmdir()


def _continuations(
    task: Task, tokenizer, examples: store.hidden.Examples, by_id: dict[int | str, Item], scoring: forward.Scoring
):
    """row -> token ids of each choice's continuation (text scoring; letters need none)."""
    if scoring.letter_ids is not None:
        return None
    return lambda row: [
        tokenizer.encode(text, add_special_tokens=False)
        for text in tasks.continuations(task, by_id[tasks.id_key(examples.ids[row])])
    ]


def _normalised_accuracies(
    task: Task, scores: np.ndarray, examples: store.hidden.Examples, by_id: dict[int | str, Item]
) -> dict:
    """Text scoring: accuracy of the length-normalised scores too (lm-eval's acc_norm: summed
    log-probability divided by the continuation's length in bytes)."""
    if task.score != "text":
        return {}
    lengths = np.array(
        [
            [max(1, len(text.encode())) for text in tasks.continuations(task, by_id[tasks.id_key(i)])]
            for i in examples.ids
        ],
        dtype=np.float64,
    )
    pred = (scores / lengths).argmax(axis=1)
    return {
        "accuracy_norm": split_accuracy(pred, examples, "eval"),
        "accuracy_norm_train": split_accuracy(pred, examples, "train"),
    }


def _plan_batches(
    examples: store.hidden.Examples, tokenizer, task: Task, by_id, prefix_text, batching: Batching, prefix_cache: bool
) -> list[tuple[list[int], list[list[tuple[int, list[int]]]]]]:
    """[(shared prefix ids or [], batches of (row, token ids))]: rows sharing a prefix run on its
    cache; the others (a prefix of their own, or no cache) run whole, batched across prefixes.
    Batches are length-sorted (little padding) with ties kept in row order, cut by ``batching``."""
    by_prefix: dict[str, list[int]] = {}
    for row in range(len(examples)):
        by_prefix.setdefault(prefix_text(row), []).append(row)

    def question_ids(row: int) -> list[int]:
        return tokenizer.encode(
            tasks.render_question(task, by_id[tasks.id_key(examples.ids[row])]), add_special_tokens=False
        )

    plans, alone = [], []
    for text, rows in by_prefix.items():
        prefix_ids = tokenizer.encode(text, add_special_tokens=True)
        if prefix_cache and len(rows) > 1 and prefix_ids:
            plans.append((prefix_ids, batching.cut([(row, question_ids(row)) for row in rows], len(prefix_ids))))
        else:
            alone += [(row, prefix_ids + question_ids(row)) for row in rows]
    if alone:
        plans.append(([], batching.cut(alone, 0)))
    return plans


@dataclass(frozen=True)
class Batching:
    """How a condition's rows are cut into batches: ``rows`` a batch, or (``token_budget``) as
    many as keep rows x (prefix + longest prompt) x ``sequences_per_row`` (a text-scored task
    runs each choice's continuation: K sequences a row) within the budget; a row alone over it
    is a batch of its own."""

    rows: int
    token_budget: int | None = None
    sequences_per_row: int = 1

    def cut(self, items: list[tuple[int, list[int]]], prefix_tokens: int) -> list[list[tuple[int, list[int]]]]:
        """Batches of ``items`` (row, token ids), sorted by length (ties in row order)."""
        items = sorted(items, key=lambda item: len(item[1]))
        if self.token_budget is None:
            return [items[i : i + self.rows] for i in range(0, len(items), self.rows)]
        batches: list[list[tuple[int, list[int]]]] = [[]]
        for item in items:  # ascending: the item added is the batch's longest
            cost = (len(batches[-1]) + 1) * (prefix_tokens + len(item[1])) * self.sequences_per_row
            if batches[-1] and cost > self.token_budget:
                batches.append([])
            batches[-1].append(item)
        return [batch for batch in batches if batch]

    def record(self, batches: int) -> dict:
        """What a finished condition records of its batching (provenance: a resumed run may differ)."""
        return {
            **({"token_budget": self.token_budget} if self.token_budget else {"batch_size": self.rows}),
            "batches_run": batches,
        }


def split_accuracy(pred: np.ndarray, examples: store.hidden.Examples, split: str) -> float:
    """Accuracy over the rows of one split (NaN when the split is empty)."""
    rows = examples.splits == split
    return float(np.mean(pred[rows] == examples.answers[rows])) if rows.any() else float("nan")


def _open_condition(
    f: h5py.File,
    name: str,
    settings: dict,
    blocks: int,
    rows: int,
    width: int,
    n_choices: int,
    layers: list[int],
    *,
    overwrite: bool,
) -> h5py.Group:
    """The condition's group: resumed if it exists with the same settings, else (re)created."""
    if name in store.hidden.condition_names(f):
        group = store.hidden.get_condition(f, name)
        have = store.hidden.condition_attrs(group)
        have.setdefault("store_dtype", "float32")  # conditions written before the choice existed
        differing = [k for k in settings if k != "prefix_cache" and have.get(k) != settings[k]]
        if (
            not differing
            and group["hidden"].shape == (len(layers), rows, width)
            and store.hidden.stored_layers(f, name) == layers
        ):
            return group
        if not overwrite:
            key = differing[0] if differing else "shape"
            raise RunMismatch(
                f"condition {name} in {f.filename} was made with other {key}: use another RUN folder or --overwrite"
            )
        store.hidden.delete_condition(f, name)
    # Provenance beside the settings: only the settings are compared when a run resumes.
    return store.hidden.create_condition(
        f,
        name,
        n_layers=blocks,
        n_rows=rows,
        width=width,
        n_choices=n_choices,
        attrs={**settings, **provenance.stamp()},
        store_dtype=settings.get("store_dtype", "float32"),
        layers=layers,
    )
