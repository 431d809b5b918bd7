import pytest

from extract import data
from landscape import tasks
from landscape.files import MissingFile, package_file


def _items(tiny_mmlu):
    return tasks.load_items(tasks.load_task("mmlu"), tiny_mmlu)[1]


def test_mmlu_task_skips_header_rows_and_numbers_by_line(tiny_mmlu):
    items = _items(tiny_mmlu)
    assert len(items) == 120  # 3 subjects x 40, the header row dropped by the task's filter
    assert items[0].id == 1  # line 0 is the header row
    assert all(0 <= q.answer <= 3 and len(q.choices) == 4 for q in items)


def _partition(items, **kw):
    args = dict(demo_pool=5, per_subject=10, train_per_subject=12, seed=0)
    args.update(kw)
    return data.make_partition(items, ["anatomy", "astronomy"], **args)


def test_partition_is_disjoint_per_value_and_sized(tiny_mmlu):
    items = _items(tiny_mmlu)
    value_of = {q.id: q.group for q in items}
    p = _partition(items)
    demos = [i for ids in p.demos.values() for i in ids]
    assert len(set(demos)) == len(demos) == 10
    assert len(p.eval) == 20 and len(p.train) == 24
    assert not (set(demos) & set(p.eval)) and not (set(demos) & set(p.train)) and not (set(p.eval) & set(p.train))
    for value, ids in p.demos.items():
        assert {value_of[i] for i in ids} == {value}
    assert {value_of[i] for i in p.eval} == {"anatomy", "astronomy"}


def test_partition_is_seeded_and_eval_does_not_depend_on_train_size(tiny_mmlu):
    items = _items(tiny_mmlu)
    a, b = _partition(items), _partition(items)
    assert a.eval == b.eval and a.demos == b.demos and a.train == b.train
    assert _partition(items, seed=1).eval != a.eval
    assert _partition(items, train_per_subject=3).eval == a.eval
    # adding a value leaves the others' partitions unchanged
    wider = data.make_partition(
        items, ["anatomy", "astronomy", "world religions"], demo_pool=5, per_subject=10, train_per_subject=12, seed=0
    )
    assert wider.demos["anatomy"] == a.demos["anatomy"]


def test_eval_is_capped_by_what_the_value_has(tiny_mmlu):
    p = _partition(_items(tiny_mmlu), per_subject=1000, train_per_subject=5)
    assert len(p.eval) == 2 * 35 and p.train == []


def test_select_values(tiny_mmlu):
    items = _items(tiny_mmlu)
    assert data.select_values(items, "all") == ["anatomy", "astronomy", "world religions"]
    assert len(data.select_values(items, "largest:2")) == 2
    assert data.select_values(items, "world_religions,anatomy") == ["anatomy", "world religions"]
    with pytest.raises(data.DataError, match="unknown subject 'nope'"):
        data.select_values(items, "anatomy,nope", "subject")
    with pytest.raises(data.DataError, match="N must be"):
        data.select_values(items, "largest:9")


def test_demo_pool_larger_than_a_value_is_an_error(tiny_mmlu):
    with pytest.raises(data.DataError, match="not more than the demo pool"):
        _partition(_items(tiny_mmlu), demo_pool=40)


def test_package_file_of_missing_package():
    with pytest.raises(MissingFile, match="not installed"):
        package_file("no_such_package_xyz", "data/x")


def test_train_first_gives_every_value_its_training_rows(tiny_mmlu):
    """The paper's recipe asks more eval rows than a small subject has: train is set apart first."""
    items = _items(tiny_mmlu)
    value_of = {q.id: q.group for q in items}
    eval_first = _partition(items, per_subject=1000, train_per_subject=7)
    train_first = _partition(items, per_subject=1000, train_per_subject=7, train_first=True)
    assert eval_first.train == [] and len(train_first.train) == 2 * 7
    assert len(train_first.eval) == 2 * (35 - 7) and not set(train_first.eval) & set(train_first.train)
    assert {value_of[i] for i in train_first.train} == {"anatomy", "astronomy"}
    assert train_first.demos == eval_first.demos and train_first.settings["train_first"] is True
    assert "train_first" not in eval_first.settings  # runs made before the option keep their settings


def test_train_subjects_other_than_the_evaluated_ones(tiny_mmlu):
    """--train-subjects: the evaluated values' demos and eval rows are a plain run's; training rows
    come only from the values asked for (others: those not evaluated), never from an eval row."""
    items = _items(tiny_mmlu)
    value_of = {q.id: q.group for q in items}
    plain = _partition(items)
    others = data.select_train_values(items, "others", ["anatomy", "astronomy"])
    assert others == ["world religions"]
    p = _partition(items, train_values=others)
    assert p.eval == plain.eval and p.values == plain.values
    assert {v: p.demos[v] for v in plain.demos} == plain.demos and set(p.demos) == {
        "anatomy",
        "astronomy",
        "world religions",
    }
    assert len(p.train) == 12 and {value_of[i] for i in p.train} == {"world religions"}
    assert p.settings["train_values"] == ["world religions"] and "train_values" not in plain.settings
    every = _partition(items, train_values=data.select_train_values(items, "all", ["anatomy", "astronomy"]))
    assert every.eval == plain.eval and set(plain.train) < set(every.train) and len(every.train) == 36
    assert not set(every.train) & set(every.eval) and not set(every.train) & {
        i for d in every.demos.values() for i in d
    }
    assert not set(p.train) & set(p.demos["world religions"])
    # with --train-first, an evaluated value not trained on sets no training rows apart before its eval rows
    assert (
        _partition(items, train_values=others, train_first=True).eval
        == _partition(items, train_per_subject=0, train_first=True).eval
    )
    with pytest.raises(data.DataError, match="none is left to train on"):
        data.select_train_values(items, "others", ["anatomy", "astronomy", "world religions"])
    with pytest.raises(data.DataError, match="unknown subject 'nope'"):
        data.select_train_values(items, "nope", ["anatomy"], "subject")
