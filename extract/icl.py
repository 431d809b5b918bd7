"""ICL extraction: k-shot prompts through the model, last-token states of every layer into hidden.h5.

Flow: a task's rows (``landscape.tasks``) -> seeded partition by the first grouping field ->
for each condition (``0shot``, ``5shot``, ...) and value of that field: its prefix (header + its
first k demos) runs once into a key/value cache, its questions run on top of it in length-sorted
batches, and each batch is written to its rows at once (memory does not grow with N). Rows
marked done are skipped on a re-run, so a killed run resumes; a run folder made with other
settings (another task file included) is refused unless ``overwrite``.

This module reads the task, partitions its rows and plans the conditions; writing one condition
(batches, resume, the ranks' shards, the readout checks) is ``extract.conditions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from extract import budget, data, demos, forward, models
from extract.conditions import RunMismatch, extract_condition
from extract.ranks import SINGLE, Ranks
from landscape import names, provenance, store, tasks
from landscape.atomic import replace_atomically
from landscape.devices import pick_device, pick_dtype
from landscape.layers import check_spec, select_layers
from landscape.tasks import Item, Task

REPRESENTATION = (
    "last prompt token (the end of the task's prompt, e.g. the ':' of 'Answer:'); layer 0 = input "
    "embeddings, layer l = output of block l, all before the final norm (un-normalised residual stream)"
)
PROMPT_TOKENS = "prefix and question tokenised apart, then concatenated"


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
    train_first: bool = False  # cut each value's training rows before its eval rows (extract.data)
    # values trained on: None (the evaluated ones), others, all, largest:K, a comma list
    train_subjects: str | None = None
    seed: int = 0
    batch_size: int = 8  # rows a batch without a token budget (the CPU's default)
    # tokens a batch (extract.budget): auto (from a GPU's free memory; rows on CPU), off, or N
    token_budget: int | str = "auto"
    device: str = "auto"
    device_map: str | None = None  # split the model over GPUs / cpu / disk (models.parse_device_map)
    dtype: str = "auto"
    store_dtype: str = "float32"  # how hidden.h5 keeps the states (store.encoding.STORE_DTYPES); read back as float32
    # which layers' states are kept (landscape.layers): None = all, "every:4", "last:8", "0,4,8"
    layers: str | None = None
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
                raise ValueError(
                    f"{k} shots asked but the demo pool holds {self.demo_pool} per value of the first group"
                )
        if self.store_dtype not in store.encoding.STORE_DTYPES:
            raise ValueError(
                f"unknown store dtype {self.store_dtype!r} (known: {', '.join(store.encoding.STORE_DTYPES)})"
            )
        check_spec(self.layers)
        budget.check_token_budget(self.token_budget)
        if not self.demos:
            raise ValueError("no demo sampling given")
        for sampling in self.demos:
            if sampling not in names.SAMPLINGS:
                raise ValueError(names.unknown("demo sampling", sampling, names.SAMPLINGS))


def run_extract(
    config: ExtractConfig, run_dir: Path, *, overwrite: bool = False, progress: bool = True, ranks: Ranks = SINGLE
) -> dict[str, float]:
    """Extract every condition of ``config`` into ``run_dir/hidden.h5``; returns accuracy per condition.

    Under ``accelerate launch`` every rank calls this with its ``ranks`` (``extract.ranks.current()``):
    each loads the model on its own device and computes a share of every condition's batches."""
    config.validate()
    task, data_path, by_id, partition = _load_rows(config)
    models.check_device_map(config.device_map, device=config.device, processes=ranks.count)
    device = pick_device(config.device, given=ranks.device)
    dtype = pick_dtype(config.dtype, device)
    resolved = models.resolve_model(config.model)

    examples = run_examples(task, partition, by_id)
    header = _run_header(config, resolved, task, data_path, partition)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / store.HIDDEN_FILE
    # a model that does not load leaves no file
    model, tokenizer = models.load_model(resolved, device, dtype, device_map=config.device_map)
    select_layers(config.layers, forward.n_blocks(model) + 1)  # a layer the model lacks leaves no file either
    if ranks.main:
        _open_or_create(path, header, examples, partition, by_id, overwrite=overwrite)
    ranks.barrier()
    scoring = choice_scoring(task, tokenizer)
    tokens = ranks.least(budget.token_budget(config.token_budget, model, forward.input_device(model)))

    accuracies = {}
    for k, sampling in _conditions(config):
        name = names.icl_condition(k, sampling)
        plan = demos.plan_demos(
            examples.ids, examples.first_group, partition.demos, k=k, sampling=sampling, seed=config.seed
        )
        accuracies[name] = extract_condition(
            path,
            name,
            _icl_settings(config, k, sampling, task, partition, dtype, scoring),
            model,
            tokenizer,
            examples,
            by_id,
            prefix_text=_prefix_texts(task, plan, by_id, examples),
            plan=plan,
            task=task,
            scoring=scoring,
            batch_size=config.batch_size,
            token_budget=tokens,
            prefix_cache=config.prefix_cache,
            overwrite=overwrite,
            progress=progress,
            ranks=ranks,
        )
        if sampling == "fixed" and ranks.main:
            _record_demo_bits(path, name, model, tokenizer, task, partition, by_id, k)
    return accuracies


def _load_rows(config: ExtractConfig) -> tuple[Task, Path, dict[int | str, Item], data.Partition]:
    """(task, its data file, items by id, the seeded partition of the selected values' rows)."""
    task = tasks.load_task(config.task)
    data_path = tasks.source_path(task, config.task_data)
    task, items = tasks.load_items(task, data_path)
    by_id = {item.id: item for item in items}
    values = data.select_values(items, config.subjects, task.first_group)
    train_values = (
        None
        if config.train_subjects is None
        else data.select_train_values(items, config.train_subjects, values, task.first_group)
    )
    partition = data.make_partition(
        items,
        values,
        demo_pool=config.demo_pool,
        per_subject=config.per_subject,
        train_per_subject=config.train_per_subject,
        seed=config.seed,
        group=task.first_group,
        train_first=config.train_first,
        train_values=train_values,
    )
    return task, data_path, by_id, partition


def _run_header(config: ExtractConfig, resolved, task: Task, data_path: Path, partition: data.Partition) -> dict:
    """The run's attributes in hidden.h5: model, task and partition (a re-run must match them)."""
    return {
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


def _conditions(config: ExtractConfig) -> list[tuple[int, str]]:
    """(shots, demo sampling) of every condition to extract, in order."""
    # k = 0 has no demos to sample: a sampling other than these gives the same prompts as 0shot
    return [
        (k, sampling)
        for k in config.shots
        for sampling in config.demos
        if k != 0 or sampling in demos.ZERO_SHOT_SAMPLINGS
    ]


def _icl_settings(
    config: ExtractConfig, k: int, sampling: str, task: Task, partition: data.Partition, dtype, scoring: forward.Scoring
) -> dict:
    """The settings recorded with a k-shot condition (a resumed condition must match them)."""
    layers = check_spec(config.layers)  # None: every layer, and no key (files as before --layers existed)
    settings = {
        "kind": "icl",
        "shots": k,
        "demo_sampling": sampling,
        "prompt_format": task.format_dict(),
        "prefix_cache": config.prefix_cache,
        "dtype": str(dtype).removeprefix("torch."),
        "store_dtype": config.store_dtype,
        **scoring.settings(),
        **({"layers": layers} if layers else {}),
    }
    if sampling == "fixed":  # one demo list per value of the first group: readable in the attrs
        settings["demo_ids"] = {
            s: partition.demos[s][:k] for s in sorted(partition.demos)
        }  # values trained on only too
    else:  # per-row demos are in the condition's demo_ids dataset
        settings["demo_seed"] = config.seed
    return settings


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
    start = next(
        (i for i, (a, b) in enumerate(zip(header, prefix, strict=False)) if a != b), min(len(header), len(prefix))
    )
    start = max(start, 1)
    return float(forward.token_bits(model, [prefix], [start])[0]), len(prefix) - start


def _record_demo_bits(
    path: Path, name: str, model, tokenizer, task: Task, partition: data.Partition, by_id, k: int
) -> None:
    """Add the demos' code length to a fixed-demo condition's attrs (once; older runs get it on a re-run)."""
    with h5py.File(path, "a") as f:
        group = store.hidden.get_condition(f, name)
        if "demo_bits_total" in group.attrs:
            return
        bits, tokens = {}, {}
        for value in partition.values:
            demos_of = [by_id[i] for i in partition.demos[value][:k]]
            bits[value], tokens[value] = demo_bits(model, tokenizer, task, demos_of) if k else (0.0, 0)
        store.hidden.update_condition_attrs(
            group, {"demo_bits": bits, "demo_tokens": tokens, "demo_bits_total": float(sum(bits.values()))}
        )


def _prefix_texts(task: Task, plan: demos.DemoPlan, by_id: dict[int | str, Item], examples: store.hidden.Examples):
    """row -> the text before its question: its own header (unless none) and the row's demos."""
    return lambda row: tasks.render_prefix(
        task,
        by_id[tasks.id_key(examples.ids[row])] if plan.headers[row] else None,
        [by_id[tasks.id_key(i)] for i in plan.demo_ids[row]],
    )


def run_examples(task: Task, partition: data.Partition, by_id: dict[int | str, Item]) -> store.hidden.Examples:
    """The rows of a run: the eval questions, then the train questions (fine-tuning data)."""
    ids = list(partition.eval) + list(partition.train)
    return store.hidden.Examples(
        ids=tasks.id_array(ids),  # int64, or str for a string-id task
        answers=np.array([by_id[i].answer for i in ids]),
        splits=np.array(["eval"] * len(partition.eval) + ["train"] * len(partition.train)),
        groups={name: np.array([by_id[i].groups[g] for i in ids]) for g, name in enumerate(task.groups)},
    )


def _open_or_create(
    path: Path, header: dict, examples: store.hidden.Examples, partition: data.Partition, by_id, *, overwrite: bool
) -> None:
    """Create ``path`` with its header (atomically), or check an existing one matches."""
    if path.exists() and not overwrite:
        with h5py.File(path, "r") as f:
            store.hidden.check_version(f)
            have = store.hidden.read_attrs(f)
            for key in ("model", "model_hash", "task_hash", "dataset_hash", "split_seed", "partition", "group_values"):
                if have.get(key) != header[key]:
                    what = (
                        "another task file (its text differs)"
                        if key == "task_hash"
                        else f"{key}={have.get(key)!r}, not {header[key]!r}"
                    )
                    raise RunMismatch(f"{path} was made with {what}: use another RUN folder or --overwrite")
            if not tasks.same_ids(store.hidden.read_examples(f).ids, examples.ids):
                raise RunMismatch(f"{path} holds other examples: use another RUN folder or --overwrite")
        return
    attrs = {**header, **provenance.stamp()}
    text = tasks.text_ids(examples.ids)
    parts = {
        "demos": _ids_values([i for s in sorted(partition.demos) for i in partition.demos[s]], by_id, text),
        "train": _ids_values(partition.train, by_id, text),
    }

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            store.hidden.write_header(f, attrs, examples, parts)

    replace_atomically(path, write)


def _ids_values(ids: list[int | str], by_id, text: bool) -> tuple[np.ndarray, np.ndarray]:
    """(ids, their first-group values) of a part of the partition, as hidden.h5 stores it (``text``:
    a string-id task, whose ids are strings even in an empty part)."""
    return tasks.id_array(ids, text=text), np.array([by_id[i].group for i in ids])
