"""Demo-sampling controls: where each question's demonstrations come from, and their conditions."""

import csv

import h5py
import numpy as np
import pytest

from analyses.run import run_analysis
from extract import demos
from extract.icl import ExtractConfig, run_extract
from landscape import names, store
from tests.helpers import SMALL

POOL = {s: list(range(100 * i, 100 * i + 20)) for i, s in enumerate(["anatomy", "astronomy", "virology"])}
IDS = np.arange(1000, 1060)
SUBJECTS = np.array(["anatomy", "astronomy", "virology"] * 20)


def test_resampled_demos_differ_per_question_and_stay_in_the_subjects_pool():
    plan = demos.plan_demos(IDS, SUBJECTS, POOL, k=5, sampling="resampled", seed=0)
    for row, subject in enumerate(SUBJECTS):
        assert set(plan.demo_ids[row]) <= set(POOL[subject])
        assert len(set(plan.demo_ids[row])) == 5  # drawn without replacement
    assert len(np.unique(plan.demo_sets)) == len(IDS)  # C(20, 5) sets: no two questions share one here
    assert (plan.headers == SUBJECTS).all()
    again = demos.plan_demos(IDS, SUBJECTS, POOL, k=5, sampling="resampled", seed=0)
    np.testing.assert_array_equal(plan.demo_ids, again.demo_ids)
    other_seed = demos.plan_demos(IDS, SUBJECTS, POOL, k=5, sampling="resampled", seed=1)
    assert not np.array_equal(plan.demo_ids, other_seed.demo_ids)
    # A question's draw depends on the question alone, not on which others are in the run.
    fewer = demos.plan_demos(IDS[10:], SUBJECTS[10:], POOL, k=5, sampling="resampled", seed=0)
    np.testing.assert_array_equal(fewer.demo_ids, plan.demo_ids[10:])


def test_other_subject_demos_never_come_from_the_questions_subject():
    plan = demos.plan_demos(IDS, SUBJECTS, POOL, k=3, sampling="other-subject", seed=0)
    first_k = {s: POOL[s][:3] for s in POOL}
    used = set()
    for row, subject in enumerate(SUBJECTS):
        donor = [s for s in POOL if list(plan.demo_ids[row]) == first_k[s]]
        assert len(donor) == 1 and donor[0] != subject
        used.add((subject, donor[0]))
    assert len(used) == 6  # every (subject, other subject) pair occurs: the donor is drawn per question
    assert (plan.headers == SUBJECTS).all()  # the header still names the question's subject


def test_fixed_and_no_header_share_the_subjects_first_demos():
    fixed = demos.plan_demos(IDS, SUBJECTS, POOL, k=2, sampling="fixed", seed=0)
    bare = demos.plan_demos(IDS, SUBJECTS, POOL, k=2, sampling="no-header", seed=0)
    np.testing.assert_array_equal(fixed.demo_ids, bare.demo_ids)
    assert (bare.headers == "").all() and len(np.unique(fixed.demo_sets)) == 3
    assert names.icl_condition(5, "other-subject") == "5shot-othersubject"
    with pytest.raises(ValueError, match="unknown demo sampling"):
        demos.plan_demos(IDS, SUBJECTS, POOL, k=2, sampling="shuffled", seed=0)
    with pytest.raises(ValueError, match="has 20 demos"):
        demos.plan_demos(IDS, SUBJECTS, POOL, k=21, sampling="resampled", seed=0)


@pytest.fixture(scope="module")
def control_run(tmp_path_factory, tiny_model_dir, tiny_mmlu):
    folder = tmp_path_factory.mktemp("controls")
    config = ExtractConfig(
        model=str(tiny_model_dir),
        task_data=str(tiny_mmlu),
        shots=(0, 2),
        subjects="all",
        per_subject=12,
        demo_pool=4,
        train_per_subject=2,
        batch_size=4,
        demos=("fixed", "resampled", "other-subject", "no-header"),
    )
    run_extract(config, folder, progress=False)
    run_analysis(folder, SMALL, progress=False)
    return folder, config


def test_controls_are_extracted_as_named_conditions_with_their_demos(control_run):
    folder, _ = control_run
    with h5py.File(folder / "hidden.h5", "r") as f:
        names = set(store.hidden.condition_names(f))
        assert names == {"0shot", "0shot-noheader", "2shot", "2shot-resampled", "2shot-othersubject", "2shot-noheader"}
        examples = store.hidden.read_examples(f)
        pool_ids, pool_subjects = store.hidden.read_partition(f)["demos"]
        train_ids = store.hidden.read_partition(f)["train"][0]
        subject_of = dict(zip(pool_ids.tolist(), pool_subjects.tolist(), strict=True))
        for name in ("2shot-resampled", "2shot-othersubject"):
            attrs = store.hidden.condition_attrs(store.hidden.get_condition(f, name))
            assert attrs["demo_sampling"] == name.split("-", 1)[1].replace("othersubject", "other-subject")
            demo_ids = store.hidden.read_demo_ids(f, name)
            assert demo_ids.shape == (len(examples), 2)
            assert not set(demo_ids.ravel()) & (set(examples.ids.tolist()) | set(train_ids.tolist()))
            donors = np.vectorize(subject_of.get)(demo_ids)
            if name == "2shot-resampled":
                assert (donors == examples.first_group[:, None]).all()
                assert len(np.unique(store.hidden.read_demo_sets(f, name))) > 3
            else:
                assert (donors != examples.first_group[:, None]).all()
        assert store.hidden.read_demo_sets(f, "0shot") is None
        fixed_sets = store.hidden.read_demo_sets(f, "2shot")
        assert len(np.unique(fixed_sets)) == 3  # one demo set per subject


def test_cached_and_uncached_controls_give_the_same_states(control_run, tmp_path):
    folder, config = control_run
    from dataclasses import replace

    run_extract(
        replace(config, prefix_cache=False, demos=("other-subject", "no-header"), shots=(2,)), tmp_path, progress=False
    )
    with h5py.File(folder / "hidden.h5", "r") as a, h5py.File(tmp_path / "hidden.h5", "r") as b:
        for name in ("2shot-othersubject", "2shot-noheader"):
            np.testing.assert_allclose(
                store.hidden.get_condition(a, name)["hidden"][:],
                store.hidden.get_condition(b, name)["hidden"][:],
                rtol=1e-4,
                atol=1e-4,
            )


def test_analysis_reports_the_demo_set_ari_beside_the_subject_ari(control_run):
    folder, _ = control_run
    with open(folder / "metrics.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "eval"]
    has = {(r["condition"], r["metric"]) for r in rows if r["grouping"] in ("", "subject")}
    for name in ("2shot", "2shot-resampled", "2shot-othersubject", "2shot-noheader"):
        assert (name, "ari_demo_set") in has and (name, "ari") in has
    assert ("0shot", "ari_demo_set") not in has
    fixed = {
        int(r["layer"]): float(r["value"]) for r in rows if r["condition"] == "2shot" and r["metric"] == "ari_demo_set"
    }
    subject = {
        int(r["layer"]): float(r["value"])
        for r in rows
        if r["condition"] == "2shot" and r["metric"] == "ari" and r["grouping"] == "subject"
    }
    assert fixed == subject  # fixed demos: the demo set is the subject


def test_report_shows_the_controls_beside_the_fixed_demos(control_run):
    from figures.report import ReportConfig, run_report

    folder, _ = control_run
    report = run_report(folder, ReportConfig(map_method="pca", png="no"), progress=False)
    page = report.index.read_text()
    assert "Subject or shared prefix?" in page
    assert (folder / "report" / "figures" / "controls.html").is_file()
    for name in ("2shot", "2shot-resampled", "2shot-othersubject", "2shot-noheader"):
        assert f'"name":"{name}"' in page.replace(" ", "")
