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
every ``save_every`` steps; a re-run continues from it and gives the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from extract import forward, icl, models
from extract.ranks import Ranks
from landscape import edl, faults, provenance, reader, store, tasks
from landscape.atomic import replace_atomically
from landscape.names import ZERO_SHOT, is_checkpoint_of, step_condition
from landscape.devices import pick_device, pick_dtype

LN2 = math.log(2.0)
# Linear warm-up that starts above zero, so the first update already moves the model (a step at
# learning rate 0 would code the second batch with the base model too), then cosine decay to 0.
LR_SCHEDULE = "warm-up (s + 1) / (W + 1) for steps s < W, then cosine from 1 to 0"
ADAPTERS = "adapters"
STATE_FILE = "train_state.pt"


@dataclass(frozen=True)
class FinetuneConfig:
    """Every setting of a fine-tuning run (defaults: Doimo et al. where they fit a CPU)."""

    name: str = "sft"  # the condition written to hidden.h5
    labels: str = "true"  # "true" or "random" (uniform random letters: the label-noise control)
    rank: int = 64
    alpha: int = 16
    dropout: float = 0.1
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    lr: float = 1e-4
    epochs: int = 2  # the paper trains 4; 2 keeps `make all` near half an hour on 2 cores
    batch_size: int = 16
    warmup: float = 0.05  # fraction of the steps
    seed: int = 0
    checkpoints: tuple[int, ...] = ()  # steps whose adapters are kept and extracted as <name>@step<k>
    schedule: str = "online"  # "online" (one pass) or "blockwise" (Voita & Titov 2020: retrain per block)
    save_every: int = 10  # steps between resume states
    micro_tokens: int = 2048  # padded tokens per micro-batch (gradients accumulated over a batch)
    batch_extract: int = 8
    device: str = "auto"
    device_map: str | None = None  # split the model over GPUs / cpu (models.parse_device_map; no disk)
    dtype: str = "auto"
    store_dtype: str = "float32"  # how hidden.h5 keeps the fine-tuned states (store.encoding.STORE_DTYPES)
    task_data: str | None = None  # the task's data file, when not where the run found it

    def validate(self) -> None:
        if self.schedule not in ("online", "blockwise"):
            raise ValueError(f"schedule must be 'online' or 'blockwise', got {self.schedule!r}")
        if self.labels not in ("true", "random"):
            raise ValueError(f"labels must be 'true' or 'random', got {self.labels!r}")
        for name in ("rank", "alpha", "epochs", "batch_size", "save_every", "batch_extract", "micro_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup must be in [0, 1), got {self.warmup}")
        if any(k < 1 for k in self.checkpoints):
            raise ValueError("checkpoint steps must be >= 1")
        if self.store_dtype not in store.encoding.STORE_DTYPES:
            raise ValueError(f"unknown store dtype {self.store_dtype!r} (known: {', '.join(store.encoding.STORE_DTYPES)})")
        if "@" in self.name or "/" in self.name or not self.name:
            raise ValueError(f"bad condition name {self.name!r}")

    def training_settings(self) -> dict:
        """What decides the training numbers (a resume state must match it)."""
        keep = ("labels", "rank", "alpha", "dropout", "targets", "lr", "epochs", "batch_size", "warmup", "seed",
                "schedule", "micro_tokens")
        settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if k in keep}
        return {**settings, "lr_schedule": LR_SCHEDULE}


def lr_multiplier(step: int, warmup_steps: int, total_steps: int) -> float:
    """The learning rate of ``step`` (0-based) as a fraction of ``lr`` (see ``LR_SCHEDULE``).

    Example:
        >>> [round(lr_multiplier(s, 3, 10), 3) for s in (0, 1, 2, 3, 9)]
        [0.25, 0.5, 0.75, 1.0, 0.05]
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class TrainData:
    """Tokenised train rows, in the run's row order."""

    rows: np.ndarray  # (n,) rows of /examples
    tokens: list[list[int]]  # prefix + question ids of each
    labels: np.ndarray  # (n,) the choice trained on
    weights: np.ndarray  # (n,) 1/(frequency of its first-group value), mean 1: a balanced loss
    continuations: list[list[list[int]]] | None = None  # text scoring: each choice's token ids


bits_from_logits = edl.choice_bits  # -log2 p(label) under the K-way softmax of the choice scores


def marginal_prequential_bits(labels: np.ndarray, order: np.ndarray, n_classes: int = 4) -> np.ndarray:
    """(n,) code lengths of a learner that ignores the prompts and only counts labels (Laplace:
    p(y) = (count_y + 1) / (seen + n_classes)), in the same prequential order: the baseline an
    online code must beat to have learnt more than the label marginal."""
    counts = np.ones(n_classes)
    bits = np.empty(len(labels))
    for i in order:
        bits[i] = -np.log2(counts[labels[i]] / counts.sum())
        counts[labels[i]] += 1
    return bits


def epoch_order(n: int, epoch: int, seed: int) -> np.ndarray:
    """The seeded order of the train examples in one epoch (epoch 0: the prequential order)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def micro_batches(batch: np.ndarray, lengths: list[int], budget: int) -> list[np.ndarray]:
    """Split a batch into groups of similar length whose padded size (count x longest) fits ``budget``."""
    order = np.argsort(lengths, kind="stable")
    groups: list[list[int]] = [[]]
    for position in order:
        if groups[-1] and (len(groups[-1]) + 1) * lengths[position] > budget:
            groups.append([])
        groups[-1].append(position)
    return [batch[np.array(g)] for g in groups]


def label_nats(model, train: TrainData, indices: np.ndarray, scoring: forward.Scoring) -> torch.Tensor:
    """(len(indices),) -ln p(label | prompt) of some train examples, K-way; differentiable."""
    log_p = forward.choice_log_probs(
        model, [train.tokens[i] for i in indices], scoring=scoring,
        continuations=None if train.continuations is None else [train.continuations[i] for i in indices])
    labels = torch.as_tensor(train.labels[indices], device=log_p.device)
    return -log_p[torch.arange(len(indices), device=log_p.device), labels]


def _by_length(train: TrainData, indices: np.ndarray, budget: int) -> list[np.ndarray]:
    # text scoring runs every choice's continuation: K sequences an example
    per = 1 if train.continuations is None else len(train.continuations[0])
    extra = (lambda i: 0) if train.continuations is None else (lambda i: max(len(c) for c in train.continuations[i]))
    return micro_batches(indices, [per * (len(train.tokens[i]) + extra(i)) for i in indices], budget)


def train_lora(
    model,
    train: TrainData,
    config: FinetuneConfig,
    *,
    scoring: forward.Scoring,
    state_path: Path | None = None,
    checkpoint_dir: Path | None = None,
    progress: bool = True,
    ranks: Ranks = Ranks(),
) -> dict:
    """Train the LoRA parameters of ``model`` (a peft model) in place; returns the training record.

    The record holds ``online_bits`` (n,): each example's code length in the first epoch, taken
    from the forward pass of its batch before that batch's update, and ``losses`` per step.

    Several ``ranks`` (``accelerate launch``) share each step's micro-batches and sum their
    gradients and code lengths before the update (data parallel): every rank then takes the same
    step a single process takes, up to the order of float additions. Dropout is seeded per
    (step, micro-batch), so its masks do not depend on which rank runs a micro-batch.
    """
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    n = len(train.labels)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = steps_per_epoch * config.epochs
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    warmup_steps = int(config.warmup * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_multiplier(s, warmup_steps, total))
    online = np.full(n, np.nan)
    losses: list[float] = []
    step = 0  # dropout is seeded per (step, micro-batch) below: no generator state to carry
    if state_path is not None and state_path.exists():
        state = torch.load(state_path, weights_only=False)
        if state["settings"] != config.training_settings():
            raise ValueError(f"{state_path} was made with other training settings: use --overwrite")
        set_peft_model_state_dict(model, state["adapter"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        online, losses, step = state["online_bits"], state["losses"], state["step"]

    device = forward.input_device(model)
    weights = torch.as_tensor(train.weights, dtype=torch.float32, device=device)
    model.train()
    bar = tqdm(total=total, initial=step, desc="finetune", unit="step", disable=not progress or not ranks.main)
    while step < total:
        epoch, index = divmod(step, steps_per_epoch)
        batch = epoch_order(n, epoch, config.seed)[index * config.batch_size : (index + 1) * config.batch_size]
        optimizer.zero_grad(set_to_none=True)
        batch_weight = weights[batch].sum()
        # Micro-batches of similar length, gradients accumulated: one step per batch as if it
        # ran whole, without padding every prompt to the batch's longest (MMLU lengths vary 10x).
        micros = list(enumerate(_by_length(train, batch, config.micro_tokens)))
        mine = ranks.share(micros, costs=[len(m) * max(len(train.tokens[i]) for i in m) for _, m in micros])
        # each example's code, at its place in the batch (on the device: NCCL reduces only there)
        batch_nats = torch.zeros(len(batch), dtype=torch.float64, device=device)
        place = {int(example): position for position, example in enumerate(batch)}
        for number, micro in mine:
            torch.manual_seed(int(np.random.SeedSequence([config.seed, step, number]).generate_state(1)[0]))
            nats = label_nats(model, train, micro, scoring)
            batch_nats[[place[int(i)] for i in micro]] = nats.detach().double()
            ((weights[micro] * nats).sum() / batch_weight).backward()
        if ranks.count > 1:
            _sum_gradients(params, ranks)
            ranks.sum_(batch_nats)
        if epoch == 0:  # the prequential code: this batch is coded by the model before its update
            online[batch] = batch_nats.cpu().numpy() / LN2
        loss = float((weights[batch].double() * batch_nats).sum() / batch_weight.double())
        optimizer.step()
        scheduler.step()
        step += 1
        losses.append(loss)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        bar.update(1)
        if checkpoint_dir is not None and step in config.checkpoints and ranks.main:
            replace_atomically(checkpoint_dir / f"step-{step}", model.save_pretrained)
        if state_path is not None and ranks.main and (step % config.save_every == 0 or step == total):
            state = {
                "settings": config.training_settings(),
                "adapter": get_peft_model_state_dict(model),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "online_bits": online,
                "losses": losses,
                "step": step,
            }
            replace_atomically(state_path, lambda tmp: torch.save(state, tmp))
        faults.reached("finetune.step")
    bar.close()
    model.eval()
    return {"online_bits": online, "losses": np.array(losses), "steps": total}


def _sum_gradients(params: list[torch.nn.Parameter], ranks: Ranks) -> None:
    """Sum the gradients of ``params`` over ranks, in one flat buffer (one all-reduce a step)."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = ranks.sum_(torch.cat([g.reshape(-1) for g in grads]))
    offset = 0
    for p in params:
        p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
        offset += p.numel()


# Voita & Titov 2020: block boundaries as fractions of the (ordered) training data.
BLOCK_FRACTIONS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.0625, 0.125, 0.25, 0.5, 1.0)


def block_boundaries(n: int, fractions=BLOCK_FRACTIONS) -> list[int]:
    """Increasing prefix sizes t_1 < ... < t_K = n (duplicates from small n merged)."""
    return sorted({min(n, max(1, round(f * n))) for f in fractions} | {n})


def train_blockwise(model, train: TrainData, config: FinetuneConfig, *, scoring: forward.Scoring, progress: bool = True,
                    ranks: Ranks = Ranks()) -> dict:
    """Block-wise prequential code: block (t_k, t_k+1] of the seeded order is coded by a model
    trained from the base on the first t_k examples; the first block by the base model itself.
    Trains len(blocks) models (a GPU option); ends with the model trained on all n examples."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    initial = {k: v.clone() for k, v in get_peft_model_state_dict(model).items()}
    order = epoch_order(len(train.labels), 0, config.seed)
    bounds = [0] + block_boundaries(len(order))
    online = np.full(len(order), np.nan)
    losses: list[float] = []
    for k in range(len(bounds) - 1):
        coded = order[bounds[k] : bounds[k + 1]]
        model.eval()
        with torch.no_grad():
            for micro in _by_length(train, coded, config.micro_tokens):
                online[micro] = label_nats(model, train, micro, scoring).double().cpu().numpy() / LN2
        prefix = order[: bounds[k + 1]]  # retrain from the base on everything coded so far
        set_peft_model_state_dict(model, initial)
        subset = TrainData(rows=train.rows[prefix], tokens=[train.tokens[i] for i in prefix],
                           labels=train.labels[prefix], weights=train.weights[prefix])
        record = train_lora(model, subset, config, scoring=scoring, progress=progress, ranks=ranks)
        losses += record["losses"].tolist()
    return {"online_bits": online, "losses": np.array(losses), "steps": len(losses)}


def run_finetune(run_dir: Path, config: FinetuneConfig, *, overwrite: bool = False, progress: bool = True,
                 ranks: Ranks = Ranks()) -> dict:
    """Fine-tune the run's model on its train rows; write condition ``config.name`` and its EDL.

    Under ``accelerate launch`` every rank calls this: training is data parallel (``train_lora``),
    the extraction of the fine-tuned states is shared (``icl.extract_condition``), and the main
    rank alone writes files; the others return an empty summary."""
    from peft import LoraConfig, get_peft_model

    config.validate()
    hidden = reader.hidden_path(run_dir)
    with reader.open_run_file(hidden) as f:
        header = store.hidden.read_attrs(f)
        examples = store.hidden.read_examples(f)
        have = store.hidden.condition_names(f)
        if ZERO_SHOT not in have or not store.hidden.get_condition(f, ZERO_SHOT).attrs["complete"]:
            raise ValueError(f"{hidden} has no complete {ZERO_SHOT} condition (the base model's code): extract SHOTS=0 first")
        base_logits, _, _ = store.hidden.read_outputs(f, ZERO_SHOT)
        letter_ids = store.hidden.condition_attrs(store.hidden.get_condition(f, ZERO_SHOT)).get("letter_token_ids")
    train_rows = np.flatnonzero(examples.splits == "train")
    if len(train_rows) == 0:
        raise ValueError(f"{hidden} has no train rows: extract with --train-per-subject > 0")

    task, items, _ = tasks.from_run(header, config.task_data)
    by_id = {item.id: item for item in items}
    resolved = models.resolve_model(header["model"])
    if resolved.sha256 and resolved.sha256 != header["model_hash"]:
        raise ValueError(f"model {header['model']!r} has changed since the run was extracted (hash differs)")
    models.check_device_map(config.device_map, device=config.device, processes=ranks.count, training=True)
    device = pick_device(config.device, given=ranks.device)
    dtype = pick_dtype(config.dtype, device)
    model, tokenizer = models.load_model(resolved, device, dtype, device_map=config.device_map)
    scoring = forward.Scoring(letter_ids=letter_ids)
    train = train_data(task, tokenizer, examples, train_rows, by_id, labels=config.labels, seed=config.seed,
                       text_scoring=letter_ids is None)

    total_steps = math.ceil(len(train_rows) / config.batch_size) * config.epochs
    if config.checkpoints and config.schedule == "blockwise":
        raise ValueError("checkpoints are steps of one training: use them with the online schedule")
    if any(k > total_steps for k in config.checkpoints):
        raise ValueError(f"checkpoint steps must be <= {total_steps}, the number of training steps")

    folder = hidden.parent / ADAPTERS / config.name
    settings_file = folder / "settings.json"
    # The adapter belongs to this model and these train rows too (a re-extracted run may differ).
    wanted = {
        **config.training_settings(),
        "model_hash": header["model_hash"],
        "train_ids_sha256": hashlib.sha256(examples.ids[train_rows].tobytes()).hexdigest(),
    }
    ranks.barrier()  # every rank has read hidden.h5 before the main rank may write to it
    if ranks.main:
        if overwrite:
            shutil.rmtree(folder, ignore_errors=True)
            with h5py.File(hidden, "a") as f:
                for name in [n for n in store.hidden.condition_names(f) if is_checkpoint_of(n, config.name)]:
                    store.hidden.delete_condition(f, name)
        folder.mkdir(parents=True, exist_ok=True)
        if settings_file.is_file() and json.loads(settings_file.read_text()) != wanted:
            raise ValueError(f"{folder} holds a fine-tune with other settings: use another --name or --overwrite")
        settings_file.write_text(json.dumps(wanted, indent=1) + "\n")
    ranks.barrier()
    lora = LoraConfig(
        r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
        target_modules=list(config.targets), task_type="CAUSAL_LM",
    )
    torch.manual_seed(config.seed)  # LoRA's A matrices start random: the seed makes a fine-tune reproducible
    try:
        model = get_peft_model(model, lora)
    except ValueError as error:
        raise ValueError(f"LoRA targets {','.join(config.targets)} do not fit this model: {models.first_line(error)}") from None
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    final_dir = folder / "final"
    record_path = folder / "training.npz"
    if (final_dir / "adapter_config.json").is_file() and record_path.is_file():
        _load_adapter(model, final_dir)
        record = dict(np.load(record_path))
        if ranks.main:
            print(f"{config.name}: adapter already trained; reusing {final_dir}", file=sys.stderr)
    else:
        started = time.perf_counter()
        if config.schedule == "blockwise":
            record = train_blockwise(model, train, config, scoring=scoring, progress=progress, ranks=ranks)
        else:
            record = train_lora(
                model, train, config, scoring=scoring,
                state_path=folder / STATE_FILE, checkpoint_dir=folder, progress=progress, ranks=ranks,
            )
        record["seconds"] = time.perf_counter() - started  # of this process (a resumed run: since resuming)
        record["processes"] = ranks.count
        if ranks.main:
            replace_atomically(final_dir, model.save_pretrained)
            replace_atomically(record_path, lambda tmp: np.savez(tmp, **record), suffix=".npz")
            (folder / STATE_FILE).unlink(missing_ok=True)  # ~3x the adapter; the record above replaces it
    ranks.barrier()  # the adapters are on disk before any rank loads a checkpoint
    model.eval()

    settings = {
        "kind": "sft",
        "shots": 0,
        "finetune": {**config.training_settings(), "checkpoints": list(config.checkpoints)},
        "prompt_format": task.format_dict(),
        "dtype": str(dtype).removeprefix("torch."),
        "store_dtype": config.store_dtype,
        **scoring.settings(),
    }

    def extract(name: str, adapter_dir: Path) -> float:
        """The model's states of every row, 0-shot prompts, as condition ``name``."""
        return icl.extract_condition(
            hidden, name, {**settings, "adapter": str(adapter_dir.relative_to(hidden.parent))}, model, tokenizer,
            examples, by_id, prefix_text=lambda row: tasks.render_prefix(task, by_id[int(examples.ids[row])], []),
            task=task, scoring=scoring, batch_size=config.batch_extract, progress=progress, ranks=ranks,
        )

    accuracy = extract(config.name, final_dir)
    for step in config.checkpoints:  # the model is not used after these: no need to restore it
        _load_adapter(model, folder / f"step-{step}")
        extract(step_condition(config.name, step), folder / f"step-{step}")
    if not ranks.main:
        return {}

    with h5py.File(hidden, "r") as f:
        final_logits, _, _ = store.hidden.read_outputs(f, config.name)
    summary = write_edl_record(hidden, config, train, record, base_logits, final_logits, examples, n_trainable,
                               n_choices=task.n_choices)
    if task.control:
        summary["control_task"] = task.name
    seconds = float(record.get("seconds", np.nan))
    summary.update(accuracy=accuracy, train_seconds=round(seconds, 1), seconds_per_step=round(seconds / float(record["steps"]), 3))
    return summary


def write_edl_record(
    hidden: Path,
    config: FinetuneConfig,
    train: TrainData,
    record: dict,
    base_logits: np.ndarray,
    final_logits: np.ndarray,
    examples: store.hidden.Examples,
    n_trainable: int,
    *,
    n_choices: int,
) -> dict:
    """Per-example code lengths and their totals into /edl/<name>; returns the totals.

    EDL as the paper defines it (``landscape.edl``): the held-out residual (eval rows; their true
    answers for true labels, the expectation under uniform labels for the random-label control),
    beside the training-row variant, the format-only learner on the same labels, order and
    batches, and a bootstrap interval for every total."""
    online = np.asarray(record["online_bits"], dtype=np.float64)
    if not np.isfinite(online).all():
        raise ValueError("the online code is incomplete: training did not finish its first epoch")
    final = bits_from_logits(final_logits[train.rows], train.labels)
    base = bits_from_logits(base_logits[train.rows], train.labels)
    eval_rows = np.flatnonzero(examples.splits == "eval")
    if len(eval_rows) == 0:
        raise ValueError("the run has no eval rows: the held-out residual of EDL needs them")
    eval_answers = examples.answers[eval_rows]
    eval_base = bits_from_logits(base_logits[eval_rows], eval_answers)
    eval_final = bits_from_logits(final_logits[eval_rows], eval_answers)
    n = len(online)
    order = epoch_order(n, 0, config.seed)
    bounds = (edl.batch_bounds(n, config.batch_size) if config.schedule == "online" else block_boundaries(n))
    format_online, format_params = edl.format_only_prequential(base_logits[train.rows], train.labels, order, bounds=bounds)
    format_scores = edl.recalibrate(base_logits[eval_rows], format_params)
    if config.labels == "true":
        heldout_final, heldout_format = eval_final, bits_from_logits(format_scores, eval_answers)
    else:  # held-out labels drawn as the training labels were: uniform; their expected code
        heldout_final, heldout_format = edl.expected_uniform_bits(final_logits[eval_rows]), edl.expected_uniform_bits(format_scores)
    intervals = edl.edl_totals(online, final, heldout_final, format_online, heldout_format, seed=config.seed)
    base_pred, final_pred = base_logits[eval_rows].argmax(1), final_logits[eval_rows].argmax(1)
    gain = edl.accuracy_gain(base_pred == eval_answers, final_pred == eval_answers, seed=config.seed)
    marginal = marginal_prequential_bits(np.asarray(train.labels), order, n_classes=n_choices)
    frequencies = np.bincount(train.labels, minlength=n_choices) / n
    totals = {
        "labels": config.labels,
        "n_train": n,
        "n_heldout": len(eval_rows),
        "n_trainable": int(n_trainable),
        **intervals,
        "final_bits": float(final.sum()),
        "heldout_residual_bits": float(n * heldout_final.mean()),
        "format_only_heldout_residual_bits": float(n * heldout_format.mean()),
        "base_bits": float(base.sum()),
        "uniform_bits": float(n * np.log2(n_choices)),
        "marginal_mdl_bits": float(marginal.sum()),
        "marginal_entropy_bits": float(-n * np.sum(frequencies[frequencies > 0] * np.log2(frequencies[frequencies > 0]))),
        "edl_per_example": float(intervals["edl_heldout_bits"] / n),
        "edl_per_parameter": float(intervals["edl_heldout_bits"] / n_trainable),
        "eval_gain_bits_mean": float((eval_base - eval_final).mean()),
        "accuracy_gain": gain.value, "accuracy_gain_low": gain.low, "accuracy_gain_high": gain.high,
        "online_code": (
            f"{n_choices}-way choice code from each batch's training forward pass, before its update (seeded dropout)"
            if config.schedule == "online"
            else f"{n_choices}-way choice code of each block under a model retrained from the base on all earlier blocks"
        ),
        "heldout_labels": "true answers" if config.labels == "true" else "uniform random (expected code)",
        "settings": config.training_settings(),
        **provenance.stamp(),
    }
    arrays = {
        "rows": train.rows,
        "id": examples.ids[train.rows],
        "label": train.labels.astype(np.int8),
        "online_bits": online,
        "final_bits": final,
        "base_bits": base,
        "marginal_online_bits": marginal,
        "format_online_bits": format_online,
        "format_params": format_params,
        "order": order,
        "losses": np.asarray(record["losses"]),
        "eval_rows": eval_rows,
        "eval_base_bits": eval_base,
        "eval_final_bits": eval_final,
        "eval_gain_bits": eval_base - eval_final,
        "heldout_final_bits": heldout_final,
        "heldout_format_bits": heldout_format,
    }
    with h5py.File(hidden, "a") as f:
        store.edl.write_edl(f, config.name, arrays, totals)
    return {k: v for k, v in totals.items() if k not in ("settings", "online_code", "command", "created_at", "versions")}


def train_data(task: tasks.Task, tokenizer, examples: store.hidden.Examples, train_rows: np.ndarray, by_id: dict,
               *, labels: str, seed: int, text_scoring: bool) -> TrainData:
    """The train rows as 0-shot prompts (each its own header, then its question), their labels
    (the right choices, or uniformly random ones: the label-noise control) and loss weights."""
    answers = examples.answers[train_rows].copy()
    if labels == "random":
        answers = np.random.default_rng([seed, 1]).integers(0, task.n_choices, len(train_rows))
    values = examples.first_group[train_rows]
    counts = {v: int((values == v).sum()) for v in np.unique(values)}
    weights = np.array([1.0 / counts[v] for v in values])
    items = [by_id[int(examples.ids[r])] for r in train_rows]
    return TrainData(
        rows=train_rows,
        tokens=[tokenizer.encode(tasks.render_prefix(task, item, []), add_special_tokens=True)
                + tokenizer.encode(tasks.render_question(task, item), add_special_tokens=False) for item in items],
        labels=answers,
        weights=weights / weights.mean(),
        continuations=[[tokenizer.encode(t, add_special_tokens=False) for t in tasks.continuations(task, item)]
                       for item in items] if text_scoring else None,
    )


def _load_adapter(model, adapter_dir: Path) -> None:
    """Set the LoRA weights of ``model`` (a peft model) to those saved in ``adapter_dir``."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise ValueError(f"no adapter at {adapter_dir}")
    set_peft_model_state_dict(model, load_file(weights))


def describe(summary: dict) -> str:
    return json.dumps(summary, indent=1, default=float)
