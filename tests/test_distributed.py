"""Beyond one process: `accelerate launch` with 2 CPU ranks gives the run 1 process gives, a killed
2-rank extraction resumes (in 1 process) to the same file, and the analysis on Ray gives the
numbers of the local path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from analyses.run import run_analysis
from extract.ranks import Ranks
from landscape import store
from tests.helpers import SMALL, VOLATILE, extract_args, read_metrics, run_landscape

pytestmark = pytest.mark.filterwarnings("ignore")

ACCELERATE = Path(sys.executable).with_name("accelerate")
FINETUNE = [
    "--rank",
    4,
    "--alpha",
    8,
    "--lr",
    0.005,
    "--epochs",
    2,
    "--batch-size",
    8,
    "--checkpoints",
    2,
    "--micro-tokens",
    120,
    "--no-progress",
]  # ~3 micro-batches a step: both ranks get some


def launch(n: int, *args, fault: str | None = None) -> subprocess.CompletedProcess:
    """``accelerate launch`` of ``landscape`` on ``n`` CPU processes (docs/distributed.md's command)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("LANDSCAPE_FAULT", None)
    if fault:
        env["LANDSCAPE_FAULT"] = fault
    command = [
        str(ACCELERATE),
        "launch",
        "--multi_gpu",
        "--num_processes",
        str(n),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(29500 + os.getpid() % 500),
        "-m",
        "landscape",
        *map(str, args),
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)


def assert_close_groups(a: h5py.Group, b: h5py.Group, path: str = "", atol: float = 0.0) -> None:
    """Same datasets and attrs (but timing, provenance and the process count); floats within ``atol``."""
    assert set(a.keys()) == set(b.keys()), path
    skip = VOLATILE | {"processes"}
    assert {k for k in a.attrs if k not in skip} == {k for k in b.attrs if k not in skip}, path
    for name in a:
        if isinstance(a[name], h5py.Group):
            assert_close_groups(a[name], b[name], f"{path}/{name}", atol)
            continue
        x, y = a[name][()], b[name][()]
        if atol and x.dtype.kind == "f":
            np.testing.assert_allclose(x, y, rtol=0, atol=atol, err_msg=f"{path}/{name}")
        else:
            np.testing.assert_array_equal(x, y, err_msg=f"{path}/{name}")


def test_share_splits_by_cost_and_every_rank_agrees():
    costs = [10, 1, 1, 1, 9, 2, 3, 3]
    items = list("abcdefgh")
    shares = [Ranks(index=r, count=3).share(items, costs) for r in range(3)]
    assert sorted(item for share in shares for item in share) == items  # every item once
    for share in shares:
        assert share == [i for i in items if i in share]  # in the original order (prefix caches stay shared)
    loads = [sum(costs[items.index(i)] for i in share) for share in shares]
    assert max(loads) - min(loads) <= max(costs[1:])  # balanced, not cut by count
    assert Ranks().share(items, costs) == items


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tiny_model_dir, tiny_mmlu):
    run = tmp_path_factory.mktemp("one")
    run_landscape(*extract_args(run, tiny_model_dir, tiny_mmlu), "--demos", "fixed,resampled")
    run_landscape("finetune", run, *FINETUNE, "--task-data", tiny_mmlu)
    return run


def test_two_ranks_extract_and_finetune_as_one_process(one_process, tmp_path, tiny_model_dir, tiny_mmlu):
    run = tmp_path / "two"
    done = launch(2, *extract_args(run, tiny_model_dir, tiny_mmlu), "--demos", "fixed,resampled")
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (run / store.SHARDS_DIR).exists()  # merged and removed
    with h5py.File(one_process / "hidden.h5", "r") as a, h5py.File(run / "hidden.h5", "r") as b:
        assert store.hidden.condition_names(b) == ["0shot", "1shot", "1shot-resampled"]
        for name in store.hidden.condition_names(b):
            assert store.hidden.get_condition(b, name).attrs["processes"] == 2
            # on the CPU the batches are cut by rows: each rank computes its batches as one process
            # does, so the states are the same numbers (a token budget sized by each GPU's free
            # memory can batch otherwise: equal to float tolerance there, docs/distributed.md)
            assert_close_groups(store.hidden.get_condition(a, name), store.hidden.get_condition(b, name), name)
    done = launch(2, "finetune", run, *FINETUNE, "--task-data", tiny_mmlu)
    assert done.returncode == 0, done.stderr[-3000:]
    with h5py.File(one_process / "hidden.h5", "r") as a, h5py.File(run / "hidden.h5", "r") as b:
        # data-parallel training sums the same gradients in another order: equal to float tolerance
        assert_close_groups(a["edl"], b["edl"], atol=1e-5)
        assert_close_groups(a["conditions"]["sft@step2"], b["conditions"]["sft@step2"], atol=1e-5)
        assert_close_groups(a["conditions"]["sft"], b["conditions"]["sft"], atol=1e-5)


def test_two_ranks_keep_the_layers_asked_for(one_process, tmp_path, tiny_model_dir, tiny_mmlu):
    """``--layers`` under ``accelerate launch``: the ranks' shards hold only those layers, merged
    into the states one process stores at them."""
    run = tmp_path / "layers"
    done = launch(2, *extract_args(run, tiny_model_dir, tiny_mmlu), "--layers", "every:2")
    assert done.returncode == 0, done.stderr[-3000:]
    with h5py.File(one_process / "hidden.h5", "r") as a, h5py.File(run / "hidden.h5", "r") as b:
        assert store.hidden.condition_names(b) == ["0shot", "1shot"]
        for name in store.hidden.condition_names(b):
            assert store.hidden.stored_layers(b, name) == [0, 2, 3]
            for layer in (0, 2, 3):
                np.testing.assert_array_equal(
                    store.hidden.read_layer(a, name, layer), store.hidden.read_layer(b, name, layer)
                )


def test_killed_ranks_leave_shards_that_one_process_merges(one_process, tmp_path, tiny_model_dir, tiny_mmlu):
    run = tmp_path / "killed"
    killed = launch(
        2, *extract_args(run, tiny_model_dir, tiny_mmlu), "--demos", "fixed,resampled", fault="extract.batch:2"
    )
    assert killed.returncode != 0
    shards = sorted((run / store.SHARDS_DIR / "0shot").glob("rank-*.h5"))
    assert len(shards) == 2  # each rank had written its first batches
    with h5py.File(shards[0], "r") as f:
        assert len(f["rows"]) > 0
    info = run_landscape("info", run).stdout
    assert "INCOMPLETE" in info and "2 rank shards, merged on resume" in info
    resumed = run_landscape(*extract_args(run, tiny_model_dir, tiny_mmlu), "--demos", "fixed,resampled")  # by 1 process
    assert "0shot: merged" in resumed.stderr and "from 2 rank shards" in resumed.stderr
    assert not (run / store.SHARDS_DIR).exists()
    with h5py.File(one_process / "hidden.h5", "r") as a, h5py.File(run / "hidden.h5", "r") as b:
        for name in store.hidden.condition_names(b):
            assert_close_groups(store.hidden.get_condition(a, name), store.hidden.get_condition(b, name), name)


def test_analysis_on_ray_gives_the_local_numbers(tiny_run, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(tiny_run / "hidden.h5", copy / "hidden.h5")
    run_analysis(copy, SMALL, ray="local", jobs=2, progress=False)  # ray.init(num_cpus=2), one task a layer
    assert read_metrics(copy) == read_metrics(tiny_run)


def test_two_ranks_plan_the_batches_of_one_token_budget(tmp_path, tiny_model_dir, tiny_mmlu):
    """``--token-budget``: the ranks agree on the smallest budget among them (``Ranks.least``) and
    plan the batches one process plans with it: the same numbers."""
    one, two = tmp_path / "one", tmp_path / "two"
    run_landscape(*extract_args(one, tiny_model_dir, tiny_mmlu), "--token-budget", 900)
    done = launch(2, *extract_args(two, tiny_model_dir, tiny_mmlu), "--token-budget", 900)
    assert done.returncode == 0, done.stderr[-3000:]
    with h5py.File(one / "hidden.h5", "r") as a, h5py.File(two / "hidden.h5", "r") as b:
        for name in store.hidden.condition_names(a):
            assert store.hidden.condition_attrs(store.hidden.get_condition(b, name))["token_budget"] == 900
            assert_close_groups(store.hidden.get_condition(a, name), store.hidden.get_condition(b, name), name)
