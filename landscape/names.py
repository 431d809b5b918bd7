"""Names of conditions and results: formatted and parsed here only.

Conditions (``/conditions/<name>`` in hidden.h5):

- ``<k>shot[<sampling suffix>]``: k demonstrations drawn by a sampling (``icl_condition``), e.g.
  ``0shot``, ``5shot``, ``5shot-resampled``;
- ``sft`` (true labels) or ``sft-random`` (shuffled labels): a fine-tune (``finetune_condition``);
  ``<base>-seed<k>``: the same fine-tune with another seed (``seed_condition``);
  ``<name>@step<k>``: a fine-tune's adapter kept at step k (``step_condition``).

Results (rows of analysis.h5 and metrics.csv): a condition's own name; ``a~b`` a pair of
conditions (``pair_name``); ``corr:<kind>:<condition>`` the correlations of a per-example target
with landscape features (``correlation_key``); ``seeds:<base>`` a seed-to-seed comparison
(``seeds_key``). A metric of a grouping is stored as ``<metric>[<grouping>]`` (``grouped``; brackets,
not a colon: ``<condition>:<feature>`` names correlation features, ``feature_name``).

Example:
    >>> icl_condition(5, "resampled"), seed_condition("sft", 2), step_condition("sft", 40)
    ('5shot-resampled', 'sft-seed2', 'sft@step40')
    >>> parse_seed("sft-seed2"), parse_seed("sft"), parse_step("sft-seed1@step40")
    (('sft', 2), None, ('sft-seed1', 40))
    >>> parse_result(pair_name("0shot", "sft")), parse_result(correlation_key(correlation_target("edl", "sft")))
    (('pair', ('0shot', 'sft')), ('correlation', 'edl:sft'))
    >>> grouped("ari", "subject"), split_grouped("ari[subject]"), split_grouped("id_2nn")
    ('ari[subject]', ('ari', 'subject'), ('id_2nn', ''))
"""

from __future__ import annotations

import re
from collections.abc import Iterable

ANSWER = "answer"  # the grouping every task has: the right choice

# ---------------------------------------------------------------- conditions

ZERO_SHOT = "0shot"  # the baseline every comparison is made against
# demo sampling -> the suffix of its conditions' names (extract.demos draws them)
SAMPLINGS = {"fixed": "", "resampled": "-resampled", "other-subject": "-othersubject", "no-header": "-noheader"}
FINETUNE_LABELS = {"true": "sft", "random": "sft-random"}  # --labels -> the default fine-tune name


def unknown(what: str, name: object, available: Iterable[object]) -> str:
    """The one-line message for a name that is not one of ``available``."""
    return f"unknown {what} {name!r}; available: {', '.join(map(str, available)) or 'none'}"


def icl_condition(shots: int, sampling: str = "fixed") -> str:
    if sampling not in SAMPLINGS:
        raise ValueError(unknown("demo sampling", sampling, SAMPLINGS))
    return f"{shots}shot{SAMPLINGS[sampling]}"


def finetune_condition(labels: str) -> str:
    """The default name of a fine-tune on ``labels`` (true | random)."""
    if labels not in FINETUNE_LABELS:
        raise ValueError(unknown("labels", labels, FINETUNE_LABELS))
    return FINETUNE_LABELS[labels]


def seed_condition(base: str, seed: int) -> str:
    """The fine-tune of ``base`` with ``seed`` (seed 0 keeps the base name)."""
    return base if seed == 0 else f"{base}-seed{seed}"


def parse_seed(name: str) -> tuple[str, int] | None:
    """(base, seed) of ``<base>-seed<k>``, else None."""
    match = re.fullmatch(r"(.+)-seed(\d+)", name)
    return (match[1], int(match[2])) if match else None


def step_condition(name: str, step: int | str) -> str:
    """The condition of fine-tune ``name``'s adapter kept at ``step`` (a placeholder such as
    ``"<k>"`` spells the pattern in help text)."""
    return f"{name}@step{step}"


def parse_step(name: str) -> tuple[str, int] | None:
    """(fine-tune, step) of ``<name>@step<k>``, else None."""
    match = re.fullmatch(r"(.+)@step(\d+)", name)
    return (match[1], int(match[2])) if match else None


def is_checkpoint_of(name: str, finetune: str) -> bool:
    """Whether ``name`` is ``finetune`` itself or one of its kept steps."""
    return name == finetune or (parse_step(name) or ("", 0))[0] == finetune


# ---------------------------------------------------------------- results

_PAIR = "~"
_CORRELATION = "corr:"
_SEEDS = "seeds:"


def pair_name(a: str, b: str) -> str:
    """The pair of conditions (a, b) in analysis.h5 and metrics.csv."""
    return f"{a}{_PAIR}{b}"


def split_pair(name: str) -> tuple[str, str] | None:
    a, sep, b = name.partition(_PAIR)
    return (a, b) if sep else None


def correlation_target(kind: str, condition: str) -> str:
    """A per-example target of the correlations: ``edl:<fine-tune>``, ``gain:<fine-tune>``."""
    return f"{kind}:{condition}"


def target_condition(target: str) -> str:
    """The fine-tune a correlation target is computed from."""
    return target.split(":", 1)[-1]


def correlation_key(target: str) -> str:
    """The result name of the correlations with ``target`` (metrics.csv's condition column)."""
    return _CORRELATION + target


def seeds_key(base: str) -> str:
    """The result name of the seed-to-seed comparison of ``base``'s fine-tunes."""
    return _SEEDS + base


def parse_result(name: str) -> tuple[str, str | tuple[str, str]]:
    """(kind, what) of a result name: ('condition', name), ('pair', (a, b)), ('correlation',
    target) or ('seeds', base)."""
    if name.startswith(_CORRELATION):
        return "correlation", name[len(_CORRELATION) :]
    if name.startswith(_SEEDS):
        return "seeds", name[len(_SEEDS) :]
    pair = split_pair(name)
    return ("pair", pair) if pair else ("condition", name)


def feature_name(condition: str, feature: str) -> str:
    """A landscape feature of a condition, as the correlations name it: ``0shot:core_rho``."""
    return f"{condition}:{feature}"


def versus_layer(layer: int) -> str:
    """The grouping of a layer x layer similarity: which layer the row's layer is compared with."""
    return f"layer:{layer}"


def grouped(metric: str, grouping: str) -> str:
    return f"{metric}[{grouping}]"


def split_grouped(name: str) -> tuple[str, str]:
    """(metric, grouping) of a stored metric name; grouping '' when it has none."""
    if name.endswith("]") and "[" in name:
        metric, _, grouping = name[:-1].partition("[")
        return metric, grouping
    return name, ""
