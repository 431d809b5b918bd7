import pytest

from extract import data


def test_load_mmlu_skips_header_rows_and_numbers_by_line(tiny_mmlu):
    questions = data.load_mmlu(tiny_mmlu)
    assert len(questions) == 120  # 3 subjects x 40, the header row dropped
    assert questions[0].id == 1  # line 0 is the header row
    assert all(0 <= q.answer <= 3 and len(q.choices) == 4 for q in questions)


def _partition(questions, **kw):
    args = dict(demo_pool=5, per_subject=10, train_per_subject=12, seed=0)
    args.update(kw)
    return data.make_partition(questions, ["anatomy", "astronomy"], **args)


def test_partition_is_disjoint_per_subject_and_sized(tiny_mmlu):
    questions = data.load_mmlu(tiny_mmlu)
    subject_of = {q.id: q.subject for q in questions}
    p = _partition(questions)
    demos = [i for ids in p.demos.values() for i in ids]
    assert len(set(demos)) == len(demos) == 10
    assert len(p.eval) == 20 and len(p.train) == 24
    assert not (set(demos) & set(p.eval)) and not (set(demos) & set(p.train)) and not (set(p.eval) & set(p.train))
    for subject, ids in p.demos.items():
        assert {subject_of[i] for i in ids} == {subject}
    assert {subject_of[i] for i in p.eval} == {"anatomy", "astronomy"}


def test_partition_is_seeded_and_eval_does_not_depend_on_train_size(tiny_mmlu):
    questions = data.load_mmlu(tiny_mmlu)
    a, b = _partition(questions), _partition(questions)
    assert a.eval == b.eval and a.demos == b.demos and a.train == b.train
    assert _partition(questions, seed=1).eval != a.eval
    assert _partition(questions, train_per_subject=3).eval == a.eval
    # adding a subject leaves the others' partitions unchanged
    wider = data.make_partition(questions, ["anatomy", "astronomy", "world religions"], demo_pool=5,
                                per_subject=10, train_per_subject=12, seed=0)
    assert wider.demos["anatomy"] == a.demos["anatomy"]


def test_eval_is_capped_by_what_the_subject_has(tiny_mmlu):
    p = _partition(data.load_mmlu(tiny_mmlu), per_subject=1000, train_per_subject=5)
    assert len(p.eval) == 2 * 35 and p.train == []


def test_select_subjects(tiny_mmlu):
    questions = data.load_mmlu(tiny_mmlu)
    assert data.select_subjects(questions, "all") == ["anatomy", "astronomy", "world religions"]
    assert len(data.select_subjects(questions, "largest:2")) == 2
    assert data.select_subjects(questions, "world_religions,anatomy") == ["anatomy", "world religions"]
    with pytest.raises(data.DataError, match="unknown subject 'nope'"):
        data.select_subjects(questions, "anatomy,nope")
    with pytest.raises(data.DataError, match="N must be"):
        data.select_subjects(questions, "largest:9")


def test_demo_pool_larger_than_subject_is_an_error(tiny_mmlu):
    with pytest.raises(data.DataError, match="not more than demo_pool"):
        _partition(data.load_mmlu(tiny_mmlu), demo_pool=40)


def test_package_file_of_missing_package():
    with pytest.raises(data.DataError, match="not installed"):
        data.package_file("no_such_package_xyz", "data/x")
