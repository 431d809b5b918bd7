"""Fine-tuning benchmark on the embedded model: step time and the cost of the prequential code.

    .venv/bin/python bench/bench_finetune.py [--examples 48] [--batch-size 16]

Measured in one run, on the same LoRA model, data and batches:
- ``train_lora`` (records each example's code length from the training forward pass) against a
  plain loop (the same micro-batches: forward, loss, backward, step; nothing recorded);
  target: overhead <= 10 %;
- seconds per training step and per example coded online (the code is the training pass
  itself), and per example coded by an extra evaluation pass (what the block-wise schedule and
  the final code cost).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from extract import forward, models
from extract.finetune import FinetuneConfig
from extract.lora import TrainData, epoch_order, micro_batches, train_lora
from landscape import tasks


def lora_model(config: FinetuneConfig):
    from peft import LoraConfig, get_peft_model

    model, tok = models.load_model(models.resolve_model("smollm2-135m"), torch.device("cpu"), torch.float32)
    torch.manual_seed(0)
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.targets),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora), tok


def plain_loop(model, train: TrainData, config: FinetuneConfig, letter_ids) -> float:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    labels = torch.as_tensor(train.labels)
    order = epoch_order(len(labels), 0, config.seed)
    model.train()
    start = time.perf_counter()
    for s in range(0, len(order), config.batch_size):
        batch = order[s : s + config.batch_size]
        optimizer.zero_grad(set_to_none=True)
        for micro in micro_batches(batch, [len(train.tokens[i]) for i in batch], config.micro_tokens):
            log_p = forward.letter_log_probs(model, [train.tokens[i] for i in micro], letter_ids=letter_ids)
            loss = torch.nn.functional.nll_loss(log_p, labels[micro], reduction="sum") / len(batch)
            loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    config = FinetuneConfig(epochs=1, batch_size=args.batch_size, warmup=0.0, micro_tokens=2048)

    task, items = tasks.load_items(tasks.load_task("mmlu"))
    questions = [q for q in items if q.group == "high school psychology"][: args.examples]
    model, tok = lora_model(config)
    tokens = [
        tok.encode(tasks.render_prefix(task, q, []))
        + tok.encode(tasks.render_question(task, q), add_special_tokens=False)
        for q in questions
    ]
    train = TrainData(
        rows=np.arange(len(tokens)),
        tokens=tokens,
        labels=np.array([q.answer for q in questions]),
        weights=np.ones(len(tokens)),
    )
    letter_ids = forward.letter_token_ids(tok, tasks.continuations(task, questions[0]))
    steps = math.ceil(len(tokens) / config.batch_size)

    plain_loop(
        model,
        TrainData(train.rows[:4], tokens[:4], train.labels[:4], train.weights[:4]),
        FinetuneConfig(batch_size=4, micro_tokens=2048),
        letter_ids,
    )  # warm-up
    plain = plain_loop(model, train, config, letter_ids)
    model, _ = lora_model(config)
    start = time.perf_counter()
    train_lora(model, train, config, scoring=forward.Scoring(letter_ids), progress=False)
    recorded = time.perf_counter() - start
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for s in range(0, len(tokens), config.batch_size):
            forward.letter_log_probs(model, tokens[s : s + config.batch_size], letter_ids=letter_ids)
    coding = time.perf_counter() - start

    n = len(tokens)
    print(
        f"\nfine-tuning benchmark: smollm2-135m, LoRA r={config.rank} on {len(config.targets)} projections, "
        f"{n} examples, batch {config.batch_size}, {torch.get_num_threads()} threads\n"
    )
    print(f"{'measure':44s} {'value':>12s} {'target':>8s}")
    print(f"{'seconds per step, plain training':44s} {plain / steps:12.2f}")
    print(f"{'seconds per step, with the online code':44s} {recorded / steps:12.2f}")
    print(f"{'overhead of recording the online code':44s} {recorded / plain - 1:+12.1%} {'<= +10%':>8s}")
    print(f"{'seconds per example coded online':44s} {recorded / n:12.3f}")
    print(f"{'seconds per example coded by an eval pass':44s} {coding / n:12.3f}")


if __name__ == "__main__":
    main()
