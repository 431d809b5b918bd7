"""How many tokens a batch may hold: extraction's token budget and fine-tuning's micro-batch.

On the CPU, extraction runs fixed batches of ``--batch-size`` rows (the results of every run so
far, bit for bit) and fine-tuning the micro-batch of ``finetune_config.micro_tokens_for``. On a GPU
a batch of 8 questions (~800 tokens) leaves most of the chip idle, so both are sized by the
device's free memory once the model is on it:

- extraction (``token_budget``): a batch's rows x (cached prefix + its longest question) — the
  tokens it holds keys and values of — fill a budget of ``MEMORY_SHARE`` of the free memory over
  ``extract_bytes_per_token``, at most ``MAX_EXTRACT_TOKENS``;
- fine-tuning (``micro_tokens_on_device``): the same share over the activations a token keeps for
  the backward pass, at most ``MAX_TRAIN_TOKENS``.

``--token-budget N`` sets the extraction budget anywhere (also on the CPU), ``off`` keeps rows.

Example (an 8B shape in bfloat16: 128 KiB of keys and values and 116 KiB of activations a token)::

    >>> from types import SimpleNamespace as Config
    >>> llama8b = Config(num_hidden_layers=32, hidden_size=4096, intermediate_size=14336,
    ...                  num_attention_heads=32, num_key_value_heads=8)
    >>> extract_bytes_per_token(llama8b, element_bytes=2)
    249856
    >>> budget_for_memory(120 * 2**30, 249856, limit=MAX_EXTRACT_TOKENS)
    65536
    >>> budget_for_memory(4 * 2**30, 249856, limit=MAX_EXTRACT_TOKENS)
    6848
"""

from __future__ import annotations

import sys

import torch

AUTO, OFF = "auto", "off"
# The share of the free device memory a batch may take: the rest is the caching allocator's slack,
# the next batch's inputs and the pinned copies in flight.
MEMORY_SHARE = 0.4
# Past this a forward pass is no faster a token, and fewer, longer batches leave less to overlap
# (a batch's states are written while the next one computes). The budget counts the cached
# prefix, so a 5-shot batch (~700 tokens a row) runs ~90 questions, ~9k new tokens.
MAX_EXTRACT_TOKENS = 65536
MAX_TRAIN_TOKENS = 16384
STEP = 64  # budgets are multiples of this (a budget below it is STEP)


def parse_token_budget(text: str) -> int | str:
    """``auto``, ``off`` or a positive number of tokens (the ``--token-budget`` argument)."""
    if text in (AUTO, OFF):
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"token budget must be auto, off or a positive number of tokens, got {text!r}")
    return value


def check_token_budget(value: int | str) -> None:
    if value not in (AUTO, OFF) and not (isinstance(value, int) and value >= 1):
        raise ValueError(f"token_budget must be 'auto', 'off' or a positive integer, got {value!r}")


def _text(config):
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def extract_bytes_per_token(model_config, *, element_bytes: int) -> int:
    """Bytes a prompt token of a batch holds at once: its keys and values in every layer (kept in
    the cache through the pass) and one block's activations (residual, attention and MLP inputs
    and outputs: 4 x width + 3 x MLP width values)."""
    text = _text(model_config)
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    keys_values = text.num_hidden_layers * 2 * kv_heads * head_dim
    activations = 4 * text.hidden_size + 3 * getattr(text, "intermediate_size", 4 * text.hidden_size)
    return int((keys_values + activations) * element_bytes)


def train_values_per_token(model_config) -> int:
    """Activations a token keeps for the backward pass: blocks x (34 x width + 5 x MLP width)
    values (measured on SmolLM2-135M: ``finetune_config.micro_tokens_for`` scales by it too)."""
    text = _text(model_config)
    return int(
        text.num_hidden_layers * (34 * text.hidden_size + 5 * getattr(text, "intermediate_size", 4 * text.hidden_size))
    )


def train_bytes_per_token(model_config, *, element_bytes: int) -> int:
    """Bytes of ``train_values_per_token`` in the model's dtype."""
    return train_values_per_token(model_config) * element_bytes


def budget_for_memory(free_bytes: int, bytes_per_token: int, *, limit: int) -> int:
    """Tokens that fit ``MEMORY_SHARE`` of ``free_bytes``, in steps of ``STEP``, within [STEP, limit]."""
    tokens = int(MEMORY_SHARE * free_bytes / bytes_per_token) // STEP * STEP
    return max(STEP, min(limit, tokens))


def free_memory(device: torch.device) -> int:
    """Free bytes on a CUDA device, as the driver sees them plus what torch's allocator holds unused."""
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def _element_bytes(model) -> int:
    return next(model.parameters()).element_size()


def token_budget(setting: int | str, model, device: torch.device) -> int | None:
    """The tokens a batch of extraction may hold (None: fixed batches of rows), for ``--token-budget``
    ``setting``: a number as given; ``auto`` sized by the free memory of a CUDA ``device`` (None
    elsewhere); ``off`` None."""
    check_token_budget(setting)
    if setting == OFF or (setting == AUTO and device.type != "cuda"):
        return None
    if not gathers_rows_apart():
        print(
            f"transformers {_transformers_version()} computes a batch of B rows' logits at B x B positions (fixed in "
            "5.23): batches of --batch-size rows, not a token budget",
            file=sys.stderr,
        )
        return None
    if setting != AUTO:
        return int(setting)
    per_token = extract_bytes_per_token(model.config, element_bytes=_element_bytes(model))
    return budget_for_memory(free_memory(device), per_token, limit=MAX_EXTRACT_TOKENS)


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def gathers_rows_apart() -> bool:
    """Whether transformers takes each row's own last position (``logits_to_keep`` of shape (B, 1)):
    before 5.23 it took all B positions for every row, B^2 rows of logits (``forward._last_logits``),
    harmless at 8 rows, gigabytes at hundreds."""
    from packaging.version import Version

    return Version(_transformers_version()) >= Version("5.23")


def micro_tokens_on_device(model, device: torch.device) -> int | None:
    """Fine-tuning's micro-batch on a CUDA ``device``, sized by its free memory (None elsewhere:
    ``finetune_config.micro_tokens_for``)."""
    if device.type != "cuda":
        return None
    per_token = train_bytes_per_token(model.config, element_bytes=_element_bytes(model))
    return budget_for_memory(free_memory(device), per_token, limit=MAX_TRAIN_TOKENS)
