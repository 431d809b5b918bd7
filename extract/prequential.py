"""The EDL record of a fine-tune: its prequential code lengths and their totals, into ``/edl/<name>``.

Code lengths are in bits, of the K-way distribution over the task's choices (the letters'
logits, or the choices' text scores, renormalised), so the uniform code is log2 K bits a label.
The online code comes from training (``extract.lora``); the final and base codes are read from
the letter logits of the fine-tuned condition and of ``0shot``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from extract.lora import TrainData, block_boundaries, epoch_order
from landscape import edl, provenance, store

if TYPE_CHECKING:
    from extract.finetune_config import FinetuneConfig

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
    codes = _code_lengths(config, train, record, base_logits, final_logits, examples, n_choices=n_choices)
    totals = _totals(config, codes, base_logits, final_logits, examples, train, n_trainable, n_choices=n_choices)
    arrays = {
        "rows": train.rows,
        "id": examples.ids[train.rows],
        "label": train.labels.astype(np.int8),
        **{
            k: codes[k]
            for k in (
                "online_bits",
                "final_bits",
                "base_bits",
                "marginal_online_bits",
                "format_online_bits",
                "format_params",
                "order",
            )
        },
        "losses": np.asarray(record["losses"]),
        **{
            k: codes[k]
            for k in (
                "eval_rows",
                "eval_base_bits",
                "eval_final_bits",
                "eval_gain_bits",
                "heldout_final_bits",
                "heldout_format_bits",
            )
        },
    }
    with h5py.File(hidden, "a") as f:
        store.edl.write_edl(f, config.name, arrays, totals)
    return {
        k: v for k, v in totals.items() if k not in ("settings", "online_code", "command", "created_at", "versions")
    }


def _code_lengths(
    config: FinetuneConfig,
    train: TrainData,
    record: dict,
    base_logits: np.ndarray,
    final_logits: np.ndarray,
    examples: store.hidden.Examples,
    *,
    n_choices: int,
) -> dict[str, np.ndarray]:
    """Every per-example code length of the record, in bits, by its name in /edl (and the order, rows, params)."""
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
    bounds = edl.batch_bounds(n, config.batch_size) if config.schedule == "online" else block_boundaries(n)
    format_online, format_params = edl.format_only_prequential(
        base_logits[train.rows], train.labels, order, bounds=bounds
    )
    format_scores = edl.recalibrate(base_logits[eval_rows], format_params)
    if config.labels == "true":
        heldout_final, heldout_format = eval_final, bits_from_logits(format_scores, eval_answers)
    else:  # held-out labels drawn as the training labels were: uniform; their expected code
        heldout_final, heldout_format = (
            edl.expected_uniform_bits(final_logits[eval_rows]),
            edl.expected_uniform_bits(format_scores),
        )
    marginal = marginal_prequential_bits(np.asarray(train.labels), order, n_classes=n_choices)
    return {
        "online_bits": online,
        "final_bits": final,
        "base_bits": base,
        "marginal_online_bits": marginal,
        "format_online_bits": format_online,
        "format_params": format_params,
        "order": order,
        "eval_rows": eval_rows,
        "eval_base_bits": eval_base,
        "eval_final_bits": eval_final,
        "eval_gain_bits": eval_base - eval_final,
        "heldout_final_bits": heldout_final,
        "heldout_format_bits": heldout_format,
    }


def _totals(
    config: FinetuneConfig,
    codes: dict[str, np.ndarray],
    base_logits: np.ndarray,
    final_logits: np.ndarray,
    examples: store.hidden.Examples,
    train: TrainData,
    n_trainable: int,
    *,
    n_choices: int,
) -> dict:
    """The record's totals (each EDL total with its bootstrap interval) and how they were made."""
    online, final, base = codes["online_bits"], codes["final_bits"], codes["base_bits"]
    marginal = codes["marginal_online_bits"]
    heldout_final, heldout_format = codes["heldout_final_bits"], codes["heldout_format_bits"]
    eval_rows = codes["eval_rows"]
    eval_answers = examples.answers[eval_rows]
    n = len(online)
    intervals = edl.edl_totals(
        online, final, heldout_final, codes["format_online_bits"], heldout_format, seed=config.seed
    )
    base_pred, final_pred = base_logits[eval_rows].argmax(1), final_logits[eval_rows].argmax(1)
    gain = edl.accuracy_gain(base_pred == eval_answers, final_pred == eval_answers, seed=config.seed)
    frequencies = np.bincount(train.labels, minlength=n_choices) / n
    return {
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
        "marginal_entropy_bits": float(
            -n * np.sum(frequencies[frequencies > 0] * np.log2(frequencies[frequencies > 0]))
        ),
        "edl_per_example": float(intervals["edl_heldout_bits"] / n),
        "edl_per_parameter": float(intervals["edl_heldout_bits"] / n_trainable),
        "eval_gain_bits_mean": float(codes["eval_gain_bits"].mean()),
        "accuracy_gain": gain.value,
        "accuracy_gain_low": gain.low,
        "accuracy_gain_high": gain.high,
        "online_code": (
            f"{n_choices}-way choice code from each batch's training forward pass, before its update (seeded dropout)"
            if config.schedule == "online"
            else f"{n_choices}-way choice code of each block under a model retrained from the base on all earlier blocks"
        ),
        "heldout_labels": "true answers" if config.labels == "true" else "uniform random (expected code)",
        "settings": config.training_settings(),
        **provenance.stamp(),
    }
