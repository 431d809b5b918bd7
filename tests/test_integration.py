"""The real embedded model (SmolLM2-135M-Instruct from its GGUF wheel) on a handful of MMLU questions."""

import numpy as np
import pytest
import torch

import landscape
from extract import icl, models
from extract.icl import ExtractConfig, run_extract
from landscape import tasks

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smollm():
    return models.resolve_model("smollm2-135m")


def test_conversion_reproduces_the_gguf_model(smollm):
    from transformers import AutoModelForCausalLM

    gguf = models.locate_gguf(models.EMBEDDED["smollm2-135m"])
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    converted, tokenizer = models.load_model(smollm, torch.device("cpu"), torch.float32)
    ids = torch.tensor([tokenizer.encode("The following are multiple choice questions (with answers) about anatomy.")])
    with torch.no_grad():
        torch.testing.assert_close(converted(ids).logits, direct(ids).logits, rtol=1e-5, atol=1e-4)
    assert converted.config.num_hidden_layers == 30 and converted.config.hidden_size == 576
    mmlu, _ = tasks.load_items(tasks.load_task("mmlu"))
    assert len(set(icl.choice_scoring(mmlu, tokenizer).letter_ids)) == 4
    assert models.resolve_model("smollm2-135m") == smollm  # the cache is reused


def test_real_extraction_cached_equals_full_prompt(tmp_path):
    base = dict(shots=(0, 5), subjects="anatomy,astronomy", per_subject=3, train_per_subject=2, batch_size=3)
    cached = run_extract(ExtractConfig(**base), tmp_path / "cached", progress=False)
    full = run_extract(ExtractConfig(**base, prefix_cache=False), tmp_path / "full", progress=False)
    assert set(cached) == {"0shot", "5shot"} and all(0.0 <= a <= 1.0 for a in cached.values())
    assert cached == full
    for name in ("0shot", "5shot"):
        for layer in (1, 15, 30):
            a = landscape.load_layer(tmp_path / "cached", name, layer).X
            b = landscape.load_layer(tmp_path / "full", name, layer).X
            assert a.shape == (10, 576)
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * np.abs(b).max())
    from tests.helpers import assert_lens_is_the_models_logits

    assert_lens_is_the_models_logits(tmp_path / "cached")  # the logit lens at layer 30 = SmolLM2's own logits
    zero = landscape.load_layer(tmp_path / "cached", "0shot", 20).X
    five = landscape.load_layer(tmp_path / "cached", "5shot", 20).X
    assert not np.allclose(zero, five)  # the demos change the representation


@pytest.mark.parametrize("kind", ["arith", "exam"])
def test_your_own_task_end_to_end_on_smollm2(kind, tmp_path):
    """A 3-choice, two-group CSV task and a 5-choice list-field, text-answer jsonl task: extract,
    finetune, analyze, report on the embedded model, both groupings in the report."""
    from landscape import cli
    from tests.helpers import write_arith, write_exam

    task_file = (write_arith if kind == "arith" else write_exam)(tmp_path / "task")
    run = tmp_path / "run"
    assert (
        cli.main(
            [
                "extract",
                "--run",
                str(run),
                "--task",
                str(task_file),
                "--subjects",
                "all",
                "--per-subject",
                "12",
                "--demo-pool",
                "2",
                "--train-per-subject",
                "4",
                "--shots",
                "0,1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert cli.main(["finetune", str(run), "--rank", "4", "--epochs", "1", "--batch-size", "8", "--no-progress"]) == 0
    assert (
        cli.main(
            [
                "analyze",
                str(run),
                "--maxk",
                "10",
                "--density-k",
                "5",
                "--overlap-k",
                "5",
                "--tree-min-size",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    assert cli.main(["report", str(run), "--map-method", "pca", "--png", "no", "--no-progress"]) == 0
    page = (run / "report" / "index.html").read_text()
    for grouping in ["op", "size"] if kind == "arith" else ["area"]:
        assert f"ARI ~ {grouping}" in page
    info = landscape.info(run)
    assert info["task"] == ("arith" if kind == "arith" else "exam5") and len(info["choice_labels"]) == (
        3 if kind == "arith" else 5
    )


@pytest.mark.parametrize("name,kind", [("smollm2-135m", "rms"), ("gemma3-270m", "rms_offset")])
def test_normed_states_equal_the_real_models_own_norms(name, kind):
    """--states normed, computed from the stored residual, is the model's own input_layernorm output
    (Gemma's gain is 1 + w), at every layer, on a real MMLU prompt."""
    from tests.helpers import assert_normed_equal_own

    model, tokenizer = models.load_model(models.resolve_model(name), torch.device("cpu"), torch.float32)
    mmlu, items = tasks.load_items(tasks.load_task("mmlu"))
    ids = tokenizer.encode(
        tasks.render_prefix(mmlu, items[0], []) + tasks.render_question(mmlu, items[0]), add_special_tokens=False
    )
    assert_normed_equal_own(model, ids, kind)


def test_gemma_extraction_stores_a_lens_that_reproduces_its_logits(tmp_path):
    """Gemma-3-270M: its norm has the (1 + w) gain and its embedding is scaled; the stored norm and
    head rows must still give its own choice logits at the last layer."""
    from tests.helpers import assert_lens_is_the_models_logits

    run_extract(
        ExtractConfig(
            model="gemma3-270m",
            shots=(0,),
            subjects="anatomy,astronomy",
            per_subject=3,
            train_per_subject=0,
            batch_size=3,
        ),
        tmp_path,
        progress=False,
    )
    assert_lens_is_the_models_logits(tmp_path)


def test_smollm2_split_over_cpu_and_disk_gives_the_same_states(tmp_path):
    """--device-map with every other block of SmolLM2 offloaded to disk (accelerate's big-model path)."""
    import json

    placement = {
        "model.embed_tokens": "cpu",
        "model.norm": "cpu",
        "model.rotary_emb": "cpu",
        "lm_head": "cpu",
        **{f"model.layers.{i}": "disk" if i % 2 == 0 else "cpu" for i in range(30)},
    }
    (tmp_path / "map.json").write_text(json.dumps(placement))
    base = dict(shots=(0, 2), subjects="anatomy", per_subject=3, train_per_subject=0, batch_size=3)
    whole = run_extract(ExtractConfig(**base), tmp_path / "whole", progress=False)
    split = run_extract(
        ExtractConfig(**base, device_map=str(tmp_path / "map.json")), tmp_path / "split", progress=False
    )
    assert split == whole
    for name in ("0shot", "2shot"):
        for layer in (0, 1, 14, 15, 30):
            a = landscape.load_layer(tmp_path / "split", name, layer).X
            b = landscape.load_layer(tmp_path / "whole", name, layer).X
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())


@pytest.mark.parametrize("name,blocks,width", [("qwen2.5-coder-0.5b", 24, 896), ("qwen2.5-coder-1.5b", 28, 1536)])
def test_qwen_models_assemble_convert_and_extract(name, blocks, width, tmp_path):
    """The split Qwen2.5-Coder GGUFs: parts assembled and hash-checked, converted once, and a
    0-shot extraction whose stored lens gives the model's own choice logits (tied head on the 0.5B)."""
    from tests.helpers import assert_lens_is_the_models_logits

    resolved = models.resolve_model(name)
    assert resolved.sha256 == models.EMBEDDED[name].sha256 and "part1.." in resolved.source
    assert models.resolve_model(name) == resolved  # the converted folder is reused
    run_extract(
        ExtractConfig(
            model=name, shots=(0,), subjects="anatomy,astronomy", per_subject=2, train_per_subject=0, batch_size=4
        ),
        tmp_path,
        progress=False,
    )
    info = landscape.info(tmp_path)
    assert info["model_hash"] == resolved.sha256
    layer = landscape.load_layer(tmp_path, "0shot", blocks)
    assert layer.X.shape == (4, width) and landscape.conditions(tmp_path) == ["0shot"]
    assert_lens_is_the_models_logits(tmp_path)
