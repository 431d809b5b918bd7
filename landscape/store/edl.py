"""The layout of the EDL records, a group of ``RUN/hidden.h5`` (``landscape finetune`` writes one
per fine-tune; the numbers are ``landscape.edl``'s)::

    /edl/<condition>/   attrs: labels (true|random), n_train, n_heldout, n_trainable, settings (JSON),
                               the totals of landscape.edl, each with <name>_low / <name>_high (95 %
                               bootstrap interval): edl_heldout_bits (the headline EDL), edl_train_bits,
                               edl_format_only_bits, gain_beyond_format_bits, mdl_bits,
                               format_only_mdl_bits; accuracy_gain (+ interval); final_bits,
                               heldout_residual_bits, format_only_heldout_residual_bits, base_bits,
                               uniform_bits, marginal_mdl_bits, marginal_entropy_bits, heldout_labels
        rows (n,) int64 row in /examples; id (n,) int64|str its task id (as /examples/id); label (n,)
        int8 the label trained on; order (n,) the prequential order; online_bits, final_bits,
        base_bits, marginal_online_bits,
        format_online_bits (n,) float64   -log2 p(label | prompt), K-way; format_params (K+1,)
        eval_rows (m,), eval_base_bits, eval_final_bits, eval_gain_bits (m,)   (true answers)
        heldout_final_bits, heldout_format_bits (m,)   the held-out residuals' per-row bits
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from landscape.store.hidden import check_version
from landscape.store.layout import SchemaError, decoded_attrs, read_array, write_group

_EDL = "edl"


def write_edl(f: h5py.File, condition: str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
    """(Re)write the EDL record of a fine-tuned condition."""
    write_group(f, f"{_EDL}/{condition}", arrays, attrs)


def edl_names(f: h5py.File) -> list[str]:
    check_version(f)
    if _EDL not in f:
        return []
    return [name for name, group in f[_EDL].items() if group.attrs.get("complete", False)]


def read_edl(f: h5py.File, condition: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, attrs) of the EDL record of a fine-tuned condition."""
    if condition not in edl_names(f):
        raise SchemaError(f"no EDL record for {condition!r} in {f.filename}: run `landscape finetune` first")
    group = f[_EDL][condition]
    return {name: read_array(group[name]) for name in group}, decoded_attrs(group)
