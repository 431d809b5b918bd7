"""Which layers a condition keeps (``landscape extract --layers``): all of them (the default), a
list (``0,4,8``; negative numbers count from the end), a stride (``every:4``: 0, 4, 8, ...) or the
last few (``last:8``). Layer 0 is the embeddings, layer L the last block's output; the last layer
is always kept, because the logit lens is checked on it against the model's own logits. A
70B-class model's 81 layers x 9,181 rows x 8,192 floats are 24 GB a condition; ``every:4``
keeps a quarter of that and the analysis and report work on whatever a run holds.

Example:
    >>> select_layers(None, 5), select_layers("0,2", 5), select_layers("-2", 5)
    ([0, 1, 2, 3, 4], [0, 2, 4], [3, 4])
    >>> select_layers("every:10", 31), select_layers("last:3", 31)
    ([0, 10, 20, 30], [28, 29, 30])
"""

from __future__ import annotations

import re

SPEC_FORMS = "all, a comma list (0,4,8; negative from the end), every:K or last:K"


def check_spec(spec: str | None) -> str | None:
    """``spec`` if it is well formed (``SPEC_FORMS``), else a ValueError saying what is allowed."""
    if spec is None or spec == "all":
        return None
    if re.fullmatch(r"(every|last):[1-9]\d*", spec) or re.fullmatch(r"-?\d+(,-?\d+)*", spec.replace(" ", "")):
        return spec.replace(" ", "")
    raise ValueError(f"bad layers {spec!r}: use {SPEC_FORMS}")


def select_layers(spec: str | None, n_states: int) -> list[int]:
    """The layers (of 0 .. n_states - 1) that ``spec`` keeps, sorted, the last one always among them."""
    spec = check_spec(spec)
    if spec is None:
        return list(range(n_states))
    kind, _, count = spec.partition(":")
    if kind == "every":
        chosen = set(range(0, n_states, int(count)))
    elif kind == "last":
        chosen = set(range(max(0, n_states - int(count)), n_states))
    else:
        chosen = set()
        for part in spec.split(","):
            layer = int(part)
            if not -n_states <= layer < n_states:
                raise ValueError(f"layer {layer} out of range: the model has layers 0..{n_states - 1}")
            chosen.add(layer % n_states)
    return sorted(chosen | {n_states - 1})
