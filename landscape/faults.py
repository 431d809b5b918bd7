"""Deterministic crash points for the interruption tests: a real SIGKILL at a named place.

``LANDSCAPE_FAULT=<point>:<n>`` kills this process with SIGKILL the n-th time it reaches
``reached(<point>)`` (n = 1 is the first time). Unset, ``reached`` costs one dict lookup.
Points: ``extract.batch`` (after a batch is written and flushed), ``rows.before_done`` (states
written, done flags not yet), ``analyze.result`` (after a result group), ``group.before_complete``
(arrays written, completion flag not yet), ``finetune.step`` (after an optimizer step).
"""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def reached(point: str) -> None:
    spec = os.environ.get("LANDSCAPE_FAULT")
    if not spec:
        return
    name, _, times = spec.rpartition(":")
    if name != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] == int(times):
        os.kill(os.getpid(), signal.SIGKILL)
