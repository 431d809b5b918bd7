"""LoRA training that records the prequential (online) code of its labels on the way.

``train_lora`` takes one pass over the seeded order for each epoch; during the first pass, each
example's code length is taken from the very forward pass that computes its training loss,
*before* the update that uses it (the first batch is coded by the pretrained model).
``train_blockwise`` is the block-wise variant (Voita & Titov 2020): a model retrained from the
base for each block. Dropout (LoRA's) is seeded per (step, micro-batch), so the online code is
reproducible and therefore decodable. ``extract.finetune`` runs these on a run's train rows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from extract import budget, forward
from extract.finetune_config import micro_tokens_for
from extract.ranks import SINGLE, Ranks
from landscape import faults, store, tasks
from landscape.atomic import replace_atomically

if TYPE_CHECKING:
    from extract.finetune_config import FinetuneConfig

LN2 = math.log(2.0)


def lr_multiplier(step: int, warmup_steps: int, total_steps: int) -> float:
    """The learning rate of ``step`` (0-based) as a fraction of ``lr`` (see ``extract.finetune_config.LR_SCHEDULE``).

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

    def subset(self, indices: np.ndarray) -> TrainData:
        """These rows only (every per-row field taken together, so none can be forgotten)."""
        return TrainData(
            rows=self.rows[indices],
            tokens=[self.tokens[i] for i in indices],
            labels=self.labels[indices],
            weights=self.weights[indices],
            continuations=None if self.continuations is None else [self.continuations[i] for i in indices],
        )


def train_data(
    task: tasks.Task,
    tokenizer,
    examples: store.hidden.Examples,
    train_rows: np.ndarray,
    by_id: dict,
    *,
    labels: str,
    seed: int,
    text_scoring: bool,
) -> TrainData:
    """The train rows as 0-shot prompts (each its own header, then its question), their labels
    (the right choices, or uniformly random ones: the label-noise control) and loss weights."""
    answers = examples.answers[train_rows].copy()
    if labels == "random":
        answers = np.random.default_rng([seed, 1]).integers(0, task.n_choices, len(train_rows))
    values = examples.first_group[train_rows]
    counts = {v: int((values == v).sum()) for v in np.unique(values)}
    weights = np.array([1.0 / counts[v] for v in values])
    items = [by_id[tasks.id_key(examples.ids[r])] for r in train_rows]
    return TrainData(
        rows=train_rows,
        tokens=[
            tokenizer.encode(tasks.render_prefix(task, item, []), add_special_tokens=True)
            + tokenizer.encode(tasks.render_question(task, item), add_special_tokens=False)
            for item in items
        ],
        labels=answers,
        weights=weights / weights.mean(),
        continuations=[
            [tokenizer.encode(t, add_special_tokens=False) for t in tasks.continuations(task, item)] for item in items
        ]
        if text_scoring
        else None,
    )


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


@contextmanager
def lora_in_model_dtype(model) -> Iterator[None]:
    """Run LoRA's branch in the model's half precision (bfloat16 / float16: the default on a GPU)
    rather than float32: peft keeps the adapter's weights in float32 and casts each input up to
    them, so the branch's ~2.4 % of an 8B model's FLOPs ran as float32 GEMMs, ~13x slower on a
    Hopper chip than the rest; under autocast they run in the model's dtype, the weights and their
    updates staying float32 (mixed precision). Wrap forward passes only. A float32 model (the
    CPU's default) is left as it is, bit for bit."""
    dtype = next(model.parameters()).dtype
    if dtype not in (torch.bfloat16, torch.float16):
        yield
        return
    from peft.helpers import disable_input_dtype_casting

    device = forward.input_device(model)
    with torch.autocast(device_type=device.type, dtype=dtype), disable_input_dtype_casting(model):
        yield


def label_nats(model, train: TrainData, indices: np.ndarray, scoring: forward.Scoring) -> torch.Tensor:
    """(len(indices),) -ln p(label | prompt) of some train examples, K-way; differentiable."""
    log_p = forward.choice_log_probs(
        model,
        [train.tokens[i] for i in indices],
        scoring=scoring,
        continuations=None if train.continuations is None else [train.continuations[i] for i in indices],
    )
    labels = forward.to_device(torch.as_tensor(train.labels[indices]), log_p.device)
    return -log_p[torch.arange(len(indices), device=log_p.device), labels]


def _by_length(train: TrainData, indices: np.ndarray, budget: int) -> list[np.ndarray]:
    """``micro_batches`` of some train examples, sized by the tokens their forward pass runs."""
    # text scoring runs every choice's continuation: K sequences an example
    continuations = train.continuations
    if continuations is None:
        return micro_batches(indices, [len(train.tokens[i]) for i in indices], budget)
    per = len(continuations[0])
    return micro_batches(
        indices, [per * (len(train.tokens[i]) + max(len(c) for c in continuations[i])) for i in indices], budget
    )


@dataclass
class _Progress:
    """What training has done so far (a resume state holds it): the online code, the losses, the steps."""

    online: np.ndarray  # (n,) bits of each example in the first epoch; NaN until coded
    losses: list[float]
    step: int  # dropout is seeded per (step, micro-batch): no generator state to carry
    # steps whose codes and loss are still on the device: (the batch it coded, or None after the
    # first epoch; its codes in nats; its loss). Reading them each step would make the host wait
    # for the device every step instead of queuing the next one.
    pending: list[tuple[np.ndarray | None, torch.Tensor, torch.Tensor]] = field(default_factory=list)
    saved: tuple[float, float] = (-math.inf, 0.0)  # (when the last resume state was saved, seconds it took)

    def settle(self) -> None:
        """Bring the pending steps' codes and losses to the host (one wait for the device)."""
        for batch, nats, loss in self.pending:
            if batch is not None:
                self.online[batch] = nats.cpu().numpy() / LN2
            self.losses.append(float(loss))
        self.pending.clear()


def default_micro_tokens(model, ranks: Ranks = SINGLE) -> int:
    """The micro-batch when none is given: sized by a GPU's free memory (the smallest over
    ``ranks``), else by the model (``micro_tokens_for``)."""
    on_device = ranks.least(budget.micro_tokens_on_device(model, forward.input_device(model)))
    return micro_tokens_for(model.config) if on_device is None else on_device


def _sized(config: FinetuneConfig, model, ranks: Ranks) -> FinetuneConfig:
    """The config with its micro-batch sized when not given (``run_finetune`` resolves it before,
    to record it)."""
    return (
        config if config.micro_tokens is not None else replace(config, micro_tokens=default_micro_tokens(model, ranks))
    )


def train_lora(
    model,
    train: TrainData,
    config: FinetuneConfig,
    *,
    scoring: forward.Scoring,
    state_path: Path | None = None,
    checkpoint_dir: Path | None = None,
    progress: bool = True,
    ranks: Ranks = SINGLE,
) -> dict:
    """Train the LoRA parameters of ``model`` (a peft model) in place; returns the training record.

    The record holds ``online_bits`` (n,): each example's code length in the first epoch, taken
    from the forward pass of its batch before that batch's update, and ``losses`` per step.

    Several ``ranks`` (``accelerate launch``) share each step's micro-batches and sum their
    gradients and code lengths before the update (data parallel): every rank then takes the same
    step a single process takes, up to the order of float additions. Dropout is seeded per
    (step, micro-batch), so its masks do not depend on which rank runs a micro-batch.
    """
    config = _sized(config, model, ranks)
    n = len(train.labels)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = steps_per_epoch * config.epochs
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = _optimizer(params, config, total)
    done = _resume(model, optimizer, scheduler, config, state_path, n)

    device = forward.input_device(model)
    weights = torch.as_tensor(train.weights, dtype=torch.float32, device=device)
    model.train()
    bar = tqdm(total=total, initial=done.step, desc="finetune", unit="step", disable=not progress or not ranks.main)
    while done.step < total:
        epoch, index = divmod(done.step, steps_per_epoch)
        batch = epoch_order(n, epoch, config.seed)[index * config.batch_size : (index + 1) * config.batch_size]
        optimizer.zero_grad(set_to_none=True)
        batch_weights = weights[forward.to_device(torch.as_tensor(batch), device)]
        batch_weight = batch_weights.sum()
        batch_nats = _backward(
            model, train, batch, weights, batch_weight, params, config, done.step, device, scoring=scoring, ranks=ranks
        )
        # epoch 0: the prequential code, this batch coded by the model before its update
        done.pending.append(
            (
                batch if epoch == 0 else None,
                batch_nats,
                (batch_weights.double() * batch_nats).sum() / batch_weight.double(),
            )
        )
        optimizer.step()
        scheduler.step()
        done.step += 1
        _keep(
            model,
            optimizer,
            scheduler,
            config,
            done,
            total,
            state_path=state_path,
            checkpoint_dir=checkpoint_dir,
            ranks=ranks,
        )
        if device.type != "cuda" or done.step == total:  # on the CPU waiting costs nothing; elsewhere saves settle
            done.settle()
        if not done.pending:
            bar.set_postfix(loss=f"{done.losses[-1]:.3f}")
        bar.update(1)
        faults.reached("finetune.step")
    bar.close()
    model.eval()
    return {"online_bits": done.online, "losses": np.array(done.losses), "steps": total}


def _optimizer(params: list[torch.nn.Parameter], config: FinetuneConfig, total: int):
    """AdamW over the LoRA parameters and its learning-rate schedule (``finetune_config.LR_SCHEDULE``) over ``total`` steps."""
    # on a GPU one fused kernel updates every LoRA tensor (hundreds of them at an 8B shape)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0, fused=all(p.is_cuda for p in params) or None)
    warmup_steps = int(config.warmup * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_multiplier(s, warmup_steps, total))
    return optimizer, scheduler


def _resume(model, optimizer, scheduler, config: FinetuneConfig, state_path: Path | None, n: int) -> _Progress:
    """Continue from the resume state at ``state_path`` when there is one (same settings only), else start."""
    from peft import set_peft_model_state_dict

    if state_path is None or not state_path.exists():
        return _Progress(online=np.full(n, np.nan), losses=[], step=0)
    state = torch.load(state_path, weights_only=False)
    if state["settings"] != config.training_settings():
        raise ValueError(f"{state_path} was made with other training settings: use --overwrite")
    set_peft_model_state_dict(model, state["adapter"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return _Progress(online=state["online_bits"], losses=state["losses"], step=state["step"])


def _backward(
    model,
    train: TrainData,
    batch: np.ndarray,
    weights: torch.Tensor,
    batch_weight: torch.Tensor,
    params: list[torch.nn.Parameter],
    config: FinetuneConfig,
    step: int,
    device: torch.device,
    *,
    scoring: forward.Scoring,
    ranks: Ranks,
) -> torch.Tensor:
    """Accumulate one batch's gradients (summed over ranks); returns (len(batch),) its examples' codes in nats."""
    # Micro-batches of similar length, gradients accumulated: one step per batch as if it
    # ran whole, without padding every prompt to the batch's longest (MMLU lengths vary 10x).
    assert config.micro_tokens is not None  # sized by _sized
    micros = list(enumerate(_by_length(train, batch, config.micro_tokens)))
    mine = ranks.share(micros, costs=[len(m) * max(len(train.tokens[i]) for i in m) for _, m in micros])
    # each example's code, at its place in the batch (on the device: NCCL reduces only there)
    batch_nats = torch.zeros(len(batch), dtype=torch.float64, device=device)
    place = {int(example): position for position, example in enumerate(batch)}
    for number, micro in mine:
        torch.manual_seed(int(np.random.SeedSequence([config.seed, step, number]).generate_state(1)[0]))
        with lora_in_model_dtype(model):
            nats = label_nats(model, train, micro, scoring)
        places, examples = (
            forward.to_device(torch.as_tensor(ix), device) for ix in ([place[int(i)] for i in micro], micro)
        )
        batch_nats[places] = nats.detach().double()
        ((weights[examples] * nats).sum() / batch_weight).backward()
    if ranks.count > 1:
        _sum_gradients(params, ranks)
        ranks.sum_(batch_nats)
    return batch_nats


def _sum_gradients(params: list[torch.nn.Parameter], ranks: Ranks) -> None:
    """Sum the gradients of ``params`` over ranks, in one flat buffer (one all-reduce a step)."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = ranks.sum_(torch.cat([g.reshape(-1) for g in grads]))
    offset = 0
    for p in params:
        p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
        offset += p.numel()


def _keep(
    model,
    optimizer,
    scheduler,
    config: FinetuneConfig,
    done: _Progress,
    total: int,
    *,
    state_path: Path | None,
    checkpoint_dir: Path | None,
    ranks: Ranks,
) -> None:
    """After a step (main rank): the adapter of a checkpoint step, and the resume state every
    ``save_every`` steps (and the last); when a save took over ``SLOW_SAVE_S``, not sooner after
    it than ``SAVE_SPACING`` times that: a resume state of an 8B model's adapter and optimizer is
    ~2 GB, a few seconds to write, while ten steps on a GPU take about as long. A resumed training
    gives the same numbers from any saved step."""
    from peft import get_peft_model_state_dict

    step = done.step
    if checkpoint_dir is not None and step in config.checkpoints and ranks.main:
        replace_atomically(checkpoint_dir / f"step-{step}", model.save_pretrained)
    last_saved, save_seconds = done.saved
    spaced = save_seconds <= SLOW_SAVE_S or time.monotonic() - last_saved >= SAVE_SPACING * save_seconds
    due = step == total or (step % config.save_every == 0 and spaced)
    if state_path is not None and ranks.main and due:
        done.settle()  # (waits for the device: not part of the save's time)
        started = time.monotonic()
        state = {
            "settings": config.training_settings(),
            "adapter": get_peft_model_state_dict(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "online_bits": done.online,
            "losses": done.losses,
            "step": step,
        }
        replace_atomically(state_path, lambda tmp: torch.save(state, tmp))
        done.saved = (time.monotonic(), time.monotonic() - started)


SAVE_SPACING = 10  # a slow resume state costs at most ~1/10 of the training's time
SLOW_SAVE_S = 1.0


# Voita & Titov 2020: block boundaries as fractions of the (ordered) training data.
BLOCK_FRACTIONS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.0625, 0.125, 0.25, 0.5, 1.0)


def block_boundaries(n: int, fractions=BLOCK_FRACTIONS) -> list[int]:
    """Increasing prefix sizes t_1 < ... < t_K = n (duplicates from small n merged)."""
    return sorted({min(n, max(1, round(f * n))) for f in fractions} | {n})


def train_blockwise(
    model,
    train: TrainData,
    config: FinetuneConfig,
    *,
    scoring: forward.Scoring,
    progress: bool = True,
    ranks: Ranks = SINGLE,
) -> dict:
    """Block-wise prequential code: block (t_k, t_k+1] of the seeded order is coded by a model
    trained from the base on the first t_k examples; the first block by the base model itself.
    Trains len(blocks) models (a GPU option); ends with the model trained on all n examples."""
    config = _sized(config, model, ranks)
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    initial = {k: v.clone() for k, v in get_peft_model_state_dict(model).items()}
    order = epoch_order(len(train.labels), 0, config.seed)
    bounds = [0, *block_boundaries(len(order))]
    online = np.full(len(order), np.nan)
    losses: list[float] = []
    assert config.micro_tokens is not None  # sized by _sized
    for k in range(len(bounds) - 1):
        coded = order[bounds[k] : bounds[k + 1]]
        model.eval()
        with torch.no_grad(), lora_in_model_dtype(model):
            for micro in _by_length(train, coded, config.micro_tokens):
                online[micro] = label_nats(model, train, micro, scoring).double().cpu().numpy() / LN2
        prefix = order[: bounds[k + 1]]  # retrain from the base on everything coded so far
        set_peft_model_state_dict(model, initial)
        subset = train.subset(prefix)
        record = train_lora(model, subset, config, scoring=scoring, progress=progress, ranks=ranks)
        losses += record["losses"].tolist()
    return {"online_bits": online, "losses": np.array(losses), "steps": len(losses)}


def load_adapter(model, adapter_dir: Path) -> None:
    """Set the LoRA weights of ``model`` (a peft model) to those saved in ``adapter_dir``."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise ValueError(f"no adapter at {adapter_dir}")
    set_peft_model_state_dict(model, load_file(weights))
