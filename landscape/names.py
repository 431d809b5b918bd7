"""Names of results that carry a grouping: ``ari[subject]``, ``label_overlap[answer]`` (formatted
and parsed here only). A task's grouping fields and the answer are analysed alike; a metric of a
grouping is stored as ``<metric>[<grouping>]`` in analysis.h5 and split into the ``metric`` and
``grouping`` columns of metrics.csv. (Brackets, not a colon: correlation features are named
``<condition>:<feature>`` already.)

Example:
    >>> grouped("ari", "subject")
    'ari[subject]'
    >>> split_grouped("ari[subject]"), split_grouped("id_2nn"), split_grouped("0shot:core_rho")
    (('ari', 'subject'), ('id_2nn', ''), ('0shot:core_rho', ''))
"""

from __future__ import annotations

ANSWER = "answer"  # the grouping every task has: the right choice


def grouped(metric: str, grouping: str) -> str:
    return f"{metric}[{grouping}]"


def split_grouped(name: str) -> tuple[str, str]:
    """(metric, grouping) of a stored metric name; grouping '' when it has none."""
    if name.endswith("]") and "[" in name:
        metric, _, grouping = name[:-1].partition("[")
        return metric, grouping
    return name, ""
