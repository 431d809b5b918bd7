import h5py
import numpy as np
import pytest

from landscape import store


def _examples(n=5):
    return store.hidden.Examples(
        ids=np.arange(10, 10 + n),
        groups={"subject": np.array(["a", "b", "a", "b", "c"][:n]), "size": np.array(["s", "l", "l", "s", "s"][:n])},
        answers=np.arange(n) % 4,
        splits=np.array(["eval"] * n),
    )


def _new(path, n=5, layers=2, width=3):
    with h5py.File(path, "w") as f:
        store.hidden.write_header(
            f,
            {"model": "m", "partition": {"seed": 0}},
            _examples(n),
            {"demos": (np.array([1, 2]), np.array(["a", "b"]))},
        )
        store.hidden.create_condition(
            f, "0shot", n_layers=layers, n_rows=n, width=width, n_choices=4, attrs={"kind": "icl", "shots": 0}
        )


def test_roundtrip_with_noncontiguous_rows(tmp_path):
    path = tmp_path / "h.h5"
    _new(path)
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(3, 5, 3)).astype(np.float32)
    logits = rng.normal(size=(5, 4)).astype(np.float32)
    with h5py.File(path, "a") as f:
        group = store.hidden.get_condition(f, "0shot")
        store.hidden.write_rows(group, np.array([3, 0, 4]), hidden[:, [3, 0, 4]], logits[[3, 0, 4]], np.zeros(3))
        assert store.hidden.rows_done(group).tolist() == [True, False, False, True, True]
        store.hidden.write_rows(group, np.array([1, 2]), hidden[:, 1:3], logits[1:3], np.ones(2))
    with h5py.File(path, "r") as f:
        for layer in range(3):
            np.testing.assert_array_equal(store.hidden.read_layer(f, "0shot", layer), hidden[layer])
        got_logits, lse, pred = store.hidden.read_outputs(f, "0shot")
        np.testing.assert_array_equal(got_logits, logits)
        np.testing.assert_array_equal(pred, logits.argmax(1))
        np.testing.assert_array_equal(lse, [0, 1, 1, 0, 0])
        ex = store.hidden.read_examples(f)
        assert ex.groups["subject"].tolist() == ["a", "b", "a", "b", "c"] and ex.ids.tolist() == [10, 11, 12, 13, 14]
        assert ex.group_names == ["subject", "size"] and ex.first_group.tolist() == ex.groups["subject"].tolist()
        assert store.hidden.read_attrs(f)["partition"] == {"seed": 0}
        assert store.hidden.read_partition(f)["demos"][1].tolist() == ["a", "b"]
        assert not store.hidden.condition_attrs(store.hidden.get_condition(f, "0shot"))["complete"]
        assert f["conditions/0shot/hidden"].chunks is None  # contiguous: a layer reads as one block


def test_wrong_version_and_missing_condition(tmp_path):
    path = tmp_path / "h.h5"
    _new(path)
    with h5py.File(path, "a") as f:
        with pytest.raises(store.SchemaError, match=r"no condition '5shot'.*0shot"):
            store.hidden.get_condition(f, "5shot")
        with pytest.raises(store.SchemaError, match="layer 7 out of range"):
            store.hidden.read_layer(f, "0shot", 7)
        f.attrs["schema_version"] = 99
    with h5py.File(path, "r") as f, pytest.raises(store.SchemaError, match="schema version 99"):
        store.hidden.read_examples(f)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with h5py.File(other, "r") as f, pytest.raises(store.SchemaError, match="not a landscape run"):
        store.hidden.check_version(f)
