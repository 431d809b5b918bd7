"""Forward passes that keep only what the suite stores: the last prompt token of every layer.

Prompts are ``prefix + question`` token lists (see ``landscape.tasks``). A batch is padded on the
**right**: every real token then sits at the position it has alone (positions, causal mask and
sliding windows are unchanged), and each row's last real token is gathered. Pads come after it,
so nothing real attends to them.

With a shared prefix (a group's header and demos), the prefix runs once into a key/value
cache, which is copied for each batch; only the question tokens run on top of it.

Hidden states are recorded by forward hooks on the input embedding and on every decoder block,
gathering one position per row as they pass: memory is O(layers x batch x d), not x tokens.
Layer 0 is the embedding output, layer l the output of block l — all of them *before* the
model's final norm (``output_hidden_states`` would give the normed state as its last entry).

Example (a tiny random model, see tests/conftest.py)::

    out = last_token_states(model, [[5, 6, 7], [8, 9]], prefix=None, letter_ids=[1, 2, 3, 4])
    out.hidden.shape  # (n_layers + 1, 2, d)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import Cache, PreTrainedModel  # (a model may be a peft model, which passes attributes through)


class ForwardError(ValueError):
    """The model or tokenizer does not fit what extraction needs."""


@dataclass(frozen=True)
class PrefixCache:
    """A prefix's token ids and the key/value cache of running them (batch of one)."""

    ids: list[int]
    cache: Cache


@dataclass(frozen=True)
class Scoring:
    """How a task's K choices are scored at the end of a prompt.

    ``letter_ids`` (K single tokens, e.g. " A" .. " D"): the logits of those tokens at the last
    prompt token. None: text scoring, each choice's own continuation tokens (given per prompt)
    scored by their summed log-probability (lm-eval's ``acc``)."""

    letter_ids: list[int] | None

    def settings(self) -> dict:
        return {"letter_token_ids": self.letter_ids} if self.letter_ids is not None else {"choice_scoring": "text"}


@dataclass(frozen=True)
class LastTokenStates:
    hidden: torch.Tensor  # (n_layers + 1, B, d) float32, on CPU
    letter_logits: torch.Tensor  # (B, K) float32: choice scores (letter logits, or summed log-probs of texts)
    logsumexp: torch.Tensor  # (B,) float32: log-sum-exp of the full-vocabulary logits (0 for text scores)
    # a CUDA event: the host copies above are complete once it has passed (None: they are)
    copied: torch.cuda.Event | None = None

    def wait(self) -> LastTokenStates:
        """These states, once their copy from the GPU is complete (``last_token_states(non_blocking=True)``)."""
        if self.copied is not None:
            self.copied.synchronize()
        return self


def pad_right(sequences: Sequence[Sequence[int]], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids (B, T), attention_mask (B, T), last real position (B,)) of right-padded sequences.

    Pads are token 0: they come after every real token, are masked, and no logit is read there,
    so which id fills them cannot change a result. Built on the host and sent in one copy each
    (``to_device``): no copy a row, no wait for the accelerator's queue."""
    if not sequences or any(len(s) == 0 for s in sequences):
        raise ForwardError("empty prompt")
    lengths = torch.tensor([len(s) for s in sequences])
    width = int(lengths.max())
    input_ids = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
    return to_device(input_ids, device), to_device(mask, device), to_device(lengths - 1, device)


def to_device(tensor: torch.Tensor, device) -> torch.Tensor:
    """``tensor`` (on the host) on ``device``; to a GPU through pinned memory without blocking:
    a plain host-to-GPU copy waits until everything queued on the GPU has run, so each one would
    stall the host that should be queuing the next kernels."""
    device = torch.device(device)
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def to_host(*tensors: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.cuda.Event | None]:
    """(host copies of ``tensors``, the event that marks them copied, or None): from a GPU into
    pinned memory without blocking (wait on the event before reading them); elsewhere ``.cpu()``."""
    if not tensors or tensors[0].device.type != "cuda":
        return tuple(t.cpu() for t in tensors), None
    host = tuple(torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors)
    for copy_, tensor in zip(host, tensors, strict=True):
        copy_.copy_(tensor, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record()
    return host, copied


def _last_logits(out, last: torch.Tensor) -> torch.Tensor:
    """(B, V) float32 logits at each row's last real token, from an output made with logits_to_keep."""
    logits = out.logits.float()
    rows = torch.arange(len(last), device=logits.device)
    if logits.ndim == 4:  # transformers < 5.23 indexes with the (B, 1) positions as a whole: (B, B, 1, V)
        return logits[rows, rows, 0]
    if logits.shape[1] != 1:  # a model without logits_to_keep returned every position
        return logits[rows, last.to(logits.device)]
    return logits[:, 0]


def _columns(logits: torch.Tensor, ids: Sequence[int]) -> torch.Tensor:
    """(B, K) the ``ids`` columns of (B, V) ``logits``, gathered where they are (the indices sent without blocking)."""
    return logits.index_select(1, to_device(torch.tensor(list(ids)), logits.device))


def letter_log_probs(
    model: PreTrainedModel, sequences: Sequence[Sequence[int]], *, letter_ids: Sequence[int]
) -> torch.Tensor:
    """(B, K) log-probabilities of the answer letters, renormalised over the K, at each prompt's
    last token; differentiable (used for training and for prequential code lengths)."""
    device = input_device(model)
    input_ids, mask, last = pad_right(sequences, device)
    logits = _last_logits(
        model(input_ids=input_ids, attention_mask=mask, logits_to_keep=last[:, None], use_cache=False), last
    )
    return torch.log_softmax(_columns(logits, letter_ids), dim=-1)


def choice_log_probs(
    model: PreTrainedModel,
    sequences: Sequence[Sequence[int]],
    *,
    scoring: Scoring,
    continuations: Sequence[Sequence[Sequence[int]]] | None = None,
) -> torch.Tensor:
    """(B, K) log-probabilities of the K choices, renormalised over them; differentiable.

    Letter scoring: ``letter_log_probs``. Text scoring: each choice's continuation
    (``continuations[b][j]``, token ids) appended to prompt b, its summed log-probability the
    choice's score, then a softmax over the K scores."""
    if scoring.letter_ids is not None:
        return letter_log_probs(model, sequences, letter_ids=scoring.letter_ids)
    if continuations is None:
        raise ForwardError("text scoring needs each prompt's continuations")
    return torch.log_softmax(continuation_scores(model, sequences, continuations)[1], dim=-1)


def continuation_scores(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[Sequence[int]]],
    *,
    prefix: PrefixCache | None = None,
    record: bool = False,
):
    """Summed log-probability (nats) of each continuation after its prompt: (B, K), differentiable.

    Runs the B x K sequences prompt + continuation (on top of ``prefix``'s cache if given); logits
    are kept only from the earliest prompt end on. With ``record``, also the hidden states at each
    prompt's last token (the same for every continuation, causal attention): returns
    (states (n_layers + 1, B, d) or None, scores (B, K))."""
    device = input_device(model)
    k = len(continuations[0])
    if any(len(c) != k or any(len(t) == 0 for t in c) for c in continuations):
        raise ForwardError("every prompt needs the same number of non-empty continuations")
    sequences = [list(p) + list(t) for p, c in zip(prompts, continuations, strict=True) for t in c]
    input_ids, mask, _ = pad_right(sequences, device)
    prompt_last = to_device(torch.tensor([len(p) - 1 for p in prompts for _ in range(k)]), device)
    keep = input_ids.shape[1] - int(prompt_last.min())  # positions from the earliest prompt end on
    mask, kwargs = _on_prefix(prefix, mask)
    if record:
        with _record_last_token(model, prompt_last) as records:
            logits = model(input_ids=input_ids, attention_mask=mask, logits_to_keep=keep, **kwargs).logits
        states = torch.stack(records)[:, ::k].cpu()
    else:
        logits = model(input_ids=input_ids, attention_mask=mask, logits_to_keep=keep, **kwargs).logits
        states = None
    start = input_ids.shape[1] - keep  # logits[:, j] predicts token start + j + 1
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    # every continuation token's (row, position, id) sent at once and gathered in one go, then summed per row
    pairs = [
        (row, len(p) - 1 - start + j, token)
        for row, (p, c) in enumerate((p, t) for p, cs in zip(prompts, continuations, strict=True) for t in cs)
        for j, token in enumerate(c)
    ]
    rows, positions, targets = to_device(torch.tensor(pairs).T.contiguous(), device)
    per_row = log_probs[rows, positions, targets].split([len(t) for cs in continuations for t in cs])
    return states, torch.stack([tokens.sum() for tokens in per_row]).view(len(prompts), k)


def token_bits(model: PreTrainedModel, sequences: Sequence[Sequence[int]], starts: Sequence[int]) -> np.ndarray:
    """(B,) bits of each sequence's tokens from position ``starts[b]`` on, each coded by the model
    given every token before it: sum of -log2 p(token_t | tokens_<t), the arithmetic-code length.

    Right padding leaves every real token's context unchanged, so a sequence costs the same bits
    alone or in any batch. ``starts[b]`` >= 1 (the first token has no prediction).
    """
    if any(start < 1 or start > len(seq) for seq, start in zip(sequences, starts, strict=True)):
        raise ForwardError("token_bits: each start must be in 1..len(sequence)")
    device = input_device(model)
    input_ids, mask, _ = pad_right(sequences, device)
    with torch.inference_mode():
        logits = model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits.float()
    log_probs = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, input_ids[:, 1:, None])[..., 0]  # (B, T-1) nats
    positions = torch.arange(1, input_ids.shape[1], device=device)[None, :]
    lengths = mask.sum(dim=1)[:, None]
    coded = (positions >= torch.tensor(list(starts), device=device)[:, None]) & (positions < lengths)
    return (-(log_probs * coded).sum(dim=1) / math.log(2)).double().cpu().numpy()


def letter_token_ids(tokenizer, texts: Sequence[str]) -> list[int]:
    """The single token id of each answer continuation (e.g. ``" A"``); error if one is split."""
    ids = []
    for text in texts:
        encoded = tokenizer.encode(text, add_special_tokens=False)
        if len(encoded) != 1:
            raise ForwardError(f"answer text {text!r} is {len(encoded)} tokens for this tokenizer, not one")
        ids.append(encoded[0])
    return ids


def text_config(model: PreTrainedModel):
    """The config of the language model (the text part of a multimodal config)."""
    return model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config


def hidden_width(model: PreTrainedModel) -> int:
    return int(text_config(model).hidden_size)


def decoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The model's list of transformer blocks (the ModuleList as long as num_hidden_layers)."""
    n_layers = text_config(model).num_hidden_layers
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return module
    raise ForwardError(f"cannot find the {n_layers} decoder blocks of {type(model).__name__}")


def n_blocks(model: PreTrainedModel) -> int:
    return len(decoder_layers(model))


def input_device(model: PreTrainedModel) -> torch.device:
    """Where a batch's inputs go: the input embedding's device. A model split by a device map
    keeps its embedding where the map put it; an offloaded embedding (on the meta device) runs on
    its accelerate hook's execution device."""
    embedding = model.get_input_embeddings()
    weight = embedding.weight
    assert isinstance(weight, torch.Tensor)  # (nn.Module types its attributes Tensor | Module)
    if weight.device.type != "meta":
        return weight.device
    hook = getattr(embedding, "_hf_hook", None)
    return torch.device(getattr(hook, "execution_device", None) or "cpu")


@contextmanager
def _record_last_token(model: PreTrainedModel, positions: torch.Tensor) -> Iterator[list[torch.Tensor]]:
    """Hooks that append ``output[arange(B), positions]`` of the embedding and of each block.

    A module that ran twice (or not at all) would misalign the layers: checked on exit."""
    records: list[torch.Tensor] = []
    rows = torch.arange(len(positions), device=positions.device)

    def hook(_module, _inputs, output):
        states = output[0] if isinstance(output, tuple) else output
        # a block of a split model runs on its own device: gather there, keep every layer beside the inputs
        here = states.device
        records.append(states[rows.to(here), positions.to(here)].detach().float().to(positions.device))

    modules = [model.get_input_embeddings(), *decoder_layers(model)]
    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()
    if len(records) != len(modules):
        raise ForwardError(f"recorded {len(records)} layers, expected {len(modules)}")


def _on_prefix(prefix: PrefixCache | None, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """(attention mask, forward kwargs) to run a batch on top of ``prefix``'s cache (a copy,
    repeated for each row; the prefix positions prepended to the mask), or alone (None)."""
    if prefix is None:
        return mask, dict(use_cache=False)
    cache = copy.deepcopy(prefix.cache)
    cache.batch_repeat_interleave(len(mask))
    past = torch.ones((len(mask), len(prefix.ids)), dtype=torch.long, device=mask.device)
    return torch.cat([past, mask], dim=1), dict(past_key_values=cache, use_cache=True)


def encode_prefix(model: PreTrainedModel, prefix_ids: list[int]) -> PrefixCache:
    """Run a prefix once and keep its key/value cache."""
    device = input_device(model)
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prefix_ids], device=device), use_cache=True, logits_to_keep=1)
    return PrefixCache(ids=list(prefix_ids), cache=out.past_key_values)


def last_token_states(
    model: PreTrainedModel,
    questions: Sequence[Sequence[int]],
    *,
    prefix: PrefixCache | list[int] | None,
    letter_ids: Sequence[int] | None,
    continuations: Sequence[Sequence[Sequence[int]]] | None = None,
    non_blocking: bool = False,
) -> LastTokenStates:
    """States of the last token of ``prefix + question`` for a batch of questions, and the scores
    of the choices: the ``letter_ids``' logits there, or (``letter_ids`` None) the summed
    log-probability of each row's ``continuations`` (text scoring).

    ``prefix`` is a ``PrefixCache`` (run only the questions on top of it), a list of token ids
    (prepended and run in full: the reference path) or None (the questions are whole prompts).
    Every layer's states are gathered on the device and come to the host in one copy; with
    ``non_blocking`` on a GPU the call returns once the batch is queued, and ``.wait()`` on the
    result waits for its copy (the host meanwhile writes the previous batch).
    """
    device = input_device(model)
    if isinstance(prefix, list):
        sequences = [list(prefix) + list(q) for q in questions]
    else:
        sequences = [list(q) for q in questions]
    if letter_ids is None:
        if continuations is None:
            raise ForwardError("text scoring (no letter_ids) needs each question's continuations")
        with torch.inference_mode():
            states, scores = continuation_scores(
                model, sequences, continuations, record=True, prefix=prefix if isinstance(prefix, PrefixCache) else None
            )
        return LastTokenStates(hidden=states, letter_logits=scores.float().cpu(), logsumexp=torch.zeros(len(sequences)))
    input_ids, mask, last = pad_right(sequences, device)

    mask, kwargs = _on_prefix(prefix if isinstance(prefix, PrefixCache) else None, mask)

    with torch.inference_mode(), _record_last_token(model, last) as records:
        logits = _last_logits(
            model(input_ids=input_ids, attention_mask=mask, logits_to_keep=last[:, None], **kwargs), last
        )
        (hidden, letter_logits, logsumexp), copied = to_host(
            torch.stack(records), _columns(logits, letter_ids), torch.logsumexp(logits, dim=-1)
        )
    out = LastTokenStates(hidden=hidden, letter_logits=letter_logits, logsumexp=logsumexp, copied=copied)
    return out if non_blocking else out.wait()
