"""Kill real `landscape` subprocesses with SIGKILL at several points; the resumed run equals an
uninterrupted one bit for bit (hidden states, outputs, EDL record, analysis)."""

import shutil
import signal

import h5py
import numpy as np
import pytest

from landscape import store
from tests.helpers import VOLATILE, extract_args, run_landscape

pytestmark = pytest.mark.filterwarnings("ignore")


def assert_same_groups(a: h5py.Group, b: h5py.Group, path: str = "") -> None:
    assert set(a.keys()) == set(b.keys()), path
    attrs_a = {k: v for k, v in a.attrs.items() if k not in VOLATILE}
    attrs_b = {k: v for k, v in b.attrs.items() if k not in VOLATILE}
    assert set(attrs_a) == set(attrs_b), path
    for key, value in attrs_a.items():
        np.testing.assert_array_equal(value, attrs_b[key], err_msg=f"{path} attr {key}")
    for name in a:
        if isinstance(a[name], h5py.Group):
            assert_same_groups(a[name], b[name], f"{path}/{name}")
        else:
            np.testing.assert_array_equal(a[name][()], b[name][()], err_msg=f"{path}/{name}")  # bit-identical


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir, tiny_mmlu):
    run = tmp_path_factory.mktemp("uninterrupted")
    run_landscape(*extract_args(run, tiny_model_dir, tiny_mmlu))
    return run


@pytest.mark.parametrize(
    "fault",
    [
        "rows.before_done:1",  # killed inside the first batch: no row done yet
        "extract.batch:2",  # some batches of the first condition
        "rows.before_done:9",  # half-written batch (states written, not marked done) in the second condition
        "extract.batch:15",  # all but the last batch
    ],
)
def test_killed_extraction_resumes_to_the_same_file(fault, reference, tmp_path, tiny_model_dir, tiny_mmlu):
    run = tmp_path / "run"
    killed = run_landscape(*extract_args(run, tiny_model_dir, tiny_mmlu), fault=fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    with h5py.File(run / "hidden.h5", "r") as f:  # the file survives the kill and is readable
        names = store.hidden.condition_names(f)
        assert not all(store.hidden.get_condition(f, n).attrs["complete"] for n in names) or len(names) < 2
    run_landscape(*extract_args(run, tiny_model_dir, tiny_mmlu))
    with h5py.File(reference / "hidden.h5", "r") as a, h5py.File(run / "hidden.h5", "r") as b:
        assert_same_groups(a, b)


def test_killed_analysis_resumes_to_the_same_results(reference, tmp_path):
    flags = ["--maxk", 10, "--density-k", 5, "--overlap-k", 5, "--no-progress"]
    whole = tmp_path / "whole"
    whole.mkdir()
    shutil.copy(reference / "hidden.h5", whole / "hidden.h5")
    run_landscape("analyze", whole, *flags)
    for fault in ("analyze.result:3", "group.before_complete:6"):
        run = tmp_path / fault.replace(":", "-")
        run.mkdir()
        shutil.copy(reference / "hidden.h5", run / "hidden.h5")
        killed = run_landscape("analyze", run, *flags, fault=fault)
        assert killed.returncode == -signal.SIGKILL
        run_landscape("analyze", run, *flags)
        with h5py.File(whole / "analysis.h5", "r") as a, h5py.File(run / "analysis.h5", "r") as b:
            assert_same_groups(a, b)
        assert (whole / "metrics.csv").read_text() == (run / "metrics.csv").read_text()


def test_killed_finetune_resumes_to_the_same_adapter_and_code(reference, tmp_path, tiny_mmlu):
    flags = [
        "--rank",
        4,
        "--alpha",
        8,
        "--dropout",
        0.1,
        "--lr",
        0.005,
        "--epochs",
        2,
        "--batch-size",
        4,
        "--task-data",
        tiny_mmlu,
        "--no-progress",
    ]
    runs = {}
    for label, fault in (("whole", None), ("killed", "finetune.step:12")):  # 24 rows / 4 = 6 steps a epoch
        run = tmp_path / label
        run.mkdir()
        shutil.copy(reference / "hidden.h5", run / "hidden.h5")
        if fault:
            killed = run_landscape("finetune", run, *flags, fault=fault)
            assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
            assert not (run / "adapters" / "sft" / "final").exists()
        run_landscape("finetune", run, *flags)
        runs[label] = run
    with h5py.File(runs["whole"] / "hidden.h5", "r") as a, h5py.File(runs["killed"] / "hidden.h5", "r") as b:
        assert_same_groups(a["edl"], b["edl"])
        assert_same_groups(a["conditions/sft"], b["conditions/sft"])
    weights = "adapters/sft/final/adapter_model.safetensors"
    assert (runs["whole"] / weights).read_bytes() == (runs["killed"] / weights).read_bytes()
