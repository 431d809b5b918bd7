"""Task complexity (arXiv 2602.15829): description length in bits against accuracy, per strategy.

The complexity of a task at a target score is the length of the shortest program that reaches
it; each adaptation strategy gives an upper bound, a point (bits, accuracy):

- ICL: the k demonstrations coded by the model itself (their arithmetic-code length), summed over
  the groups' prompts, against the k-shot accuracy; 0 shots is the baseline at 0 bits;
- LoRA: trainable parameters x bits per parameter, against the fine-tuned accuracy;
- data: the prequential code of the first n training labels (what a receiver needs to retrain
  the model from the data), against the accuracy of the model trained on those n.

The Pareto front over all points is the estimate; ``smallest_bits`` reads it at a target.

Example:
    >>> points = [Point("icl", "0shot", 0.0, 0.25), Point("icl", "5shot", 900.0, 0.30), Point("lora", "sft", 3e8, 0.28)]
    >>> [p.label for p, keep in zip(points, pareto_front(points)) if keep]
    ['0shot', '5shot']
    >>> smallest_bits(points, 0.29)
    900.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from landscape.names import is_checkpoint_of, parse_step

BITS_PER_PARAMETER = 16.0  # a LoRA weight written out as it is trained and stored: bfloat16


@dataclass(frozen=True)
class Point:
    strategy: str  # icl | lora | data
    label: str  # the condition it comes from
    bits: float
    accuracy: float


def icl_points(conditions: dict[str, dict[str, Any]]) -> list[Point]:
    """Fixed-demo ICL conditions with their demos' code length (``demo_bits_total`` attr)."""
    points = []
    for name, attrs in conditions.items():
        if attrs.get("kind") == "icl" and attrs.get("demo_sampling", "fixed") == "fixed" and "demo_bits_total" in attrs:
            points.append(Point("icl", name, float(attrs["demo_bits_total"]), float(attrs["accuracy"])))
    return sorted(points, key=lambda p: p.bits)


def lora_points(
    conditions: dict[str, dict[str, Any]], edl: dict[str, dict[str, Any]], bits_per_parameter: float
) -> list[Point]:
    """Each fine-tune (and each of its checkpoints): its trainable parameters written out in full."""
    points = []
    for name, attrs in edl.items():
        bits = float(attrs["n_trainable"]) * bits_per_parameter
        for condition, cattrs in conditions.items():
            if is_checkpoint_of(condition, name) and "accuracy" in cattrs:
                points.append(Point("lora", condition, bits, float(cattrs["accuracy"])))
    return points


def data_points(
    conditions: dict[str, dict[str, Any]], edl: dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]]
) -> list[Point]:
    """Prequential bits of the first n training labels vs the model after training on them.

    A checkpoint at step s within the first epoch has seen n = s x batch size labels; the final
    model has seen all of them (for every epoch), coded by the whole online code."""
    points = []
    for name, (arrays, attrs) in edl.items():
        if attrs.get("labels") != "true":
            continue
        online = np.asarray(arrays["online_bits"])[np.asarray(arrays["order"])]
        batch = int(attrs["settings"]["batch_size"])
        for condition, cattrs in conditions.items():
            fine_tune, step = parse_step(condition) or ("", 0)
            if fine_tune == name and "accuracy" in cattrs and step * batch <= len(online):
                n = step * batch
                points.append(Point("data", f"{condition} (n={n})", float(online[:n].sum()), float(cattrs["accuracy"])))
        if name in conditions and "accuracy" in conditions[name]:
            points.append(
                Point("data", f"{name} (n={len(online)})", float(online.sum()), float(conditions[name]["accuracy"]))
            )
    return points


def pareto_front(points: list[Point]) -> np.ndarray:
    """(P,) bool: points no other point beats with fewer (or equal) bits and higher accuracy."""
    order = sorted(range(len(points)), key=lambda i: (points[i].bits, -points[i].accuracy))
    keep = np.zeros(len(points), dtype=bool)
    best = -np.inf
    for i in order:
        if points[i].accuracy > best:
            keep[i] = True
            best = points[i].accuracy
    return keep


def smallest_bits(points: list[Point], target: float) -> float:
    """The fewest bits of any point reaching ``target`` accuracy (inf when none does)."""
    reaching = [p.bits for p in points if p.accuracy >= target]
    return float(min(reaching)) if reaching else float("inf")
