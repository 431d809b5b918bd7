"""End-to-end extraction on the tiny random model and tiny MMLU file."""

import csv
import re

import h5py
import numpy as np
import pytest

import landscape
from extract.conditions import RunMismatch
from extract.icl import ExtractConfig, run_extract
from landscape import cli, store


def _config(model_dir, mmlu, **kw):
    args = dict(
        model=str(model_dir),
        task_data=str(mmlu),
        shots=(0, 2),
        subjects="all",
        per_subject=6,
        demo_pool=4,
        train_per_subject=5,
        batch_size=4,
    )
    args.update(kw)
    return ExtractConfig(**args)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir, tiny_mmlu):
    folder = tmp_path_factory.mktemp("run")
    accuracies = run_extract(_config(tiny_model_dir, tiny_mmlu), folder, progress=False)
    return folder, accuracies


def test_file_follows_the_contract(run, tiny_mmlu):
    folder, accuracies = run
    assert landscape.conditions(folder) == ["0shot", "2shot"]
    info = landscape.info(folder)
    assert info["schema_version"] == store.SCHEMA_VERSION and info["split_seed"] == 0
    assert info["model_hash"] and info["dataset_hash"] and info["versions"]["torch"]
    ex = landscape.examples(folder)
    assert len(ex) == 33 and ex.splits.tolist() == ["eval"] * 18 + ["train"] * 15
    for name in ("0shot", "2shot"):
        cond = info["conditions"][name]
        assert cond["complete"] and cond["kind"] == "icl" and cond["layers"] == 4
        layer = landscape.load_layer(folder, name, 2)
        assert layer.X.shape == (33, 32) and layer.X.dtype == np.float32 and np.isfinite(layer.X).all()
        assert np.array_equal(layer.ids, ex.ids)
        eval_rows = ex.splits == "eval"
        assert cond["accuracy"] == pytest.approx(np.mean(layer.pred[eval_rows] == ex.answers[eval_rows]))
        assert cond["accuracy_train"] == pytest.approx(np.mean(layer.pred[~eval_rows] == ex.answers[~eval_rows]))
        assert accuracies[name] == pytest.approx(cond["accuracy"])
    assert info["conditions"]["2shot"]["shots"] == 2
    assert all(len(v) == 2 for v in info["conditions"]["2shot"]["demo_ids"].values())
    # every row of a subject shares its demos, and demos are never eval rows
    demo_ids = {i for v in info["conditions"]["2shot"]["demo_ids"].values() for i in v}
    assert not demo_ids & set(ex.ids.tolist())
    # layer 0 is the embedding of the same last token (":"): identical for every row
    emb = landscape.load_layer(folder, "0shot", 0).X
    assert np.allclose(emb, emb[0])


def test_prefix_cache_matches_full_prompt_and_rerun_is_skipped(run, tmp_path, tiny_model_dir, tiny_mmlu):
    folder, _ = run
    other = tmp_path / "nocache"
    run_extract(_config(tiny_model_dir, tiny_mmlu, prefix_cache=False, batch_size=1), other, progress=False)
    for name in ("0shot", "2shot"):
        for layer in range(4):
            a = landscape.load_layer(folder, name, layer).X
            b = landscape.load_layer(other, name, layer).X
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    before = (other / "hidden.h5").stat().st_mtime_ns
    run_extract(_config(tiny_model_dir, tiny_mmlu, prefix_cache=False, batch_size=1), other, progress=False)
    with h5py.File(other / "hidden.h5") as f:
        assert all(store.hidden.get_condition(f, n).attrs["complete"] for n in ("0shot", "2shot"))
    assert (other / "hidden.h5").stat().st_mtime_ns >= before


def test_resume_redoes_only_rows_not_done(run, tmp_path, tiny_model_dir, tiny_mmlu):
    folder, _ = run
    copy = tmp_path / "resume"
    copy.mkdir()
    (copy / "hidden.h5").write_bytes((folder / "hidden.h5").read_bytes())
    with h5py.File(copy / "hidden.h5", "a") as f:  # as if killed after a few batches of 2shot
        group = store.hidden.get_condition(f, "2shot")
        group.attrs["complete"] = False
        group["done"][5:] = False
        group["hidden"][:, 5:] = 0.0
    run_extract(_config(tiny_model_dir, tiny_mmlu), copy, progress=False)
    for layer in range(4):
        np.testing.assert_allclose(
            landscape.load_layer(copy, "2shot", layer).X,
            landscape.load_layer(folder, "2shot", layer).X,
            rtol=1e-5,
            atol=1e-6,
        )


def test_other_settings_are_refused_unless_overwrite(run, tmp_path, tiny_model_dir, tiny_mmlu):
    folder, _ = run
    with pytest.raises(RunMismatch, match="partition"):
        run_extract(_config(tiny_model_dir, tiny_mmlu, per_subject=5), folder, progress=False)
    copy = tmp_path / "over"
    copy.mkdir()
    (copy / "hidden.h5").write_bytes((folder / "hidden.h5").read_bytes())
    run_extract(_config(tiny_model_dir, tiny_mmlu, per_subject=5, shots=(1,)), copy, overwrite=True, progress=False)
    assert landscape.conditions(copy) == ["1shot"] and len(landscape.examples(copy)) == 15 + 15


def test_config_errors(tmp_path, tiny_model_dir, tiny_mmlu):
    with pytest.raises(ValueError, match="demo pool holds 4"):
        run_extract(_config(tiny_model_dir, tiny_mmlu, shots=(5,)), tmp_path, progress=False)
    with pytest.raises(ValueError, match="unknown dtype"):
        run_extract(_config(tiny_model_dir, tiny_mmlu, dtype="float8"), tmp_path, progress=False)
    assert not (tmp_path / "hidden.h5").exists()


def test_cli_bad_input_is_one_line_and_nonzero(capsys, tmp_path, tiny_mmlu):
    assert cli.main(["extract", "--run", str(tmp_path), "--model", "no-such-model"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("landscape: error: unknown model 'no-such-model'") and "\n" not in err
    assert cli.main(["info", str(tmp_path / "missing")]) == 1
    assert "no hidden.h5" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["extract", "--per-subject", "-3"])
    assert exit_info.value.code == 2
    assert "must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("store_dtype, tolerance", [("float16", 1e-3), ("bfloat16", 8e-3)])
def test_half_precision_storage_keeps_the_states_to_its_rounding_and_analyses_end_to_end(
    run, tmp_path, tiny_model_dir, tiny_mmlu, store_dtype, tolerance
):
    from analyses.layer import AnalysisConfig
    from analyses.run import run_analysis

    folder, _ = run
    half = tmp_path / store_dtype
    run_extract(_config(tiny_model_dir, tiny_mmlu, store_dtype=store_dtype), half, progress=False)
    with h5py.File(folder / "hidden.h5", "r") as full, h5py.File(half / "hidden.h5", "r") as f:
        assert (
            store.hidden.store_dtype(f, "2shot") == store_dtype and store.hidden.store_dtype(full, "2shot") == "float32"
        )
        assert f["conditions/2shot/hidden"].dtype.itemsize == 2
        for layer in range(store.hidden.n_layers(f, "2shot")):
            exact, stored = store.hidden.read_layer(full, "2shot", layer), store.hidden.read_layer(f, "2shot", layer)
            assert stored.dtype == np.float32
            np.testing.assert_allclose(stored, exact, rtol=tolerance, atol=tolerance * np.abs(exact).max())
    with pytest.raises(RunMismatch, match="store_dtype"):  # a resume never mixes storages
        run_extract(_config(tiny_model_dir, tiny_mmlu), half, progress=False)
    # the analysis reads the half-precision file like any other: the same results as of the float32 run
    config = AnalysisConfig(maxk=10, gride_range=10, density_k=5, overlap_k=5, tree_min_size=2)
    full = tmp_path / "full"
    full.mkdir()
    (full / "hidden.h5").write_bytes((folder / "hidden.h5").read_bytes())
    keys = {}
    for copy in (full, half):
        run_analysis(copy, config, progress=False)
        with open(copy / "metrics.csv", newline="") as handle:
            keys[copy] = {
                (r["split"], r["condition"], r["layer"], r["metric"], r["grouping"]): r["value"]
                for r in csv.DictReader(handle)
            }
    lens = {key for key in keys[full] if key[3].startswith("lens_")}
    if store_dtype == "bfloat16":  # 8 mantissa bits cannot reproduce the stored logits to 1e-3: no lens, said why
        with h5py.File(half / "hidden.h5", "r") as f:
            assert f["conditions/2shot/head"].attrs["unavailable"]  # the reason, non-empty
        assert lens and keys[half].keys() == keys[full].keys() - lens
    else:
        assert lens and keys[half].keys() == keys[full].keys()
    for key in keys[full]:
        if key[3] == "n_distinct":  # every point stays distinct after rounding
            assert keys[half][key] == keys[full][key]


def test_a_device_map_that_offloads_blocks_to_disk_gives_the_same_states(run, tmp_path, tiny_model_dir, tiny_mmlu):
    """The big-model path (accelerate) on CPU: half the blocks on disk, brought in one at a time."""
    import json

    from extract.models import ModelError

    folder, accuracies = run
    blocks = json.loads((tiny_model_dir / "config.json").read_text())["num_hidden_layers"]
    placement = {
        "model.embed_tokens": "cpu",
        "model.norm": "cpu",
        "model.rotary_emb": "cpu",
        "lm_head": "cpu",
        **{f"model.layers.{i}": "disk" if i % 2 == 0 else "cpu" for i in range(blocks)},
    }
    device_map = tmp_path / "map.json"
    device_map.write_text(json.dumps(placement))
    split = tmp_path / "split"
    assert (
        run_extract(_config(tiny_model_dir, tiny_mmlu, device_map=str(device_map)), split, progress=False) == accuracies
    )
    with h5py.File(folder / "hidden.h5", "r") as whole, h5py.File(split / "hidden.h5", "r") as f:
        for name in ("0shot", "2shot"):
            for layer in range(store.hidden.n_layers(f, name)):
                np.testing.assert_allclose(
                    store.hidden.read_layer(f, name, layer),
                    store.hidden.read_layer(whole, name, layer),
                    rtol=1e-5,
                    atol=1e-5,
                )
            # the norms of offloaded blocks (on the meta device between forwards) are read all the same
            split_norms, whole_norms = store.readout.read_norms(f, name), store.readout.read_norms(whole, name)
            assert split_norms.kind == whole_norms.kind
            np.testing.assert_array_equal(split_norms.weight, whole_norms.weight)
            np.testing.assert_array_equal(
                store.readout.read_head(f, name).weight, store.readout.read_head(whole, name).weight
            )
    with pytest.raises(ModelError, match="both place the model"):
        run_extract(
            _config(tiny_model_dir, tiny_mmlu, device_map="auto", device="cpu"), tmp_path / "no", progress=False
        )


def test_extract_says_at_once_when_the_analysis_needs_more_eval_rows(capsys, tmp_path, tiny_model_dir, tiny_mmlu):
    """Before the fine-tune and the analysis are run for nothing: `make all` with a few rows."""
    args = [
        "extract",
        "--run",
        str(tmp_path / "small"),
        "--model",
        str(tiny_model_dir),
        "--task-data",
        str(tiny_mmlu),
        "--shots",
        "0",
        "--subjects",
        "all",
        "--per-subject",
        "4",
        "--train-per-subject",
        "0",
        "--no-progress",
    ]
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert re.search(
        r"note: \d+ eval rows, but landscape analyze needs more than its maxk \(suite 100, doimo2024 1000\): "
        r"pass it --maxk below \d+",
        err,
    ), err[-500:]


def test_train_subjects_are_recorded_kept_on_resume_and_checked(tmp_path, tiny_model_dir, tiny_mmlu, capsys):
    folder = tmp_path / "others"
    config = _config(tiny_model_dir, tiny_mmlu, shots=(0,), subjects="anatomy,astronomy", train_subjects="others")
    run_extract(config, folder, progress=False)
    ex = landscape.examples(folder)
    assert (ex.splits == "train").sum() == 5 and set(ex.first_group[ex.splits == "train"]) == {"world religions"}
    assert set(ex.first_group[ex.splits == "eval"]) == {"anatomy", "astronomy"}
    assert landscape.info(folder)["partition"]["train_values"] == ["world religions"]
    run_extract(config, folder, progress=False)  # the same request resumes (nothing to do)
    with pytest.raises(RunMismatch, match="partition"):
        run_extract(
            _config(tiny_model_dir, tiny_mmlu, shots=(0,), subjects="anatomy,astronomy", train_subjects="all"),
            folder,
            progress=False,
        )
    capsys.readouterr()
    assert (
        cli.main(
            [
                "extract",
                "--run",
                str(tmp_path / "bad"),
                "--model",
                str(tiny_model_dir),
                "--task-data",
                str(tiny_mmlu),
                "--subjects",
                "all",
                "--train-subjects",
                "others",
                "--demo-pool",
                "4",
                "--shots",
                "0",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none is left to train on" in err[0]
    assert not (tmp_path / "bad" / "hidden.h5").exists()
