"""Task complexity (bit accounting, Pareto front) and seed-to-seed comparison on the tiny model."""

import csv
import math

import h5py
import numpy as np
import pytest
import torch

from analyses.complexity import Point, pareto_front, smallest_bits
from analyses.identifiability import compare_seeds, seed_families
from analyses.run import run_analysis
from extract import forward
from extract.icl import ExtractConfig, demo_bits, run_extract
from landscape import cli, store, tasks
from tests.helpers import SMALL


def test_token_bits_are_bits_and_do_not_depend_on_batching_or_padding(tiny):
    model, tok = tiny
    sequences = [
        tok.encode(t) for t in ("The star of the planet", "Which bone is a cell in the heart of a temple?", "light")
    ]
    starts = [2, 5, 1]
    batched = forward.token_bits(model, sequences, starts)
    alone = np.array([forward.token_bits(model, [s], [b])[0] for s, b in zip(sequences, starts, strict=True)])
    np.testing.assert_allclose(batched, alone, rtol=1e-5)
    with torch.inference_mode():  # an independent count: log2 of the softmax, token by token
        ids = torch.tensor([sequences[1]])
        log2p = torch.log_softmax(model(input_ids=ids).logits.double(), -1) / math.log(2)
        expected = -sum(float(log2p[0, t - 1, ids[0, t]]) for t in range(5, ids.shape[1]))
    assert batched[1] == pytest.approx(expected, rel=1e-4)
    assert batched[1] / (ids.shape[1] - 5) > 1.0  # ~log2(400) bits a token for a random model: not nats


def test_k_shot_demo_bits_grow_with_k(tiny, tiny_mmlu):
    model, tok = tiny
    task, items = tasks.load_items(tasks.load_task("mmlu"), tiny_mmlu)
    questions = [q for q in items if q.group == "anatomy"][:3]
    bits = [demo_bits(model, tok, task, questions[:k]) for k in (1, 2, 3)]
    assert 0 < bits[0][0] < bits[1][0] < bits[2][0]
    assert bits[0][1] < bits[1][1] < bits[2][1]  # tokens


def test_pareto_front_and_smallest_bits():
    points = [
        Point("icl", "0shot", 0, 0.25),
        Point("icl", "1shot", 100, 0.24),
        Point("icl", "5shot", 500, 0.31),
        Point("lora", "sft", 1e6, 0.30),
        Point("data", "sft (n=600)", 1400, 0.33),
    ]
    assert pareto_front(points).tolist() == [True, False, True, False, True]
    assert smallest_bits(points, 0.30) == 500
    assert smallest_bits(points, 0.32) == 1400
    assert smallest_bits(points, 0.9) == math.inf


def test_seed_families_and_comparison():
    assert seed_families(["sft", "sft-seed2", "sft-seed1", "other-seed1"]) == {"sft": ["sft", "sft-seed1", "sft-seed2"]}
    layer = {"a": {"id_gride": 10.0, "n_clusters": 3}, "b": {"id_gride": 12.0, "n_clusters": 5}}
    pairs = {("a", "b"): {"data_overlap": 0.6, "ari_clusters": 0.5}}
    out = compare_seeds(layer, pairs, {"a": 2.0, "b": 2.1}, {"a": 0.3, "b": 0.32})
    assert out["overlap_mean"] == 0.6 and out["id_gride_range"] == 2.0 and out["n_clusters_range"] == 2
    assert out["eval_bits_range"] == pytest.approx(0.1) and out["accuracy_range"] == pytest.approx(0.02)


@pytest.fixture(scope="module")
def seeded_run(tmp_path_factory, tiny_model_dir, tiny_mmlu):
    folder = tmp_path_factory.mktemp("seeds")
    run_extract(
        ExtractConfig(
            model=str(tiny_model_dir),
            task_data=str(tiny_mmlu),
            shots=(0, 1),
            subjects="all",
            per_subject=12,
            demo_pool=2,
            train_per_subject=8,
            batch_size=8,
        ),
        folder,
        progress=False,
    )
    assert (
        cli.main(
            [
                "finetune",
                str(folder),
                "--seeds",
                "0,1",
                "--rank",
                "4",
                "--alpha",
                "8",
                "--lr",
                "0.005",
                "--epochs",
                "2",
                "--batch-size",
                "4",
                "--checkpoints",
                "2,4",
                "--task-data",
                str(tiny_mmlu),
                "--no-progress",
            ]
        )
        == 0
    )
    run_analysis(folder, SMALL, progress=False)
    return folder


def test_seeds_are_compared_layer_by_layer(seeded_run):
    with h5py.File(seeded_run / "hidden.h5", "r") as f:
        assert {"sft", "sft-seed1"} <= set(store.edl.edl_names(f))
        assert store.edl.read_edl(f, "sft-seed1")[1]["settings"]["seed"] == 1
        assert not np.array_equal(
            store.edl.read_edl(f, "sft")[0]["online_bits"], store.edl.read_edl(f, "sft-seed1")[0]["online_bits"]
        )
    with open(seeded_run / "metrics.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["condition"] == "seeds:sft"]
    overlap = [float(r["value"]) for r in rows if r["metric"] == "overlap_mean"]
    assert len(overlap) >= 3 and all(0 <= v <= 1 for v in overlap)
    assert min(overlap) < 1  # two seeds do not give the same neighbourhoods
    assert {float(r["value"]) for r in rows if r["metric"] == "n_seeds"} == {2.0}


def test_complexity_points_and_front_are_stored(seeded_run):
    with h5py.File(seeded_run / "analysis.h5", "r") as f:
        arrays, attrs = store.analysis.read_complexity(f)
    points = dict(
        zip(
            zip(arrays["strategy"], arrays["label"], strict=True),
            zip(arrays["bits"], arrays["accuracy"], strict=True),
            strict=True,
        )
    )
    assert points[("icl", "0shot")][0] == 0.0 and points[("icl", "1shot")][0] > 0
    with h5py.File(seeded_run / "hidden.h5", "r") as f:
        n_trainable = store.edl.read_edl(f, "sft")[1]["n_trainable"]
        online = store.edl.read_edl(f, "sft")[0]
    assert points[("lora", "sft")][0] == n_trainable * 16
    assert points[("data", "sft@step2 (n=8)")][0] == pytest.approx(online["online_bits"][online["order"][:8]].sum())
    assert points[("data", "sft (n=24)")][0] == pytest.approx(online["online_bits"].sum())
    assert arrays["on_front"][list(arrays["label"]).index("0shot")]  # 0 bits: always on the front
    assert attrs["baseline_accuracy"] == points[("icl", "0shot")][1]
    from figures.report import ReportConfig, run_report

    page = run_report(seeded_run, ReportConfig(map_method="pca", png="no"), progress=False).index.read_text()
    assert "Task complexity and non-identifiability" in page and "seeds of sft" in page
