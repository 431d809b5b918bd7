"""ICL extraction: k-shot prompts through the model, last-token states of every layer into hidden.h5.

Flow: a task's rows (``landscape.tasks``) -> seeded partition by the first grouping field ->
for each condition (``0shot``, ``5shot``, ...) and value of that field: its prefix (header + its
first k demos) runs once into a key/value cache, its questions run on top of it in length-sorted
batches, and each batch is written to its rows at once (memory does not grow with N). Rows
marked done are skipped on a re-run, so a killed run resumes; a run folder made with other
settings (another task file included) is refused unless ``overwrite``.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from extract import data, demos, forward, models, readout
from extract.ranks import Ranks
from landscape import faults, names, provenance, store, tasks
from landscape.readouts import lens_logits
from landscape.tasks import Item, Task
from landscape.atomic import replace_atomically
from landscape.devices import pick_device, pick_dtype

REPRESENTATION = (
    "last prompt token (the end of the task's prompt, e.g. the ':' of 'Answer:'); layer 0 = input "
    "embeddings, layer l = output of block l, all before the final norm (un-normalised residual stream)"
)
PROMPT_TOKENS = "prefix and question tokenised apart, then concatenated"


class RunMismatch(ValueError):
    """The run folder holds a run made with other settings."""


@dataclass(frozen=True)
class ExtractConfig:
    """Every setting of an extraction; all of it is recorded in the output."""

    model: str = "smollm2-135m"
    task: str = tasks.DEFAULT_TASK  # a built-in task's name or a task file (landscape.tasks)
    task_data: str | None = None  # replaces the task's source file
    shots: tuple[int, ...] = (0, 5)
    demos: tuple[str, ...] = ("fixed",)  # demo samplings, one condition each per k (extract.demos)
    subjects: str = "largest:12"
    per_subject: int = 100
    demo_pool: int = 20
    train_per_subject: int = 50
    seed: int = 0
    batch_size: int = 8
    device: str = "auto"
    device_map: str | None = None  # split the model over GPUs / cpu / disk (models.parse_device_map)
    dtype: str = "auto"
    store_dtype: str = "float32"  # how hidden.h5 keeps the states (store.encoding.STORE_DTYPES); read back as float32
    prefix_cache: bool = True

    def validate(self) -> None:
        for name in ("per_subject", "demo_pool", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.train_per_subject < 0:
            raise ValueError(f"train_per_subject must be >= 0, got {self.train_per_subject}")
        if not self.shots:
            raise ValueError("no shots given")
        for k in self.shots:
            if k < 0:
                raise ValueError(f"shots must be >= 0, got {k}")
            if k > self.demo_pool:
                raise ValueError(f"{k} shots asked but the demo pool holds {self.demo_pool} per value of the first group")
        if self.store_dtype not in store.encoding.STORE_DTYPES:
            raise ValueError(f"unknown store dtype {self.store_dtype!r} (known: {', '.join(store.encoding.STORE_DTYPES)})")
        if not self.demos:
            raise ValueError("no demo sampling given")
        for sampling in self.demos:
            if sampling not in names.SAMPLINGS:
                raise ValueError(names.unknown("demo sampling", sampling, names.SAMPLINGS))


def run_extract(config: ExtractConfig, run_dir: Path, *, overwrite: bool = False, progress: bool = True,
                ranks: Ranks = Ranks()) -> dict[str, float]:
    """Extract every condition of ``config`` into ``run_dir/hidden.h5``; returns accuracy per condition.

    Under ``accelerate launch`` every rank calls this with its ``ranks`` (``extract.ranks.current()``):
    each loads the model on its own device and computes a share of every condition's batches."""
    config.validate()
    task = tasks.load_task(config.task)
    data_path = tasks.source_path(task, config.task_data)
    task, items = tasks.load_items(task, data_path)
    by_id = {item.id: item for item in items}
    values = data.select_values(items, config.subjects, task.first_group)
    partition = data.make_partition(
        items,
        values,
        demo_pool=config.demo_pool,
        per_subject=config.per_subject,
        train_per_subject=config.train_per_subject,
        seed=config.seed,
        group=task.first_group,
    )
    models.check_device_map(config.device_map, device=config.device, processes=ranks.count)
    device = pick_device(config.device, given=ranks.device)
    dtype = pick_dtype(config.dtype, device)
    resolved = models.resolve_model(config.model)

    examples = run_examples(task, partition, by_id)
    header = {
        "model": config.model,
        "model_hash": resolved.sha256,
        "model_source": resolved.source,
        **task_header(task, data_path),
        "split_seed": config.seed,
        "partition": partition.settings,
        "group_values": list(partition.values),
        "representation": REPRESENTATION,
        "prompt_tokens": PROMPT_TOKENS,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / store.HIDDEN_FILE
    model, tokenizer = models.load_model(resolved, device, dtype, device_map=config.device_map)  # a model that does not load leaves no file
    if ranks.main:
        _open_or_create(path, header, examples, partition, by_id, overwrite=overwrite)
    ranks.barrier()
    scoring = choice_scoring(task, tokenizer)

    accuracies = {}
    for k in config.shots:
        for sampling in config.demos:
            if k == 0 and sampling not in demos.ZERO_SHOT_SAMPLINGS:
                continue  # no demos to sample: the same prompts as 0shot
            name = names.icl_condition(k, sampling)
            plan = demos.plan_demos(examples.ids, examples.first_group, partition.demos, k=k, sampling=sampling,
                                    seed=config.seed)
            settings = {
                "kind": "icl",
                "shots": k,
                "demo_sampling": sampling,
                "prompt_format": task.format_dict(),
                "prefix_cache": config.prefix_cache,
                "dtype": str(dtype).removeprefix("torch."),
                "store_dtype": config.store_dtype,
                **scoring.settings(),
            }
            if sampling == "fixed":  # one demo list per value of the first group: readable in the attrs
                settings["demo_ids"] = {s: partition.demos[s][:k] for s in partition.values}
            else:  # per-row demos are in the condition's demo_ids dataset
                settings["demo_seed"] = config.seed
            accuracies[name] = extract_condition(
                path, name, settings, model, tokenizer, examples, by_id,
                prefix_text=_prefix_texts(task, plan, by_id, examples), plan=plan,
                task=task, scoring=scoring, batch_size=config.batch_size, prefix_cache=config.prefix_cache,
                overwrite=overwrite, progress=progress, ranks=ranks,
            )
            if sampling == "fixed" and ranks.main:
                _record_demo_bits(path, name, model, tokenizer, task, partition, by_id, k)
    return accuracies


def task_header(task: Task, data_path: Path) -> dict:
    """The task's provenance in hidden.h5: its file's text and hash, the data file's hash."""
    return {
        "task": task.name,
        "task_file": task.path,
        "task_text": task.text,
        "task_hash": task.sha256,
        "dataset": f"{task.name}: {task.description or task.source} ({data_path.name})",
        "dataset_path": str(data_path.resolve()),
        "dataset_hash": tasks.file_sha256(data_path),
        "choice_labels": list(task.letters),
        "score": task.score,
    }


def choice_scoring(task: Task, tokenizer) -> forward.Scoring:
    """How the choices are scored: the letters' single tokens, or each choice's text (per row)."""
    if task.score == "letter":
        texts = [tasks.render_answer(task, task.continuation, task.letters, i) for i in range(task.n_choices)]
        return forward.Scoring(letter_ids=forward.letter_token_ids(tokenizer, texts))
    return forward.Scoring(letter_ids=None)


def demo_bits(model, tokenizer, task: Task, demo_items: list[Item]) -> tuple[float, int]:
    """(bits, tokens) of one value's demonstrations coded by the model itself, after the header
    (that of the first demo): the length of their arithmetic code, the description length of the
    ICL "program" (task complexity, arXiv 2602.15829)."""
    header = tokenizer.encode(tasks.render_prefix(task, demo_items[0], []), add_special_tokens=True)
    prefix = tokenizer.encode(tasks.render_prefix(task, demo_items[0], demo_items), add_special_tokens=True)
    start = next((i for i, (a, b) in enumerate(zip(header, prefix)) if a != b), min(len(header), len(prefix)))
    start = max(start, 1)
    return float(forward.token_bits(model, [prefix], [start])[0]), len(prefix) - start


def _record_demo_bits(path: Path, name: str, model, tokenizer, task: Task, partition: data.Partition, by_id, k: int) -> None:
    """Add the demos' code length to a fixed-demo condition's attrs (once; older runs get it on a re-run)."""
    with h5py.File(path, "a") as f:
        group = store.hidden.get_condition(f, name)
        if "demo_bits_total" in group.attrs:
            return
        bits, tokens = {}, {}
        for value in partition.values:
            demos_of = [by_id[i] for i in partition.demos[value][:k]]
            bits[value], tokens[value] = demo_bits(model, tokenizer, task, demos_of) if k else (0.0, 0)
        store.hidden.update_condition_attrs(group, {"demo_bits": bits, "demo_tokens": tokens,
                                              "demo_bits_total": float(sum(bits.values()))})


def _prefix_texts(task: Task, plan: demos.DemoPlan, by_id: dict[int, Item], examples: store.hidden.Examples):
    """row -> the text before its question: its own header (unless none) and the row's demos."""
    return lambda row: tasks.render_prefix(task, by_id[int(examples.ids[row])] if plan.headers[row] else None,
                                           [by_id[int(i)] for i in plan.demo_ids[row]])


def extract_condition(
    path: Path,
    name: str,
    settings: dict,
    model,
    tokenizer,
    examples: store.hidden.Examples,
    by_id: dict[int, Item],
    *,
    prefix_text,
    plan: demos.DemoPlan | None = None,
    task: Task,
    scoring: forward.Scoring,
    batch_size: int,
    prefix_cache: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    ranks: Ranks = Ranks(),
) -> float:
    """Write condition ``name`` of hidden.h5 (every row of ``examples``); returns its eval accuracy.

    ``prefix_text(row)`` is the text before that row's question (header + demos); ``plan`` the
    demos behind it, stored beside the states. Rows sharing a prefix run on one key/value cache of
    it; a prefix of its own (resampled demos) is run with its question, batched with others.
    A complete condition with the same settings is skipped; rows already done are kept.

    Several ``ranks`` (``accelerate launch``) share the batches; each appends its rows to its own
    shard, which the main rank merges into the condition: the same file as one process writes.
    """
    if ranks.main:
        with h5py.File(path, "a") as f:
            group = _open_condition(f, name, settings, forward.n_blocks(model), len(examples), forward.hidden_width(model),
                                    task.n_choices, overwrite=overwrite)
            # Readout parameters; also added to a condition made before they were stored.
            store.hidden.write_norms(group, _norms_or_reason(model))
            store.hidden.write_head(group, _head_or_reason(model, scoring))
            if group.attrs["complete"]:
                _verify_head(group, name)
            else:
                if plan is not None:
                    store.hidden.write_demo_plan(group, plan.demo_ids, plan.demo_sets)
                _merge_shards(group, path.parent, name)  # rows of an interrupted multi-process run
    ranks.barrier()
    with h5py.File(path, "r") as f:
        group = store.hidden.get_condition(f, name)
        complete, done, instance = bool(group.attrs["complete"]), store.hidden.rows_done(group), store.hidden.condition_instance(group)
        accuracy = float(group.attrs.get("accuracy", np.nan))
    ranks.barrier()  # every rank has closed the file before the main rank opens it to write
    if complete:
        if ranks.main:
            print(f"{name}: already complete (accuracy {accuracy:.3f}); skipped", file=sys.stderr)
        return accuracy
    started = time.perf_counter()
    # Batches are planned over all rows, done or not, and a batch is redone whole unless every
    # row of it is done: a resumed run computes each row in the very batch it would have had,
    # so its states are bit-identical to an uninterrupted run's (and so are several ranks').
    work = [(prefix_ids, batch)
            for prefix_ids, batches in _plan_batches(examples, tokenizer, task, by_id, prefix_text, batch_size, prefix_cache)
            for batch in batches if not done[[row for row, _ in batch]].all()]
    mine = ranks.share(work, costs=[len(batch) * (len(prefix) + max(len(ids) for _, ids in batch)) for prefix, batch in work])
    bar = tqdm(total=sum(len(batch) for _, batch in mine), desc=name if ranks.count == 1 else f"{name} (rank 0 of {ranks.count})",
               unit="q", disable=not progress or not ranks.main)
    if ranks.count == 1:
        with h5py.File(path, "a") as f:
            group = store.hidden.get_condition(f, name)
            for rows, out in _run_batches(model, mine, scoring, _continuations(task, tokenizer, examples, by_id, scoring)):
                store.hidden.write_rows(group, rows, out.hidden.numpy(), out.letter_logits.numpy(), out.logsumexp.numpy())
                f.flush()
                faults.reached("extract.batch")
                bar.update(len(rows))
    else:
        shard = store.shards.shard_path(path.parent, name, ranks.index)
        shard.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(shard, "w") as f:
            store.shards.create_shard(f, name, instance, n_layers=forward.n_blocks(model), width=forward.hidden_width(model),
                                n_choices=task.n_choices)
            for rows, out in _run_batches(model, mine, scoring, _continuations(task, tokenizer, examples, by_id, scoring)):
                store.shards.append_shard(f, rows, out.hidden.numpy(), out.letter_logits.numpy(), out.logsumexp.numpy())
                f.flush()
                faults.reached("extract.batch")
                bar.update(len(rows))
        ranks.barrier()
    bar.close()
    if ranks.main:
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
                    "processes": ranks.count,
                },
            )
            _verify_head(group, name)
    ranks.barrier()
    with h5py.File(path, "r") as f:
        accuracy = float(store.hidden.get_condition(f, name).attrs["accuracy"])
    ranks.barrier()
    if ranks.main:
        n_eval = int((examples.splits == "eval").sum())
        print(f"{name}: accuracy {accuracy:.3f} on {n_eval} eval questions", file=sys.stderr)
    return accuracy


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
    if store.hidden.head_checked(group):
        return
    f = group.file
    try:
        norms, head = store.hidden.read_norms(f, name), store.hidden.read_head(f, name)
    except store.SchemaError as error:
        store.hidden.mark_head_unavailable(group, str(error))
        return
    last = norms.weight.shape[0] - 1
    states, logits = store.hidden.read_layer(f, name, last), group["logits"][:]
    lens = lens_logits(states, norms.layer(last), norms.kind, head)
    error = float(np.abs(lens - logits).max() / max(np.abs(logits).max(), 1e-6))
    if error > LENS_TOLERANCE:
        store.hidden.mark_head_unavailable(group, f"the final norm and head rows do not reproduce the model's logits "
                                            f"(relative error {error:.1e}): its head does more than that")
    else:
        store.hidden.set_head_verified(group, error)


def _norms_or_reason(model):
    """The norm parameters behind ``--states normed``, or why this model has none."""
    try:
        return readout.norm_parameters(model)
    except readout.ReadoutError as error:
        return str(error)


def _run_batches(model, work: list[tuple[list[int], list[tuple[int, list[int]]]]], scoring: forward.Scoring, continuations):
    """Yield (rows (B,), forward output) of each (shared prefix ids or [], batch); a prefix's
    key/value cache is computed once for the consecutive batches that share it.
    ``continuations(row)``: the token ids of each choice's text (text scoring), else unused."""
    cached_ids, prefix = None, None
    for prefix_ids, batch in work:
        if prefix_ids is not cached_ids:
            cached_ids, prefix = prefix_ids, (forward.encode_prefix(model, prefix_ids) if prefix_ids else None)
        out = forward.last_token_states(
            model, [ids for _, ids in batch], prefix=prefix, letter_ids=scoring.letter_ids,
            continuations=None if scoring.letter_ids is not None else [continuations(row) for row, _ in batch])
        yield np.array([row for row, _ in batch]), out


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


def _continuations(task: Task, tokenizer, examples: store.hidden.Examples, by_id: dict[int, Item], scoring: forward.Scoring):
    """row -> token ids of each choice's continuation (text scoring; letters need none)."""
    if scoring.letter_ids is not None:
        return None
    return lambda row: [tokenizer.encode(text, add_special_tokens=False)
                        for text in tasks.continuations(task, by_id[int(examples.ids[row])])]


def _normalised_accuracies(task: Task, scores: np.ndarray, examples: store.hidden.Examples, by_id: dict[int, Item]) -> dict:
    """Text scoring: accuracy of the length-normalised scores too (lm-eval's acc_norm: summed
    log-probability divided by the continuation's length in bytes)."""
    if task.score != "text":
        return {}
    lengths = np.array([[max(1, len(text.encode())) for text in tasks.continuations(task, by_id[int(i)])]
                        for i in examples.ids], dtype=np.float64)
    pred = (scores / lengths).argmax(axis=1)
    return {"accuracy_norm": split_accuracy(pred, examples, "eval"), "accuracy_norm_train": split_accuracy(pred, examples, "train")}


def _plan_batches(examples: store.hidden.Examples, tokenizer, task: Task, by_id, prefix_text, batch_size: int,
                  prefix_cache: bool) -> list[tuple[list[int], list[list[tuple[int, list[int]]]]]]:
    """[(shared prefix ids or [], batches of (row, token ids))]: rows sharing a prefix run on its
    cache; the others (a prefix of their own, or no cache) run whole, batched across prefixes.
    Batches are length-sorted (little padding) with ties kept in row order."""
    by_prefix: dict[str, list[int]] = {}
    for row in range(len(examples)):
        by_prefix.setdefault(prefix_text(row), []).append(row)

    def question_ids(row: int) -> list[int]:
        return tokenizer.encode(tasks.render_question(task, by_id[int(examples.ids[row])]), add_special_tokens=False)

    def batched(items: list[tuple[int, list[int]]]) -> list[list[tuple[int, list[int]]]]:
        items = sorted(items, key=lambda item: len(item[1]))
        return [items[i : i + batch_size] for i in range(0, len(items), batch_size)]

    plans, alone = [], []
    for text, rows in by_prefix.items():
        prefix_ids = tokenizer.encode(text, add_special_tokens=True)
        if prefix_cache and len(rows) > 1 and prefix_ids:
            plans.append((prefix_ids, batched([(row, question_ids(row)) for row in rows])))
        else:
            alone += [(row, prefix_ids + question_ids(row)) for row in rows]
    if alone:
        plans.append(([], batched(alone)))
    return plans


def run_examples(task: Task, partition: data.Partition, by_id: dict[int, Item]) -> store.hidden.Examples:
    """The rows of a run: the eval questions, then the train questions (fine-tuning data)."""
    ids = list(partition.eval) + list(partition.train)
    return store.hidden.Examples(
        ids=np.array(ids, dtype=np.int64),
        answers=np.array([by_id[i].answer for i in ids]),
        splits=np.array(["eval"] * len(partition.eval) + ["train"] * len(partition.train)),
        groups={name: np.array([by_id[i].groups[g] for i in ids]) for g, name in enumerate(task.groups)},
    )


def split_accuracy(pred: np.ndarray, examples: store.hidden.Examples, split: str) -> float:
    """Accuracy over the rows of one split (NaN when the split is empty)."""
    rows = examples.splits == split
    return float(np.mean(pred[rows] == examples.answers[rows])) if rows.any() else float("nan")


def _open_or_create(path: Path, header: dict, examples: store.hidden.Examples, partition: data.Partition, by_id, *, overwrite: bool) -> None:
    """Create ``path`` with its header (atomically), or check an existing one matches."""
    if path.exists() and not overwrite:
        with h5py.File(path, "r") as f:
            store.hidden.check_version(f)
            have = store.hidden.read_attrs(f)
            for key in ("model", "model_hash", "task_hash", "dataset_hash", "split_seed", "partition", "group_values"):
                if have.get(key) != header[key]:
                    what = "another task file (its text differs)" if key == "task_hash" else f"{key}={have.get(key)!r}, not {header[key]!r}"
                    raise RunMismatch(f"{path} was made with {what}: use another RUN folder or --overwrite")
            if not np.array_equal(store.hidden.read_examples(f).ids, examples.ids):
                raise RunMismatch(f"{path} holds other examples: use another RUN folder or --overwrite")
        return
    attrs = {**header, **provenance.stamp()}
    parts = {
        "demos": _ids_values([i for s in partition.values for i in partition.demos[s]], by_id),
        "train": _ids_values(partition.train, by_id),
    }

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            store.hidden.write_header(f, attrs, examples, parts)

    replace_atomically(path, write)


def _ids_values(ids: list[int], by_id) -> tuple[np.ndarray, np.ndarray]:
    return np.array(ids, dtype=np.int64), np.array([by_id[i].group for i in ids])


def _open_condition(f: h5py.File, name: str, settings: dict, blocks: int, rows: int, width: int, n_choices: int, *,
                    overwrite: bool) -> h5py.Group:
    """The condition's group: resumed if it exists with the same settings, else (re)created."""
    if name in store.hidden.condition_names(f):
        group = store.hidden.get_condition(f, name)
        have = store.hidden.condition_attrs(group)
        have.setdefault("store_dtype", "float32")  # conditions written before the choice existed
        differing = [k for k in settings if k != "prefix_cache" and have.get(k) != settings[k]]
        if not differing and group["hidden"].shape == (blocks + 1, rows, width):
            return group
        if not overwrite:
            key = differing[0] if differing else "shape"
            raise RunMismatch(
                f"condition {name} in {f.filename} was made with other {key}: use another RUN folder or --overwrite"
            )
        store.hidden.delete_condition(f, name)
    # Provenance beside the settings: only the settings are compared when a run resumes.
    return store.hidden.create_condition(f, name, n_layers=blocks, n_rows=rows, width=width, n_choices=n_choices,
                                   attrs={**settings, **provenance.stamp()}, store_dtype=settings.get("store_dtype", "float32"))
