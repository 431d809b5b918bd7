"""The normalised state of Doimo et al. 2024, computed from the stored residual stream.

The paper analyses, at every layer, the state *after* the norm that the next block applies to it
(each block's ``input_layernorm``, gain included; the model's final norm for the last layer).
hidden.h5 stores the residual stream ``h_l`` (layer 0 the embeddings, layer l block l's output)
and, per condition, the parameters of the norm that reads each layer:
``weight (L+1, d)``, ``bias`` (LayerNorm only), ``eps (L+1,)`` and the norm's ``kind``:

- ``rms``:        ``w * x / sqrt(mean(x^2) + eps)``  (Llama, SmolLM2, Mistral, Qwen, Phi-3)
- ``rms_offset``: ``(1 + w) * x / sqrt(mean(x^2) + eps)``  (Gemma 1-3)
- ``layer``:      ``w * (x - mean(x)) / sqrt(var(x) + eps) + b``  (GPT-2, GPT-NeoX, OPT)

So one float32 copy of the states serves both ``--states residual`` and ``--states normed``.
Computed in float64 and returned as float32: equal to the model's own float32 norm output to
float tolerance (tested on the tiny model, SmolLM2 and Gemma-3).

Example:
    >>> import numpy as np
    >>> X = np.array([[3.0, 4.0]], dtype=np.float32)
    >>> np.round(apply_norm(X, np.array([1.0, 2.0]), None, 0.0, "rms").astype(float), 4).tolist()
    [[0.8485, 2.2627]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NORM_KINDS = ("rms", "rms_offset", "layer")
STATES = ("residual", "normed")  # what the analysis measures (AnalysisConfig.states)


@dataclass(frozen=True)
class NormParameters:
    """The norm that reads each stored layer: row l of each array belongs to layer l."""

    kind: str
    weight: np.ndarray  # (L+1, d)
    eps: np.ndarray  # (L+1,)
    bias: np.ndarray | None = None  # (L+1, d), LayerNorm only

    def __post_init__(self) -> None:
        if self.kind not in NORM_KINDS:
            raise ValueError(f"unknown norm kind {self.kind!r}; known: {', '.join(NORM_KINDS)}")
        if self.weight.ndim != 2 or self.eps.shape != (len(self.weight),):
            raise ValueError(f"norm weight {self.weight.shape} and eps {self.eps.shape} do not match")
        if (self.bias is None) != (self.kind != "layer"):
            raise ValueError("a bias belongs to LayerNorm (kind 'layer') and only to it")

    def layer(self, index: int) -> tuple[np.ndarray, np.ndarray | None, float]:
        """(weight (d,), bias (d,) or None, eps) of the norm reading layer ``index``."""
        return self.weight[index], None if self.bias is None else self.bias[index], float(self.eps[index])


def apply_norm(X: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, eps: float, kind: str) -> np.ndarray:
    """(N, d) float32: the norm of ``kind`` applied to each row of ``X`` (N, d)."""
    x = np.asarray(X, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    if kind == "layer":
        centred = x - x.mean(axis=1, keepdims=True)
        out = centred / np.sqrt((centred**2).mean(axis=1, keepdims=True) + eps) * w + np.asarray(bias, dtype=np.float64)
    elif kind in ("rms", "rms_offset"):
        gain = 1.0 + w if kind == "rms_offset" else w
        out = x / np.sqrt((x**2).mean(axis=1, keepdims=True) + eps) * gain
    else:
        raise ValueError(f"unknown norm kind {kind!r}; known: {', '.join(NORM_KINDS)}")
    return out.astype(np.float32)
