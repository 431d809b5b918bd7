"""Where, and in what precision, the suite computes: the one place that chooses.

- ``pick_device``: ``auto`` is cuda when present, else cpu, unless the process was given a
  device of its own (a rank of ``accelerate launch``); anything else as torch reads it.
- ``pick_dtype``: the model's weights; ``auto`` is bfloat16 on cuda, float32 on cpu.
(How hidden.h5 keeps the states is a separate choice: ``landscape.store.encoding``.)

Example:
    >>> import torch
    >>> pick_device("cpu"), pick_device("auto", given=torch.device("cpu"))
    (device(type='cpu'), device(type='cpu'))
    >>> pick_dtype("auto", torch.device("cpu")), pick_dtype("auto", torch.device("cuda")), pick_dtype("float16", torch.device("cpu"))
    (torch.float32, torch.bfloat16, torch.float16)
"""

from __future__ import annotations

import torch

from landscape.names import unknown

MODEL_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(device: str | torch.device | None = None, *, given: torch.device | None = None) -> torch.device:
    """``auto`` (or None): ``given`` if any, else cuda when present, else cpu; anything else as torch reads it."""
    if device is None or device == "auto":
        if given is not None:
            return given
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """The dtype a model is loaded in: ``auto`` (bfloat16 on cuda, float32 on cpu) or one of ``MODEL_DTYPES``."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in MODEL_DTYPES:
        raise ValueError(unknown("dtype", name, ["auto", *MODEL_DTYPES]))
    return MODEL_DTYPES[name]
