"""How the states of a condition are kept on disk (``--store-dtype``): float32, float16, or
bfloat16 as its uint16 bits (HDF5 has no bfloat16). Whatever is stored is read back as float32.

Example:
    >>> import numpy as np
    >>> x = np.array([1.0, 1.00390625, -2.5], dtype=np.float32)
    >>> decode_states(encode_states(x, "bfloat16"), "bfloat16")  # 8 bits of mantissa: round to even
    array([ 1. ,  1. , -2.5], dtype=float32)
    >>> storage_dtype("bfloat16"), storage_dtype("float16")
    (dtype('uint16'), dtype('float16'))
"""

from __future__ import annotations

import numpy as np

STORE_DTYPES = ("float32", "float16", "bfloat16")


def storage_dtype(encoding: str) -> np.dtype:
    """The HDF5 dtype of states stored as ``encoding`` (``STORE_DTYPES``; bfloat16: its uint16 bits)."""
    return np.dtype(np.uint16 if encoding == "bfloat16" else encoding)


def encode_states(values: np.ndarray, encoding: str) -> np.ndarray:
    """States as ``encoding`` stores them (``storage_dtype``)."""
    if encoding == "bfloat16":  # round to nearest even, as torch does
        import torch

        return (
            torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
            .to(torch.bfloat16)
            .view(torch.int16)
            .numpy()
            .view(np.uint16)
        )
    return np.asarray(values, dtype=storage_dtype(encoding))


def decode_states(values: np.ndarray, encoding: str) -> np.ndarray:
    """float32 states from stored values (``encode_states`` undone)."""
    if encoding == "bfloat16":
        return (values.astype(np.uint32) << 16).view(np.float32)
    return np.asarray(values, dtype=np.float32)
