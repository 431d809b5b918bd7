"""Every bad input gets one line on stderr, a non-zero exit, no traceback, and loses nothing."""

import errno
import hashlib
import os
import shutil
import subprocess
import sys
import types
import warnings

import h5py
import numpy as np
import pytest

from landscape import cli, disk, runlock, store


def fails(argv, capsys, match: str, code: int | None = None) -> str:
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse
        rc = exit_.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc != 0 and (code is None or rc == code), (rc, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert match in lines[0], lines[0]
    return lines[0]


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_run(tiny_run, tmp_path, *, analysis: bool = True):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_run / "hidden.h5", run / "hidden.h5")
    if analysis:
        shutil.copy(tiny_run / "analysis.h5", run / "analysis.h5")
    return run


def extract_argv(run, tiny_model_dir, tiny_mmlu, *extra):
    return [
        "extract",
        "--run",
        run,
        "--model",
        tiny_model_dir,
        "--task-data",
        tiny_mmlu,
        "--subjects",
        "all",
        "--shots",
        "0,1",
        "--per-subject",
        12,
        "--demo-pool",
        2,
        "--train-per-subject",
        0,
        "--batch-size",
        8,
        "--no-progress",
        *extra,
    ]


SMALL_FLAGS = ["--maxk", 20, "--density-k", 8, "--overlap-k", 10, "--tree-min-size", 3, "--no-progress"]


def test_unknown_model_and_unreadable_model_folder(tmp_path, capsys, tiny_mmlu):
    base = ["extract", "--run", tmp_path / "r", "--task-data", tiny_mmlu, "--subjects", "all", "--no-progress"]
    fails([*base, "--model", "no-such-model-xyz"], capsys, "unknown model 'no-such-model-xyz'")
    (tmp_path / "empty").mkdir()
    fails([*base, "--model", tmp_path / "empty"], capsys, "has no config.json")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    fails([*base, "--model", broken], capsys, "landscape: error:")
    assert not (tmp_path / "r" / "hidden.h5").exists()


def test_truncated_hdf5_is_refused_and_kept(tiny_run, tmp_path, capsys, tiny_model_dir, tiny_mmlu):
    run = copy_run(tiny_run, tmp_path, analysis=False)
    data = (run / "hidden.h5").read_bytes()
    (run / "hidden.h5").write_bytes(data[: len(data) // 2])
    before = digest(run / "hidden.h5")
    fails(["analyze", run, *SMALL_FLAGS], capsys, "is not a readable HDF5 file")
    fails(["info", run], capsys, "is not a readable HDF5 file")
    fails(["report", run], capsys, "is not a readable HDF5 file")
    fails(extract_argv(run, tiny_model_dir, tiny_mmlu), capsys, "landscape: error:")
    assert digest(run / "hidden.h5") == before  # nothing replaced the damaged file
    (run / "hidden.h5").write_bytes(b"not an hdf5 file at all")
    fails(["analyze", run, *SMALL_FLAGS], capsys, "is not a readable HDF5 file")


def test_corrupt_analysis_file_is_refused_and_kept(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path)
    (run / "analysis.h5").write_bytes(b"\x89HDF\r\n\x1a\n garbage")
    fails(["analyze", run, *SMALL_FLAGS], capsys, "landscape: error:")
    fails(["report", run, "--png", "no"], capsys, "not a readable HDF5 file")
    assert (run / "analysis.h5").read_bytes() == b"\x89HDF\r\n\x1a\n garbage"


def test_file_of_another_schema_version(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path)
    with h5py.File(run / "hidden.h5", "a") as f:
        f.attrs["schema_version"] = 99
    fails(["analyze", run, *SMALL_FLAGS], capsys, "has schema version 99; this landscape reads version 2")
    fails(["info", run], capsys, "schema version 99")
    with h5py.File(run / "hidden.h5", "a") as f:
        f.attrs["schema_version"] = store.SCHEMA_VERSION
    with h5py.File(run / "analysis.h5", "a") as f:
        f.attrs["schema_version"] = 99
    fails(["analyze", run, *SMALL_FLAGS], capsys, "is not an analysis file of schema version 2")


def test_a_stage_before_the_one_it_needs(tiny_run, tmp_path, capsys, tiny_mmlu):
    empty = tmp_path / "empty"
    empty.mkdir()
    for command in (
        ["analyze", empty],
        ["finetune", empty, "--task-data", tiny_mmlu],
        ["report", empty],
        ["info", empty],
    ):
        fails(command, capsys, "run `landscape extract` first")
    run = copy_run(tiny_run, tmp_path, analysis=False)
    fails(["report", run, "--png", "no"], capsys, "run `landscape analyze")


def test_nan_or_inf_in_hidden_states(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path, analysis=False)
    with h5py.File(run / "hidden.h5", "a") as f:
        hidden = store.hidden.get_condition(f, "1shot")["hidden"]
        hidden[2, 5, 0] = np.nan
        hidden[3, 7, 1] = np.inf
    message = fails(["analyze", run, *SMALL_FLAGS], capsys, "holds NaN or inf")
    assert "1shot layer" in message


def test_too_few_examples_and_identical_points(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path, analysis=False)
    fails(["analyze", run, "--maxk", 500, "--no-progress"], capsys, "needs at least 501")
    with h5py.File(run / "hidden.h5", "a") as f:
        hidden = store.hidden.get_condition(f, "1shot")["hidden"]
        hidden[...] = 1.0  # every point of every layer the same
    fails(
        ["analyze", run, *SMALL_FLAGS, "--conditions", "1shot"], capsys, "no layer of 1shot (eval rows) has a geometry"
    )


def test_unknown_subject_split_condition_and_too_many_shots(tiny_run, tmp_path, capsys, tiny_model_dir, tiny_mmlu):
    fails(
        ["extract", "--run", tmp_path / "r", "--task-data", tiny_mmlu, "--subjects", "astrology"],
        capsys,
        "unknown subject 'astrology'",
    )
    fails(
        [
            "extract",
            "--run",
            tmp_path / "r",
            "--task-data",
            tiny_mmlu,
            "--subjects",
            "all",
            "--shots",
            "3",
            "--demo-pool",
            "2",
        ],
        capsys,
        "3 shots asked but the demo pool holds 2",
    )
    run = copy_run(tiny_run, tmp_path)
    fails(["analyze", run, *SMALL_FLAGS, "--splits", "test"], capsys, "no 'test' rows")
    fails(["analyze", run, *SMALL_FLAGS, "--conditions", "7shot"], capsys, "no condition '7shot'")
    fails(
        ["extract", "--run", tmp_path / "r", "--demos", "shuffled"], capsys, "unknown demo sampling 'shuffled'", code=2
    )


@pytest.mark.parametrize(
    "argv, match",
    [
        (["extract", "--per-subject", "abc"], "'abc' is not an integer"),
        (["extract", "--per-subject", "-1"], "'-1' must be >= 1"),
        (["extract", "--batch-size", "0"], "'0' must be >= 1"),
        (["extract", "--shots", "0,x"], "bad shots '0,x'"),
        (["finetune", "--lr=-1e-4"], "must be a positive finite number"),
        (["finetune", "--dropout", "nan"], "must be in [0, 1)"),
        (["analyze", "--maxk", "0"], "'0' must be >= 1"),
        (["analyze", "--Z", "inf"], "must be a positive finite number"),
        (["report", "--map-neighbors", "many"], "'many' is not an integer"),
        (["analyze", "--layers", "1,a"], "bad layer list"),
    ],
)
def test_non_numeric_and_negative_options(argv, match, capsys):
    line = fails(argv, capsys, match, code=2)
    assert "--help" in line  # the usage is one command away, not printed


def test_unwritable_output_folder(tmp_path, capsys, tiny_model_dir, tiny_mmlu):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    fails(extract_argv(blocker / "run", tiny_model_dir, tiny_mmlu), capsys, "landscape: error:")
    assert blocker.read_text() == ""


def test_a_disk_that_fills_mid_write(tiny_run, tmp_path, capsys, monkeypatch, tiny_model_dir, tiny_mmlu):
    """ENOSPC after two batches: one line, the rows written so far are kept, and a re-run with
    room completes the file exactly as an uninterrupted run."""
    run = tmp_path / "run"
    real_write = store.hidden.write_rows
    calls = {"n": 0}

    def full_disk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(*args, **kwargs)

    monkeypatch.setattr(store.hidden, "write_rows", full_disk)
    line = fails(extract_argv(run, tiny_model_dir, tiny_mmlu), capsys, "No space left on device")
    assert "while writing 0shot's states to" in line and "run the same command again" in line
    with h5py.File(run / "hidden.h5", "r") as f:
        done = store.hidden.rows_done(store.hidden.get_condition(f, "0shot"))
        assert done.sum() == 12  # the first subject's two batches (8 + 4 rows), kept
    monkeypatch.setattr(store.hidden, "write_rows", real_write)
    assert cli.main([str(a) for a in extract_argv(run, tiny_model_dir, tiny_mmlu)]) == 0
    with h5py.File(run / "hidden.h5", "r") as a, h5py.File(tiny_run / "hidden.h5", "r") as b:
        for name in ("0shot", "1shot"):
            np.testing.assert_array_equal(
                store.hidden.get_condition(a, name)["hidden"][:], store.hidden.get_condition(b, name)["hidden"][:]
            )


@pytest.mark.parametrize("room_for", [0, 3])  # free_bytes calls that find room: none, or the condition's and 2 batches'
def test_states_that_will_not_fit_are_refused_before_they_are_written(
    room_for, tiny_run, tmp_path, capsys, monkeypatch, tiny_model_dir, tiny_mmlu
):
    """The room of the run's disk is checked before a condition (its rows x layers x width) and
    before each batch, not found out by HDF5 mid-write: one line, then the same command resumes."""
    run = tmp_path / "run"
    real_free, calls = disk.free_bytes, {"n": 0}

    def free(folder):
        calls["n"] += 1
        return 10**12 if calls["n"] <= room_for else disk.RESERVE + 1000

    monkeypatch.setattr(disk, "free_bytes", free)
    line = fails(extract_argv(run, tiny_model_dir, tiny_mmlu), capsys, "no room for")
    assert (
        "the states of 0shot (36 rows x 4 layers x 32, float32)"
        if room_for == 0
        else "the next batch of 0shot's states"
    ) in line
    assert "it needs 18.0 KiB" in line or room_for, line
    assert "run the same command again: it resumes" in line
    with h5py.File(run / "hidden.h5", "r") as f:
        assert store.hidden.rows_done(store.hidden.get_condition(f, "0shot")).sum() == (0 if room_for == 0 else 12)
    monkeypatch.setattr(disk, "free_bytes", real_free)
    assert cli.main([str(a) for a in extract_argv(run, tiny_model_dir, tiny_mmlu)]) == 0
    with h5py.File(run / "hidden.h5", "r") as a, h5py.File(tiny_run / "hidden.h5", "r") as b:
        for name in ("0shot", "1shot"):
            np.testing.assert_array_equal(
                store.hidden.get_condition(a, name)["hidden"][:], store.hidden.get_condition(b, name)["hidden"][:]
            )


def test_full_disk_messages_name_the_file_and_the_way_on():
    """What h5py raises on a full disk (an OSError mid-write, a RuntimeError when it cannot flush
    what it closes) becomes one line naming the file; other errors are left alone."""
    hdf5 = RuntimeError(
        "Can't decrement id ref count (file write failed: time = Mon Dec  7 2026\n, filename = "
        "'runs/x/hidden.h5', file descriptor = 3, errno = 28, error message = 'No space left on device')"
    )
    assert disk.is_full(hdf5) and disk.hdf5_failed(hdf5)
    line = disk.full_message(hdf5)
    assert "while writing runs/x/hidden.h5" in line and "run the same command again" in line and "\n" not in line
    try:
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as error:
            raise disk.DiskFull("no room for this") from error
    except disk.DiskFull as ours:
        assert disk.is_full(ours) and not disk.hdf5_failed(ours) and disk.full_message(ours) == "no room for this"
    assert not disk.is_full(RuntimeError("something else")) and not disk.is_full(None)


def test_a_full_disk_hdf5_can_only_report_is_one_line(capsys, monkeypatch):
    """h5py meets a full disk flushing an object it releases: it cannot raise, only print the error
    (with HDF5's stack) and go on. The command still ends in the one line, without that noise, and
    leaves at once: HDF5 can no longer close the file, and its cleanup would crash at exit."""
    from landscape.cli import tasks

    class Dataset:  # as h5py's, released while the disk is full
        def __del__(self):
            raise RuntimeError(
                "Can't decrement id ref count (file write failed: time = Mon Dec  7 19:26:51 2026\n, "
                "filename = 'runs/x/hidden.h5', errno = 28, error message = 'No space left on device')"
            )

    def leave(code):
        raise SystemExit(code)

    monkeypatch.setattr(tasks, "run", lambda args: Dataset())  # released at once; the command "succeeds"
    monkeypatch.setattr(cli.os, "_exit", leave)
    line = fails(["tasks"], capsys, "the disk is full (No space left on device) while writing runs/x/hidden.h5", code=1)
    assert "run the same command again" in line


def _hold(code: str, tmp_path) -> subprocess.Popen:
    """A child process that runs ``code`` (it holds something) and says "held"; the caller stops it."""
    child = subprocess.Popen(
        [sys.executable, "-c", code + "\nprint('held', flush=True)\nimport time; time.sleep(120)"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_run_another_landscape_process_writes_is_refused(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path)
    before = digest(run / "analysis.h5")
    child = _hold(f"from landscape import runlock\nlock = runlock.writing({str(run)!r})\nlock.__enter__()", tmp_path)
    try:
        line = fails(
            ["analyze", run, *SMALL_FLAGS], capsys, f"another landscape process (pid {child.pid}) is writing this run"
        )
        assert "wait for it to finish, or stop it (kill" in line
        fails(["claims", run], capsys, f"(pid {child.pid})")
    finally:
        child.kill()
        child.wait()
    assert digest(run / "analysis.h5") == before
    assert runlock.holder(run) is None  # its lock went with it: the file it left blocks nobody
    assert cli.main(["claims", str(run), "--n-boot", "100"]) == 0
    assert not (run / runlock.LOCK_FILE).exists()


def test_a_stale_lock_file_does_not_block(tiny_run, tmp_path, capsys, tiny_model_dir, tiny_mmlu):
    run = copy_run(tiny_run, tmp_path, analysis=False)
    (run / runlock.LOCK_FILE).write_text("999999999 a-host-long-gone\n")  # a killed process's, no lock held
    assert runlock.holder(run) is None
    assert cli.main([str(a) for a in extract_argv(run, tiny_model_dir, tiny_mmlu)]) == 0
    assert "already complete" in capsys.readouterr().err
    assert not (run / runlock.LOCK_FILE).exists()


@pytest.mark.skipif(os.environ.get("HDF5_USE_FILE_LOCKING", "").upper() == "FALSE", reason="HDF5 file locking is off")
def test_a_file_another_process_holds_open_is_one_line(tiny_run, tmp_path, capsys, tiny_model_dir, tiny_mmlu):
    """HDF5's own lock ("unable to lock file", errno 11): a process outside landscape holds hidden.h5."""
    run = copy_run(tiny_run, tmp_path)
    child = _hold(f"import h5py\nf = h5py.File({str(run / 'hidden.h5')!r}, 'a')", tmp_path)
    try:
        line = fails(extract_argv(run, tiny_model_dir, tiny_mmlu), capsys, "another process is writing this run")
        assert "Errno" not in line and "then run this command again" in line
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize(
    "argv, module, extra",
    [
        (["analyze", "RUN", "--ray"], "ray", "ray"),
        (["report", "RUN", "--png", "yes"], "kaleido", "png"),
        (["report", "RUN", "--check"], "playwright", "check"),
        (["compare", "RUN", "RUN", "--out", "OUT", "--check"], "playwright", "check"),
    ],
)
def test_a_missing_optional_part_names_its_extra(argv, module, extra, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    argv = [{"RUN": tmp_path, "OUT": tmp_path / "out"}.get(a, a) for a in argv]
    fails(argv, capsys, f"needs the {module} package: pip install 'landscape[{extra}]'")
    assert not list(tmp_path.iterdir())  # refused before anything was written


@pytest.mark.filterwarnings("always")
@pytest.mark.parametrize("debug", [False, True])
def test_warnings_of_other_packages_only_with_debug(debug, tmp_path, capsys, monkeypatch, recwarn):
    """A FutureWarning from a package not ours (transformers' deprecations in `make all`) is hidden,
    and shown with --debug; ours are always shown."""
    outside, inside = types.ModuleType("some_dependency"), types.ModuleType("landscape.some_module")
    code = "import warnings\ndef warn(text, category):\n    warnings.warn(text, category)\n"
    exec(code, outside.__dict__)
    exec(code, inside.__dict__)
    from landscape.cli import tasks

    def run(args):
        outside.warn("`is_gradient_checkpointing` is deprecated", FutureWarning)
        inside.warn("a warning of ours", UserWarning)

    monkeypatch.setattr(tasks, "run", run)
    assert cli.main(["--debug", "tasks"] if debug else ["tasks"]) == 0
    shown = [str(w.message) for w in recwarn]
    assert ("`is_gradient_checkpointing` is deprecated" in shown) == debug
    assert "a warning of ours" in shown
    warnings.warn("after the command", FutureWarning, stacklevel=1)  # the filters were the command's alone
    assert "after the command" in [str(w.message) for w in recwarn]


def test_a_disk_that_fills_while_replacing_a_file_keeps_the_old_one(tiny_run, tmp_path, capsys, monkeypatch):
    run = copy_run(tiny_run, tmp_path)
    shutil.copy(tiny_run / "metrics.csv", run / "metrics.csv")
    before = (run / "metrics.csv").read_text()
    import analyses.metrics

    class FullDisk:
        def __init__(self, handle):
            pass

        def writerow(self, row):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(analyses.metrics.csv, "writer", FullDisk)
    fails(["analyze", run, *SMALL_FLAGS], capsys, "No space left on device")
    assert (run / "metrics.csv").read_text() == before
    assert sorted(p.name for p in run.iterdir()) == ["analysis.h5", "hidden.h5", "metrics.csv"]  # no temporary left


def test_info_prints_provenance_and_stages(tiny_run, tmp_path, capsys):
    assert cli.main(["info", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    for expected in (
        "model",
        "sha256",
        "extract:",
        "0shot",
        "complete",
        "analyze:",
        "layers complete",
        "finetune: not run",
        "report: not written",
    ):
        assert expected in out, expected
    assert cli.main(["info", str(tiny_run), "--json"]) == 0
    import json

    info = json.loads(capsys.readouterr().out)
    condition = info["conditions"]["1shot"]
    assert {"command", "created_at", "versions"} <= set(condition)  # each output says how it was made
    assert (
        info["stages"]["analyze"]["command"].startswith("landscape")
        or info["stages"]["analyze"]["command"] == "landscape"
    )
    assert info["versions"]["numpy"] == np.__version__
    run = copy_run(tiny_run, tmp_path)
    with h5py.File(run / "hidden.h5", "a") as f:
        group = store.hidden.get_condition(f, "1shot")
        group.attrs["complete"] = False
        group["done"][:5] = False
    assert cli.main(["info", str(run)]) == 0
    assert "INCOMPLETE (31/36 rows)" in capsys.readouterr().out
