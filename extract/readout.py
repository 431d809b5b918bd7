"""What the analysis needs of a loaded model beyond its states: the parameters of the norm that
reads each stored layer (``--states normed``) and the head's rows of the choice tokens (the
logit lens, ``landscape.readouts``).

Layer l < L (the embeddings, block l's output) is read by block l's input norm; layer L by the
model's final norm. Which formula a norm module computes is not guessed from its class name: each
candidate of ``landscape.normed`` is run against the module on random input and the one that
matches is recorded (a module matching none is reported, and ``--states normed`` is then
unavailable for that run, with the reason).

Example (a tiny random Llama, see tests/conftest.py)::

    params = norm_parameters(model)
    params.kind, params.weight.shape  # ('rms', (n_layers + 1, d))
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from extract import forward
from landscape.normed import NORM_KINDS, NormParameters, apply_norm
from landscape.readouts import Unembedding

if TYPE_CHECKING:
    from transformers import PreTrainedModel  # (a model may be a peft model, which passes attributes through)

# Where models keep the norm before attention (the block's "input_layernorm") and the final norm.
BLOCK_NORM_NAMES = ("input_layernorm", "ln_1", "attention_norm", "ln_attn")
FINAL_NORM_NAMES = ("norm", "ln_f", "final_layernorm", "final_layer_norm", "final_norm")
EPS_NAMES = ("variance_epsilon", "eps", "epsilon", "variance_eps")


class ReadoutError(ValueError):
    """The model's norms or head cannot be reproduced from stored parameters."""


def norm_parameters(model: PreTrainedModel) -> NormParameters:
    """Each stored layer's norm (L blocks' input norms, then the final norm), verified against
    the modules themselves."""
    blocks = forward.decoder_layers(model)
    modules = [_block_norm(block, index) for index, block in enumerate(blocks)] + [_final_norm(model, blocks)]
    norms = [_read_norm(module) for module in modules]  # (kind, weight, bias, eps) each
    kinds = {kind for kind, *_ in norms}
    if len(kinds) != 1:
        raise ReadoutError(f"the model mixes norm kinds {sorted(kinds)}")
    kind = kinds.pop()
    if kind == "layer" and any(bias is None for _, _, bias, _ in norms):
        raise ReadoutError("a LayerNorm without a bias is not supported")
    return NormParameters(
        kind=kind,
        weight=np.stack([weight for _, weight, _, _ in norms]),
        eps=np.array([eps for *_, eps in norms], dtype=np.float64),
        # a LayerNorm's: every one has its bias (checked above)
        bias=np.stack([bias for _, _, bias, _ in norms if bias is not None]) if kind == "layer" else None,
    )


def _read_norm(module: nn.Module) -> tuple[str, np.ndarray, np.ndarray | None, float]:
    """(kind, weight, bias or None, eps) of one norm module, its weights read where they are."""
    with _weights_readable(module):
        weight = _array(module.weight)
        bias = None if getattr(module, "bias", None) is None else _array(module.bias)
        return _kind_of(module), weight, bias, _eps(module)


@contextmanager
def _weights_readable(module: nn.Module) -> Iterator[None]:
    """A module's own parameters on the CPU for the duration: under a device map, accelerate
    leaves offloaded ones (to disk; to the CPU when a GPU runs them) on the meta device and brings
    them in only for its forward."""
    try:
        from accelerate.utils import align_module_device, has_offloaded_params
    except ImportError:  # no accelerate: no device map either
        yield
        return
    if has_offloaded_params(module):
        with align_module_device(module, execution_device=torch.device("cpu")):
            yield
    else:
        yield


def _block_norm(block: nn.Module, index: int) -> nn.Module:
    for name in BLOCK_NORM_NAMES:
        if isinstance(getattr(block, name, None), nn.Module):
            return getattr(block, name)
    raise ReadoutError(
        f"block {index} ({type(block).__name__}) has no input norm named {' or '.join(BLOCK_NORM_NAMES)}"
    )


def _final_norm(model: PreTrainedModel, blocks: nn.ModuleList) -> nn.Module:
    inside = {id(m) for m in blocks.modules()}
    for qualified, module in model.named_modules():
        if qualified.rsplit(".", 1)[-1] in FINAL_NORM_NAMES and id(module) not in inside and hasattr(module, "weight"):
            return module
    raise ReadoutError(f"{type(model).__name__} has no final norm named {' or '.join(FINAL_NORM_NAMES)}")


def _eps(module: nn.Module) -> float:
    for name in EPS_NAMES:
        value = getattr(module, name, None)
        if isinstance(value, (int, float)):
            return float(value)
    if isinstance(module, nn.LayerNorm):
        return float(module.eps)
    raise ReadoutError(f"{type(module).__name__} keeps its epsilon under none of {', '.join(EPS_NAMES)}")


def _array(parameter: torch.Tensor | nn.Module | None) -> np.ndarray:
    if parameter is None:
        raise ReadoutError("a LayerNorm without a bias is not supported")
    if not isinstance(parameter, torch.Tensor):  # (nn.Module types its attributes Tensor | Module)
        raise ReadoutError(f"a norm's parameter is a {type(parameter).__name__}, not a tensor")
    return parameter.detach().float().cpu().numpy().astype(np.float32)


def _kind_of(module: nn.Module) -> str:
    """The kind whose formula reproduces ``module`` on random input (float64 reference); its
    weights must be readable (``_weights_readable``)."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 1:
        raise ReadoutError(f"{type(module).__name__} has no per-feature weight")
    eps = _eps(module)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, weight.shape[0], generator=generator) * 3 + 0.5  # a mean and a scale to tell the kinds apart
    try:
        with torch.no_grad():
            expected = module(x.to(device=weight.device, dtype=weight.dtype)).float().cpu().numpy()
    except Exception as error:  # a module that needs more than a tensor is not a plain norm
        raise ReadoutError(f"{type(module).__name__} cannot be run alone: {error}") from None
    bias = getattr(module, "bias", None)
    for kind in NORM_KINDS:
        if kind == "layer" and bias is None:
            continue
        got = apply_norm(x.numpy(), _array(weight), _array(bias) if kind == "layer" else None, eps, kind)
        if np.allclose(got, expected, rtol=1e-3, atol=1e-3 * (1 + np.abs(expected).max())):
            return kind
    raise ReadoutError(f"{type(module).__name__} computes none of the norms {', '.join(NORM_KINDS)}")


def choice_head(model: PreTrainedModel, token_ids: list[int]) -> Unembedding:
    """The unembedding rows (and bias) of the choice tokens, and the final logit soft-capping if
    the model has one. Whether these reproduce the model's logits is checked on its own outputs
    (``icl``: the lens at the last layer against the stored choice logits)."""
    head = model.get_output_embeddings()
    if head is None or not isinstance(getattr(head, "weight", None), torch.Tensor):
        raise ReadoutError(f"{type(model).__name__} has no output embedding to read")
    config = forward.text_config(model)
    softcap = getattr(config, "final_logit_softcapping", None)
    with _weights_readable(head):
        rows = torch.tensor(token_ids, device=head.weight.device)
        bias = getattr(head, "bias", None)
        return Unembedding(
            weight=head.weight.detach()[rows].float().cpu().numpy(),
            bias=None if bias is None else bias.detach()[rows].float().cpu().numpy(),
            softcap=float(softcap) if softcap else None,
        )
