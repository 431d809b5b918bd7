"""Fine-tuning with LoRA (peft), recording the prequential code of the labels on the way (EDL).

Flow: the run's train rows (0-shot prompts, the right choice as label) -> LoRA training with a
seeded order -> during the first pass, each example's code length is taken from the very
forward pass that computes its training loss, *before* the update that uses it (the online,
prequential code; the first batch is coded by the pretrained model) -> adapter saved -> the
fine-tuned model's states of every row extracted into condition ``<name>`` of hidden.h5 ->
final and base code lengths read from the letter logits of ``<name>`` and ``0shot`` ->
``/edl/<name>``.

Code lengths are in bits, of the K-way distribution over the task's choices (the letters'
logits, or the choices' text scores, renormalised), so the uniform code is log2 K bits a label.
Training minimises the same quantity (cross-entropy over the K choices at the end of the prompt:
the loss is on the answer only), so the online code is the training loss itself: recording it
costs nothing.
Dropout (LoRA's) is seeded, so the online code is reproducible and therefore decodable.

Resumable: a training state (adapter, optimizer, scheduler, online code so far) is saved
every ``save_every`` steps (less often where one save takes over a second: ``lora._keep``);
a re-run continues from it and gives the same numbers.

This module holds the flow (``run_finetune``, read top-down); the settings are in
``extract.finetune_config`` (``FinetuneConfig``, also importable from here), the training and its
online code in ``extract.lora``, the ``/edl/<name>`` record in ``extract.prequential``.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np
import torch

from extract import budget, conditions, forward, models
from extract.finetune_config import FinetuneConfig
from extract.lora import (
    TrainData,
    default_micro_tokens,
    load_adapter,
    lora_in_model_dtype,
    train_blockwise,
    train_data,
    train_lora,
)
from extract.prequential import write_edl_record
from extract.ranks import SINGLE, Ranks
from landscape import reader, store, tasks
from landscape.atomic import replace_atomically
from landscape.devices import pick_device, pick_dtype
from landscape.names import ZERO_SHOT, is_checkpoint_of, step_condition

ADAPTERS = "adapters"
STATE_FILE = "train_state.pt"


def run_finetune(
    run_dir: Path, config: FinetuneConfig, *, overwrite: bool = False, progress: bool = True, ranks: Ranks = SINGLE
) -> dict:
    """Fine-tune the run's model on its train rows; write condition ``config.name`` and its EDL.

    Under ``accelerate launch`` every rank calls this: training is data parallel (``train_lora``),
    the extraction of the fine-tuned states is shared (``conditions.extract_condition``), and the main
    rank alone writes files; the others return an empty summary."""
    config.validate()
    run = _read_run(reader.hidden_path(run_dir))
    task, items, _ = tasks.from_run(run.header, config.task_data)
    by_id = {item.id: item for item in items}
    model, tokenizer, dtype = _load_model(run.header, config, ranks)
    if (
        config.micro_tokens is None
    ):  # sized by the model (and a GPU's memory), recorded so (settings.json, resume states)
        config = replace(config, micro_tokens=_micro_tokens(model, run, config, ranks, overwrite=overwrite))
    scoring = forward.Scoring(letter_ids=run.letter_ids)
    train = train_data(
        task,
        tokenizer,
        run.examples,
        run.train_rows,
        by_id,
        labels=config.labels,
        seed=config.seed,
        text_scoring=run.letter_ids is None,
    )
    _check_checkpoints(config, len(run.train_rows))
    folder = _prepare_folder(run, config, overwrite=overwrite, ranks=ranks)
    model, n_trainable = _add_lora(model, config)
    record = _train_or_reuse(model, train, config, folder, scoring=scoring, progress=progress, ranks=ranks)
    accuracy = _extract_states(
        run, config, folder, model, tokenizer, task, by_id, dtype, scoring=scoring, progress=progress, ranks=ranks
    )
    if not ranks.main:
        return {}
    return _summarise(run, config, train, record, task, n_trainable, accuracy)


@dataclass(frozen=True)
class _Run:
    """What fine-tuning reads from a run's hidden.h5."""

    hidden: Path
    header: dict
    examples: store.hidden.Examples
    train_rows: np.ndarray  # rows of the train split: the fine-tuning data
    base_logits: np.ndarray  # choice logits of 0shot: the base model's code
    letter_ids: list[int] | None  # the choices' tokens; None for a text-scored task
    layers: str | None  # the layers 0shot keeps (landscape.layers; None: all): the fine-tune keeps the same


def _read_run(hidden: Path) -> _Run:
    """The run's header, rows and base logits; refused without a complete 0shot or without train rows."""
    with reader.open_run_file(hidden) as f:
        header = store.hidden.read_attrs(f)
        examples = store.hidden.read_examples(f)
        have = store.hidden.condition_names(f)
        if ZERO_SHOT not in have or not store.hidden.get_condition(f, ZERO_SHOT).attrs["complete"]:
            raise ValueError(
                f"{hidden} has no complete {ZERO_SHOT} condition (the base model's code): extract SHOTS=0 first"
            )
        base_logits, _, _ = store.hidden.read_outputs(f, ZERO_SHOT)
        zero_shot = store.hidden.condition_attrs(store.hidden.get_condition(f, ZERO_SHOT))
    train_rows = np.flatnonzero(examples.splits == "train")
    if len(train_rows) == 0:
        raise ValueError(f"{hidden} has no train rows: extract with --train-per-subject > 0")
    return _Run(
        hidden, header, examples, train_rows, base_logits, zero_shot.get("letter_token_ids"), zero_shot.get("layers")
    )


def _load_model(header: dict, config: FinetuneConfig, ranks: Ranks):
    """(model, tokenizer, dtype): the run's model on this rank's device, refused if it changed since the run."""
    resolved = models.resolve_model(header["model"])
    if resolved.sha256 and resolved.sha256 != header["model_hash"]:
        raise ValueError(f"model {header['model']!r} has changed since the run was extracted (hash differs)")
    models.check_device_map(config.device_map, device=config.device, processes=ranks.count, training=True)
    device = pick_device(config.device, given=ranks.device)
    dtype = pick_dtype(config.dtype, device)
    model, tokenizer = models.load_model(resolved, device, dtype, device_map=config.device_map)
    return model, tokenizer, dtype


def _micro_tokens(model, run: _Run, config: FinetuneConfig, ranks: Ranks, *, overwrite: bool) -> int:
    """The micro-batch when ``--micro-tokens`` is not given: the one an earlier start of this
    fine-tune recorded (a resumed training must match it; not with ``overwrite``), else
    ``lora.default_micro_tokens``."""
    settings_file = run.hidden.parent / ADAPTERS / config.name / "settings.json"
    if settings_file.is_file() and not overwrite:
        recorded = json.loads(settings_file.read_text()).get("micro_tokens")
        if isinstance(recorded, int) and recorded >= 1:
            return recorded
    return default_micro_tokens(model, ranks)


def _check_checkpoints(config: FinetuneConfig, n_train: int) -> None:
    """Refuse checkpoint steps the training will not take."""
    total_steps = math.ceil(n_train / config.batch_size) * config.epochs
    if config.checkpoints and config.schedule == "blockwise":
        raise ValueError("checkpoints are steps of one training: use them with the online schedule")
    if any(k > total_steps for k in config.checkpoints):
        raise ValueError(f"checkpoint steps must be <= {total_steps}, the number of training steps")


def _prepare_folder(run: _Run, config: FinetuneConfig, *, overwrite: bool, ranks: Ranks) -> Path:
    """The fine-tune's adapters folder, holding the settings its adapter was trained with (main rank writes)."""
    folder = run.hidden.parent / ADAPTERS / config.name
    settings_file = folder / "settings.json"
    # The adapter belongs to this model and these train rows too (a re-extracted run may differ).
    wanted = {
        **config.training_settings(),
        "model_hash": run.header["model_hash"],
        "train_ids_sha256": _ids_sha256(run.examples.ids[run.train_rows]),
    }
    ranks.barrier()  # every rank has read hidden.h5 before the main rank may write to it
    if ranks.main:
        if overwrite:
            shutil.rmtree(folder, ignore_errors=True)
            with h5py.File(run.hidden, "a") as f:
                for name in [n for n in store.hidden.condition_names(f) if is_checkpoint_of(n, config.name)]:
                    store.hidden.delete_condition(f, name)
        folder.mkdir(parents=True, exist_ok=True)
        if settings_file.is_file() and json.loads(settings_file.read_text()) != wanted:
            raise ValueError(f"{folder} holds a fine-tune with other settings: use another --name or --overwrite")
        settings_file.write_text(json.dumps(wanted, indent=1) + "\n")
    ranks.barrier()
    return folder


def _ids_sha256(ids: np.ndarray) -> str:
    """sha256 of the train rows' ids: integer ids' int64 bytes (as ever), string ids' JSON list."""
    data = json.dumps(ids.tolist()).encode() if tasks.text_ids(ids) else np.asarray(ids, dtype=np.int64).tobytes()
    return hashlib.sha256(data).hexdigest()


def _add_lora(model, config: FinetuneConfig):
    """(peft model, its number of trainable parameters): fresh LoRA adapters on ``model``, seeded."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.targets),
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(config.seed)  # LoRA's A matrices start random: the seed makes a fine-tune reproducible
    try:
        model = get_peft_model(model, lora)
    except ValueError as error:
        raise ValueError(
            f"LoRA targets {','.join(config.targets)} do not fit this model: {models.first_line(error)}"
        ) from None
    return model, sum(p.numel() for p in model.parameters() if p.requires_grad)


def _train_or_reuse(
    model,
    train: TrainData,
    config: FinetuneConfig,
    folder: Path,
    *,
    scoring: forward.Scoring,
    progress: bool,
    ranks: Ranks,
) -> dict:
    """Train the adapter (a killed training resumes), or load the one already trained; returns the training record."""
    final_dir = folder / "final"
    record_path = folder / "training.npz"
    if (final_dir / "adapter_config.json").is_file() and record_path.is_file():
        load_adapter(model, final_dir)
        record = dict(np.load(record_path))
        if ranks.main:
            print(f"{config.name}: adapter already trained; reusing {final_dir}", file=sys.stderr)
    else:
        started = time.perf_counter()
        if config.schedule == "blockwise":
            record = train_blockwise(model, train, config, scoring=scoring, progress=progress, ranks=ranks)
        else:
            record = train_lora(
                model,
                train,
                config,
                scoring=scoring,
                state_path=folder / STATE_FILE,
                checkpoint_dir=folder,
                progress=progress,
                ranks=ranks,
            )
        record["seconds"] = time.perf_counter() - started  # of this process (a resumed run: since resuming)
        record["processes"] = ranks.count
        if ranks.main:
            replace_atomically(final_dir, model.save_pretrained)
            replace_atomically(record_path, lambda tmp: np.savez(tmp, **record), suffix=".npz")
            (folder / STATE_FILE).unlink(missing_ok=True)  # ~3x the adapter; the record above replaces it
    ranks.barrier()  # the adapters are on disk before any rank loads a checkpoint
    model.eval()
    return record


def _extract_states(
    run: _Run,
    config: FinetuneConfig,
    folder: Path,
    model,
    tokenizer,
    task: tasks.Task,
    by_id: dict,
    dtype: torch.dtype,
    *,
    scoring: forward.Scoring,
    progress: bool,
    ranks: Ranks,
) -> float:
    """The fine-tuned states of every row as condition ``<name>`` (and ``<name>@step<k>`` per
    checkpoint); returns the accuracy of ``<name>``."""
    settings = {
        "kind": "sft",
        "shots": 0,
        "finetune": {**config.training_settings(), "checkpoints": list(config.checkpoints)},
        "prompt_format": task.format_dict(),
        "dtype": str(dtype).removeprefix("torch."),
        "store_dtype": config.store_dtype,
        **scoring.settings(),
        **({"layers": run.layers} if run.layers else {}),  # absent: every layer
    }

    def extract(name: str, adapter_dir: Path) -> float:
        """The model's states of every row, 0-shot prompts, as condition ``name`` (LoRA's branch in the model's dtype)."""
        with lora_in_model_dtype(model):
            return conditions.extract_condition(
                run.hidden,
                name,
                {**settings, "adapter": str(adapter_dir.relative_to(run.hidden.parent))},
                model,
                tokenizer,
                run.examples,
                by_id,
                prefix_text=lambda row: tasks.render_prefix(task, by_id[tasks.id_key(run.examples.ids[row])], []),
                task=task,
                scoring=scoring,
                batch_size=config.batch_extract,
                token_budget=tokens,
                progress=progress,
                ranks=ranks,
            )

    tokens = ranks.least(budget.token_budget(config.token_budget, model, forward.input_device(model)))

    accuracy = extract(config.name, folder / "final")
    for step in config.checkpoints:  # the model is not used after these: no need to restore it
        load_adapter(model, folder / f"step-{step}")
        extract(step_condition(config.name, step), folder / f"step-{step}")
    return accuracy


def _summarise(
    run: _Run,
    config: FinetuneConfig,
    train: TrainData,
    record: dict,
    task: tasks.Task,
    n_trainable: int,
    accuracy: float,
) -> dict:
    """Write the EDL record (``extract.prequential``); returns the summary of the fine-tune."""
    with h5py.File(run.hidden, "r") as f:
        final_logits, _, _ = store.hidden.read_outputs(f, config.name)
    summary = write_edl_record(
        run.hidden,
        config,
        train,
        record,
        run.base_logits,
        final_logits,
        run.examples,
        n_trainable,
        n_choices=task.n_choices,
    )
    if task.control:
        summary["control_task"] = task.name
    seconds = float(record.get("seconds", np.nan))
    summary.update(
        accuracy=accuracy, train_seconds=round(seconds, 1), seconds_per_step=round(seconds / float(record["steps"]), 3)
    )
    return summary


def describe(summary: dict) -> str:
    """The summary of a fine-tune as JSON text (what the command line prints)."""
    return json.dumps(summary, indent=1, default=float)
