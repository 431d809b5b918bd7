"""Shared fixtures: a tiny random-initialised Llama with a small BPE tokenizer, tiny MMLU data, a tiny
analysed run (built by tests/helpers.py's functions, which test files import from there).

Everything here is built from a config and seeded: no download, no embedded weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import SMALL, build_tiny_model, write_string_id_task, write_tiny_mmlu


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_mmlu(tmp_path_factory) -> Path:
    return write_tiny_mmlu(tmp_path_factory.mktemp("mmlu") / "mmlu.jsonl")


@pytest.fixture(scope="session")
def tiny(tiny_model_dir):
    """(model, tokenizer) of the tiny Llama, float32, CPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model_dir, tiny_mmlu):
    """A tiny extracted (0- and 1-shot, 3 subjects x 12) and analysed run, one per test module
    (some tests change it)."""
    from analyses.run import run_analysis
    from extract.icl import ExtractConfig, run_extract

    folder = tmp_path_factory.mktemp("arun")
    run_extract(
        ExtractConfig(
            model=str(tiny_model_dir),
            task_data=str(tiny_mmlu),
            shots=(0, 1),
            subjects="all",
            per_subject=12,
            demo_pool=2,
            train_per_subject=0,
            batch_size=8,
        ),
        folder,
        progress=False,
    )
    run_analysis(folder, SMALL, progress=False)
    return folder


@pytest.fixture
def string_id_task(tmp_path) -> Path:
    """A task file whose ``id`` field holds strings (3 values x 20 rows): its path."""
    return write_string_id_task(tmp_path / "strid")
