"""The readout parameters a condition keeps in ``RUN/hidden.h5`` (its ``norm/`` and ``head/``
groups, laid out in ``landscape.store.hidden``): the norm that reads each layer (``--states
normed``, ``landscape.normed``) and the choice tokens' unembedding rows (the logit lens,
``landscape.readouts``), each written once, or the reason it is unavailable.
"""

from __future__ import annotations

import h5py
import numpy as np

from landscape.normed import NormParameters
from landscape.readouts import Unembedding
from landscape.store.layout import SchemaError, decode_attr
from landscape.store.run_file import get_condition

_NORM = "norm"
_HEAD = "head"


def write_norms(group: h5py.Group, params: NormParameters | str) -> None:
    """Record the norm that reads each layer of a condition (once), or why there is none."""
    node = _new_readout_node(group, _NORM, params)
    if node is not None and not isinstance(params, str):  # (a reason leaves no node)
        node.attrs["kind"] = params.kind
        node.create_dataset("weight", data=params.weight.astype(np.float32))
        node.create_dataset("eps", data=params.eps.astype(np.float64))
        if params.bias is not None:
            node.create_dataset("bias", data=params.bias.astype(np.float32))


def write_head(group: h5py.Group, head: Unembedding | str) -> None:
    """Record (once) the choice tokens' unembedding rows of a condition's model, or why the
    logit lens is unavailable for it; ``mark_head_unavailable`` replaces them with a reason."""
    node = _new_readout_node(group, _HEAD, head)
    if node is not None and not isinstance(head, str):  # (a reason leaves no node)
        node.create_dataset("weight", data=head.weight.astype(np.float32))
        if head.bias is not None:
            node.create_dataset("bias", data=head.bias.astype(np.float32))
        if head.softcap is not None:
            node.attrs["softcap"] = float(head.softcap)


def _new_readout_node(group: h5py.Group, name: str, value) -> h5py.Group | None:
    """The empty group to fill with ``value``'s arrays; None when it exists already (written
    once) or when ``value`` is the reason it cannot be (recorded as attr ``unavailable``)."""
    if name in group:
        return None
    node = group.create_group(name)
    if isinstance(value, str):
        node.attrs["unavailable"] = value
        return None
    return node


def mark_head_unavailable(group: h5py.Group, reason: str) -> None:
    if _HEAD in group:
        del group[_HEAD]
    _new_readout_node(group, _HEAD, reason)


def head_checked(group: h5py.Group) -> bool:
    """Whether the stored head was checked against the model's own logits (``icl``), or is unavailable."""
    return _HEAD in group and (bool(group[_HEAD].attrs.get("verified", False)) or "unavailable" in group[_HEAD].attrs)


def set_head_verified(group: h5py.Group, max_error: float) -> None:
    group[_HEAD].attrs["verified"] = True
    group[_HEAD].attrs["max_error"] = float(max_error)


def read_head(f: h5py.File, condition: str) -> Unembedding:
    """The choice tokens' head of a condition (``landscape.readouts``); SchemaError says why there is none."""
    node = _readout_node(f, condition, _HEAD, "the logit lens is")
    return Unembedding(
        weight=node["weight"][:],
        bias=node["bias"][:] if "bias" in node else None,
        softcap=float(node.attrs["softcap"]) if "softcap" in node.attrs else None,
    )


def read_norms(f: h5py.File, condition: str) -> NormParameters:
    """The norm parameters of a condition (``landscape.normed``); SchemaError says why there are none."""
    node = _readout_node(f, condition, _NORM, "normed states are")
    return NormParameters(
        kind=decode_attr(node.attrs["kind"]),
        weight=node["weight"][:],
        eps=node["eps"][:],
        bias=node["bias"][:] if "bias" in node else None,
    )


def _readout_node(f: h5py.File, condition: str, name: str, what: str) -> h5py.Group:
    """A condition's ``norm`` or ``head`` group, or a SchemaError saying why it cannot be used."""
    group = get_condition(f, condition)
    if name not in group:
        raise SchemaError(
            f"condition {condition!r} of {f.filename} has no {name} parameters (extracted before they were "
            "stored): run its `landscape extract` / `landscape finetune` again to add them"
        )
    node = group[name]
    if "unavailable" in node.attrs:
        raise SchemaError(f"{what} unavailable for {condition!r}: {decode_attr(node.attrs['unavailable'])}")
    return node
