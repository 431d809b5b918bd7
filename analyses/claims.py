"""The claims of Doimo et al. 2024 and of the EDL paper as computations on one analysed run, each
with a 95 % interval and a verdict (``landscape claims RUN`` -> ``RUN/claims.csv``).

Every threshold below was fixed in code, and written in docs/replication.md, before any run was
looked at (the boundaries since made to agree with the docs); ``landscape.claims`` has the verdict
rule (*holds*: the whole interval lies in the claim's region; *fails*: no point of it does;
*cannot tell*: it straddles the edge, more than 5 % of its draws are undefined, or the run lacks
what the claim needs, which the note says).

Depth is relative: layer / last layer (the model's number of blocks; layer 0 never enters). The
first half is (0, 0.5], the second (0.5, 1]. "Subject" is the task's first grouping field.
Intervals come from one bootstrap of the eval rows shared by every row-level statistic (clusters
and neighbours as the analysis found them, rows drawn again: accuracies, ARIs, per-row data and
label overlaps), from the ID estimator's own errors (the ID peak) and from the EDL record's
interval (EDL); every draw follows ``seed``. The run is read by ``analyses.run_view``.

Example (a planted run: 5-shot clusters by subject in the first half, 0-shot never)::

    >>> import numpy as np
    >>> view = planted_view(n_per_class=40, layers=8, seed=0)
    >>> result = {c.key: c for c in evaluate_claims(view)}
    >>> result["icl.subject_early"].verdict, result["icl.subject_early_resampled"].verdict
    ('holds', 'cannot tell')
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from analyses.run_view import RunView, planted_view, read_run  # noqa: F401  (read_run, planted_view: the claims' callers read runs here)
from landscape import claims as cl
from landscape import names
from landscape.atomic import replace_atomically
from landscape.names import ANSWER, ZERO_SHOT
from landscape.nulls import class_weighted_mean

CLAIMS_FILE = "claims.csv"

# ---------------------------------------------------------------- thresholds (fixed before looking)

FIRST_HALF, SECOND_HALF = (0.0, 0.5), (0.5, 1.0)
MIDDLE_THIRD = (1 / 3, 2 / 3)
ARI_MARGIN = 0.05  # an ARI or label-overlap difference smaller than this is no organisation worth the name
ACCURACY_MARGIN = 0.02  # 5-shot may lose at most 2 points and still be "at least" 0-shot
SHARP_DROP = 0.2  # the subject ARI must fall by at least this much ...
# ... within this share of the depth (the paper: ~0.8 within ~3 of 32 layers; at least one analysed step)
DROP_WINDOW = 0.1
PEAK_DISTANCE = 0.15  # the ID peak "near" the transition: within this relative depth
OVERLAP_FALL = 0.1  # "agree early, diverge late": the data overlap falls by at least this much
RANDOM_GAIN_MARGIN = 0.02  # bits per training label that random labels may gain beyond format and "teach nothing"
MIN_ROWS_PER_CLASS = 10  # fewer eval rows in a subject or answer class: too few rows to tell
MIN_LAYERS_PER_HALF = 2
MIN_DEFINED_DRAWS = 0.95  # a claim whose statistic is undefined in more than 5 % of the draws cannot be told


@dataclass(frozen=True)
class Claim:
    key: str
    statement: str
    statistic: str
    paper: str  # what the paper reported
    value: float = float("nan")
    low: float = float("nan")
    high: float = float("nan")
    region: cl.Region = field(default_factory=cl.Region)
    verdict: str = cl.CANNOT_TELL
    note: str = ""


# ---------------------------------------------------------------- the claims


def evaluate_claims(view: RunView, *, n_boot: int = cl.N_BOOT, seed: int = 0) -> list[Claim]:
    """Every claim on ``view``, in the order of docs/replication.md."""
    counts = cl.row_counts(view.n_rows, n_boot, seed)
    sub, icl, resampled, sft, random = (
        view.grouping,
        names.icl_condition(5),
        names.icl_condition(5, "resampled"),
        names.finetune_condition("true"),
        names.finetune_condition("random"),
    )
    out = [
        _accuracy(
            view,
            counts,
            "accuracy.icl",
            icl,
            "5-shot accuracy is at least 0-shot's",
            cl.Region(above=-ACCURACY_MARGIN),
            "5-shot gains over 0-shot",
        ),
        _accuracy(
            view,
            counts,
            "accuracy.sft",
            sft,
            "fine-tuned accuracy is above 0-shot's",
            cl.Region(above=0.0),
            "fine-tuning gains most",
        ),
        _half_difference(
            view,
            counts,
            "icl.subject_early",
            icl,
            ZERO_SHOT,
            sub,
            FIRST_HALF,
            "ICL gathers questions by subject in the first half",
            "5-shot subject ARI about 0.85 in layers 3-7 of 32, 0-shot at most about 0.25",
        ),
        _half_difference(
            view,
            counts,
            "icl.subject_early_resampled",
            resampled,
            ZERO_SHOT,
            sub,
            FIRST_HALF,
            "... also when each question has its own demos (not the shared prefix)",
            "not tested in the paper (every question of a subject shares its demos)",
        ),
        _half_difference(
            view,
            counts,
            "icl.vs_sft_early",
            icl,
            sft,
            sub,
            FIRST_HALF,
            "in the first half ICL's landscape is semantic, SFT's mixed",
            "fine-tuned subject ARI stays low where 5-shot's is high",
        ),
        *_transition(view, counts, icl, sub, seed=seed),
        _half_difference(
            view,
            counts,
            "sft.answer_ari_vs_0shot",
            sft,
            ZERO_SHOT,
            ANSWER,
            SECOND_HALF,
            "in the second half the fine-tune's clusters follow the answer more than 0-shot's",
            "answer ARI near 0 before the transition, higher after it for the fine-tune",
        ),
        _half_difference(
            view,
            counts,
            "sft.answer_ari_vs_icl",
            sft,
            icl,
            ANSWER,
            SECOND_HALF,
            "... and more than 5-shot's",
            "ICL's late landscape has less defined peaks",
        ),
        _overlap_difference(
            view,
            counts,
            "sft.answer_overlap_vs_0shot",
            sft,
            ZERO_SHOT,
            "in the second half the fine-tune's neighbours share the answer more than 0-shot's",
            "answer label overlap 0.25 -> 0.87-0.90 from layer 17 of 32 (fine-tuned)",
        ),
        _overlap_difference(
            view,
            counts,
            "sft.answer_overlap_vs_icl",
            sft,
            icl,
            "... and more than 5-shot's",
            "fine-tuned above 5-shot in the second half",
        ),
        _overlap_fall(
            view,
            counts,
            "sft.base_early_apart_late",
            (ZERO_SHOT, sft),
            "the fine-tune keeps the base model's neighbourhoods early and changes them late",
            "overlap of fine-tuned and base neighbourhoods high before the transition, low after",
        ),
        _overlap_fall(
            view,
            counts,
            "icl_sft.agree_early_diverge_late",
            (icl, sft),
            "ICL and the fine-tune agree in the first half and diverge in the second",
            "both undergo a sharp transition in the middle; their late landscapes differ",
        ),
        _edl_gain(
            view,
            "edl.true_gain",
            sft,
            cl.Region(above=0.0),
            "fine-tuning on true labels teaches beyond format",
            "EDL > 0 for learnable labels",
        ),
        _edl_gain(
            view,
            "edl.random_gain",
            random,
            cl.Region(below=RANDOM_GAIN_MARGIN),
            "random labels teach nothing beyond format",
            "random labels give EDL near 0",
        ),
    ]
    return [_shared_prefix_caveat(view, claim, resampled) for claim in out]


def _shared_prefix_caveat(view: RunView, claim: Claim, resampled: str) -> Claim:
    """A holds that the missing control could overturn says so: with fixed demos every question of
    a subject shares its demos, and the suite's four-model replication (docs/replication.md) finds
    most of the early subject structure to be that shared prefix."""
    if claim.key != "icl.subject_early" or claim.verdict != cl.HOLDS or resampled in view.clusters:
        return claim
    caveat = (
        "without 5shot-resampled this may be the demos every question of a subject shares, not the subject: "
        "extract the control with --demos fixed,resampled, analyse again, see icl.subject_early_resampled"
    )
    return replace(claim, note=f"{claim.note}; {caveat}" if claim.note else caveat)


def _missing(view: RunView, *conditions: str, layers: bool = True) -> str:
    have = view.clusters if layers else view.correct
    absent = [c for c in conditions if c not in have]
    return f"no {', '.join(absent)}" if absent else ""


def _too_few_rows(view: RunView, grouping: str) -> str:
    sizes = np.unique(view.labels[grouping], return_counts=True)[1]
    return (
        f"too few rows: {sizes.min()} eval rows in the smallest {grouping} class (< {MIN_ROWS_PER_CLASS})"
        if sizes.min() < MIN_ROWS_PER_CLASS
        else ""
    )


def _decide(
    claim: Claim,
    value: float,
    draws: np.ndarray,
    note: str = "",
    resolution: float = 0.0,
    within: tuple[float, float] = (-np.inf, np.inf),
) -> Claim:
    """The claim's value, its percentile interval and verdict; the note says how many draws were
    undefined (NaN), and more than 5 % of them undefined cannot be told. ``resolution``: how
    finely the statistic can be known at all (a depth between two analysed layers), added to each
    end of the interval, which stays ``within`` the statistic's range (a depth in [0, 1], a
    distance at least 0)."""
    draws = np.asarray(draws, dtype=float)
    defined = int(np.isfinite(draws).sum())
    low, high = cl.percentile_interval(draws)
    low, high = max(within[0], low - resolution), min(within[1], high + resolution)
    decided = cl.verdict(low, high, claim.region)
    if defined < len(draws):
        note = (
            f"{note}; {defined} of {len(draws)} draws defined" if note else f"{defined} of {len(draws)} draws defined"
        )
        if defined < MIN_DEFINED_DRAWS * len(draws):
            decided = cl.CANNOT_TELL
    if not np.isfinite(value):
        decided = cl.CANNOT_TELL
    return replace(claim, value=float(value), low=low, high=high, verdict=decided, note=note)


def _accuracy(view, counts, key, condition, statement, region, paper) -> Claim:
    claim = Claim(key, statement, f"accuracy({condition}) - accuracy(0shot), eval rows", paper, region=region)
    missing = _missing(view, ZERO_SHOT, condition, layers=False)
    if missing:
        return replace(claim, note=missing)
    diff = cl.weighted_mean(view.correct[condition].astype(float) - view.correct[ZERO_SHOT], counts)
    return _decide(claim, diff[0], diff[1:])


def _layers_in(view: RunView, span: tuple[float, float], *conditions: str) -> np.ndarray:
    common = set.intersection(*(set(view.clusters[c]) for c in conditions))
    layers = np.array(sorted(common), dtype=int)
    return layers[cl.span_mask(layers, view.last_layer, *span)] if len(layers) else layers


def _ari_profile(view: RunView, condition: str, grouping: str, layers: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(B + 1, L) ARI of the condition's clusters with ``grouping`` at ``layers``, per draw."""
    labels = view.labels[grouping]
    return np.stack([cl.weighted_ari(view.clusters[condition][layer], labels, counts) for layer in layers], axis=1)


def _half_difference(view, counts, key, a, b, grouping, span, statement, paper) -> Claim:
    half = "first" if span == FIRST_HALF else "second"
    claim = Claim(
        key,
        statement,
        f"mean over the {half} half of ARI[{grouping}] of {a} - of {b}",
        paper,
        region=cl.Region(above=ARI_MARGIN),
    )
    missing = _missing(view, a, b) or _too_few_rows(view, grouping)
    if missing:
        return replace(claim, note=missing)
    layers = _layers_in(view, span, a, b)
    if len(layers) < MIN_LAYERS_PER_HALF:
        return replace(claim, note=f"{len(layers)} analysed layers in the {half} half")
    profiles = {c: _ari_profile(view, c, grouping, layers, counts) for c in (a, b)}
    diff = (profiles[a] - profiles[b]).mean(axis=1)
    note = f"layers {layers.min()}-{layers.max()}" + _within_chance(
        view, "ari", grouping, layers, {c: p[0].mean() for c, p in profiles.items()}
    )
    return _decide(claim, diff[0], diff[1:], note=note)


def _within_chance(
    view: RunView, metric: str, grouping: str | None, layers: np.ndarray, means: dict[str, float]
) -> str:
    """Each side's mean over ``layers`` beside its chance level there (the mean of its permutation
    null's 95 % high end: analyses.layer), and "both within chance" when neither is above it.
    Nothing when a null was not measured (runs analysed before the nulls existed)."""
    key = names.grouped(f"{metric}_null_high", grouping) if grouping else f"{metric}_null_high"
    levels = {}
    for condition in means:
        highs = [_scalars_of(view, condition, int(layer)).get(key, np.nan) for layer in layers]
        if not np.isfinite(highs).all():
            return ""
        levels[condition] = float(np.mean(highs))
    said = ", ".join(f"{c} {means[c]:.3f} (chance <= {levels[c]:.3f})" for c in means)
    inside = all(means[c] <= levels[c] for c in means)
    return f"; {said}" + ("; both within chance (permutation null)" if inside else "")


def _scalars_of(view: RunView, condition: str, layer: int) -> dict[str, float]:
    return view.scalars.get(condition, {}).get(layer, {})


def _transition(view: RunView, counts: np.ndarray, condition: str, grouping: str, *, seed: int = 0) -> list[Claim]:
    """The sharpest fall of the 5-shot subject ARI within a tenth of the depth: large enough, in
    the middle third, near the ID peak.

    The fall's size: the data's largest fall over any span of layers at most ``DROP_WINDOW`` of
    the depth apart (one analysed step where the layers lie further apart); its interval is that
    span's fall in each draw of the rows (the span the data chose, so the interval is of the fall
    where it is, and contains the value). Its place: the fall-weighted mean depth of the span's
    steps (``landscape.claims.fall_place``: a cliff at its step, no tie rule), in each draw at the
    draw's own sharpest span. A fall between two analysed layers happened somewhere between them:
    the place, and its distance to the ID peak, are known only to half the step each way, which
    widens both intervals (a cliff from layer 9 to 10 of 30 is placed at 0.317 with an interval of
    at least [0.300, 0.333]: no verdict rests on the convention that puts a step at its middle).
    The clusters are held as the analysis found them: the intervals show how the questions move
    the fall, not how ADP would cluster other questions, and a fall between layers with identical
    partitions in every draw has an interval that is only the step (the note says so)."""
    sharp = Claim(
        "transition.sharp",
        "the subject structure of 5-shot falls sharply somewhere",
        f"largest fall of ARI[{grouping}] of {condition} within {DROP_WINDOW:g} of the depth",
        "subject ARI collapses around layer 17 of 32 (a sharp transition)",
        region=cl.Region(above=SHARP_DROP),
    )
    middle = Claim(
        "transition.middle",
        "... in the middle third of the depth",
        "relative depth of that fall (its steps' depths weighted by how much each falls)",
        "layers 14-17 of 32 (0.44-0.53)",
        region=cl.Region(*MIDDLE_THIRD),
    )
    peak = Claim(
        "transition.id_peak",
        "the ID profile of 5-shot peaks near the transition",
        f"|depth of the ID peak ({condition}) - depth of the fall|",
        "GRIDE ID peaks around layers 14-16 of 32",
        region=cl.Region(below=PEAK_DISTANCE),
    )
    missing = _missing(view, condition) or _too_few_rows(view, grouping)
    if missing:
        return [replace(c, note=missing) for c in (sharp, middle, peak)]
    layers = np.array(sorted(layer for layer in view.clusters[condition] if layer > 0), dtype=int)  # 0: no geometry
    if len(layers) < 3:
        return [replace(c, note=f"{len(layers)} analysed layers") for c in (sharp, middle, peak)]
    depths = layers / view.last_layer
    spans = cl.fall_spans(depths, DROP_WINDOW)
    profiles = _ari_profile(view, condition, grouping, layers, counts)
    best, _ = cl.sharpest_falls(profiles, spans)
    start, end = spans[best[0]]
    fall = profiles[:, start] - profiles[:, end]
    place = cl.fall_place(profiles, layers.astype(float), spans[best, 0], spans[best, 1]) / view.last_layer
    where = f"from layer {layers[start]} to {layers[end]}"
    half_step = float(depths[end] - depths[start]) / (end - start) / 2  # the place is known to its step
    sharp = _decide(sharp, fall[0], fall[1:], note=where + _point_note(fall[1:]))
    placed = _decide(
        middle,
        place[0],
        place[1:],
        note=f"{where}; placed to ±{half_step:.3f} (half a step)" + _point_note(place[1:]),
        resolution=half_step,
        within=(0.0, 1.0),
    )
    out = [sharp, _given(sharp, placed)]
    ids = np.array([view.ids[condition].get(int(layer), (np.nan, np.nan)) for layer in layers])
    if not np.isfinite(ids[:, 0]).any():
        return [*out, replace(peak, note=f"no ID profile of {condition}")]
    # The peak's uncertainty from the estimator's own errors: each draw perturbs every layer's ID.
    # A layer whose error is unknown takes the largest known one (not 0, which would narrow the interval).
    errors = ids[:, 1].copy()
    unknown = ~np.isfinite(errors) & np.isfinite(ids[:, 0])
    known = errors[np.isfinite(errors)]
    errors[unknown] = known.max() if len(known) else np.nan
    rng = np.random.default_rng([seed, 1])
    profiles_id = np.vstack([ids[:, 0], ids[:, 0] + rng.standard_normal((len(counts) - 1, len(layers))) * errors])
    finite = np.isfinite(profiles_id)
    peaks = np.where(finite.any(axis=1), depths[np.argmax(np.where(finite, profiles_id, -np.inf), axis=1)], np.nan)
    distance = np.abs(peaks - place)
    note = f"ID peak at layer {round(peaks[0] * view.last_layer)}"
    if unknown.any():
        note += (
            f"; {int(unknown.sum())} layers without a GRIDE error take the largest ({known.max():.3g})"
            if len(known)
            else ""
        )
    return [
        *out,
        _given(sharp, _decide(peak, distance[0], distance[1:], note=note, resolution=half_step, within=(0.0, 1.0))),
    ]


def _point_note(draws: np.ndarray) -> str:
    """Say when every draw gave the same value: the interval is a point because the clusters are
    held fixed (the same partitions either side of the fall), not because the place is known."""
    finite = draws[np.isfinite(draws)]
    return (
        "; the same in every draw (clusters held fixed: the interval leaves out ADP's own uncertainty)"
        if len(finite) and np.ptp(finite) == 0
        else ""
    )


def _given(premise: Claim, claim: Claim) -> Claim:
    """A claim about the transition's place is no better than the claim that there is one: it
    fails when there is no sharp fall, and cannot hold when that is in doubt."""
    if premise.verdict == cl.FAILS:
        return replace(claim, verdict=cl.FAILS, note=f"no sharp fall ({premise.key} fails); {claim.note}")
    if premise.verdict == cl.CANNOT_TELL and claim.verdict == cl.HOLDS:
        return replace(claim, verdict=cl.CANNOT_TELL, note=f"the fall itself is in doubt; {claim.note}")
    return claim


def _overlap_difference(view, counts, key, a, b, statement, paper) -> Claim:
    """Second-half mean label overlap of answers, a - b, with the interval of the shared row
    bootstrap: each row's share of same-answer neighbours (stored per row by the analysis) is
    resampled with the questions, each draw's layer value its class-weighted mean (the layer's
    label overlap); neighbours are held as the analysis found them."""
    claim = Claim(
        key,
        statement,
        f"mean over the second half of label_overlap[answer] of {a} - of {b}; rows resampled",
        paper,
        region=cl.Region(above=ARI_MARGIN),
    )
    missing = _missing(view, a, b) or _too_few_rows(view, ANSWER)
    if missing:
        return replace(claim, note=missing)
    layers = np.array(
        [
            layer
            for layer in _layers_in(view, SECOND_HALF, a, b)
            if all(layer in view.overlap_rows.get(c, {}) for c in (a, b))
        ],
        dtype=int,
    )
    if not all(view.overlap_rows.get(c) for c in (a, b)):
        return replace(
            claim,
            note="no per-row label overlap in analysis.h5 (analysed before it was kept): "
            "run `landscape analyze --force` again",
        )
    if len(layers) < MIN_LAYERS_PER_HALF:
        return replace(claim, note=f"{len(layers)} second-half layers with an answer label overlap")
    answers = view.labels[ANSWER]
    means = {
        c: np.mean([class_weighted_mean(view.overlap_rows[c][int(layer)], answers, counts) for layer in layers], axis=0)
        for c in (a, b)
    }
    diff = means[a] - means[b]
    note = f"layers {layers.min()}-{layers.max()}" + _within_chance(
        view, "label_overlap", ANSWER, layers, {c: m[0] for c, m in means.items()}
    )
    return _decide(claim, diff[0], diff[1:], note=note)


def _overlap_fall(view, counts, key, pair, statement, paper) -> Claim:
    """First-half minus second-half mean data overlap of a pair of conditions (rows resampled)."""
    a, b = pair
    claim = Claim(
        key,
        statement,
        f"mean data overlap({a}, {b}) in the first half - in the second half",
        paper,
        region=cl.Region(above=OVERLAP_FALL),
    )
    found = view.overlaps.get(pair) or view.overlaps.get((b, a))
    if not found:
        return replace(claim, note=_missing(view, a, b) or f"no pair {names.pair_name(a, b)} analysed")
    layers = np.array(sorted(found), dtype=int)
    halves = [layers[cl.span_mask(layers, view.last_layer, *span)] for span in (FIRST_HALF, SECOND_HALF)]
    if min(len(h) for h in halves) < MIN_LAYERS_PER_HALF:
        return replace(claim, note="too few analysed layers in a half")
    means = [np.mean([cl.weighted_mean(found[layer], counts) for layer in half], axis=0) for half in halves]
    fall = means[0] - means[1]
    note = f"first half {means[0][0]:.3f}, second {means[1][0]:.3f}"
    nulls = view.pair_nulls.get(pair) or view.pair_nulls.get((b, a)) or {}
    chance = [np.mean([nulls.get(int(layer), np.nan) for layer in half]) for half in halves]
    if np.isfinite(chance).all():
        note += f" (chance {chance[0]:.3f}, {chance[1]:.3f}: permutation null's mean)"
    return _decide(claim, fall[0], fall[1:], note=note)


def _edl_gain(view, key, condition, region, statement, paper) -> Claim:
    claim = Claim(
        key,
        statement,
        f"gain beyond format of {condition}, bits per training label (held-out answers)",
        paper,
        region=region,
    )
    if condition not in view.edl:
        return replace(claim, note=f"no EDL record of {condition}")
    attrs = view.edl[condition]
    needed = ["n_train"] + [f"gain_beyond_format_bits{s}" for s in ("", "_low", "_high")]
    if any(name not in attrs for name in needed):
        return replace(
            claim,
            note=f"the EDL record of {condition} has no gain beyond format (made before it was kept): "
            f"run `landscape finetune` again",
        )
    n = float(attrs["n_train"])
    value, low, high = (float(attrs[f"gain_beyond_format_bits{s}"]) / n for s in ("", "_low", "_high"))
    note = f"{attrs['gain_beyond_format_bits']:.1f} bits over {int(n)} labels"
    if key == "edl.random_gain":  # one-sided by construction: say what a "holds" means
        note += (
            "; one-sided: a fine-tune that memorises random labels loses on held-out labels (a negative gain), "
            "so this fails only when random labels carry format (a leak)"
        )
    return replace(claim, value=value, low=low, high=high, verdict=cl.verdict(low, high, region), note=note)


# ---------------------------------------------------------------- writing and showing


COLUMNS = ("claim", "statement", "statistic", "value", "low", "high", "region", "verdict", "note", "paper")


def as_rows(claims: list[Claim]) -> list[dict[str, str]]:
    def number(x: float) -> str:
        return "" if not np.isfinite(x) else f"{x:.4g}"

    return [
        dict(
            claim=c.key,
            statement=c.statement,
            statistic=c.statistic,
            value=number(c.value),
            low=number(c.low),
            high=number(c.high),
            region=c.region.describe(),
            verdict=c.verdict,
            note=c.note,
            paper=c.paper,
        )
        for c in claims
    ]


def write_claims(run: Path, claims: list[Claim]) -> Path:
    """RUN/claims.csv, written whole or not at all."""
    path = Path(run) / CLAIMS_FILE

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(as_rows(claims))

    replace_atomically(path, write)
    return path


def table(claims: list[Claim]) -> str:
    """The claims as an aligned text table (claim, value [low, high], region, verdict, note)."""
    rows = [("claim", "value [95 % interval]", "holds if", "verdict", "note")]
    for c in claims:
        interval = "" if not np.isfinite(c.value) else f"{c.value:+.3f} [{c.low:+.3f}, {c.high:+.3f}]"
        rows.append((c.key, interval, c.region.describe(), c.verdict, c.note))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths, strict=True)) + "  " + r[4] for r in rows
    )
