"""Batches by a token budget (extract.budget, conditions.Batching), the device path's copies, and
the GPU's states against the CPU's (wherever cuda is present)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from extract import budget, forward
from extract.conditions import Batching
from extract.icl import ExtractConfig, run_extract
from landscape import store


def _items(lengths: list[int]) -> list[tuple[int, list[int]]]:
    return [(row, [1] * length) for row, length in enumerate(lengths)]


def test_batches_by_rows_keep_the_length_order_with_ties_in_row_order():
    batches = Batching(rows=2).cut(_items([5, 3, 5, 1, 3]), prefix_tokens=0)
    assert [[row for row, _ in b] for b in batches] == [[3, 1], [4, 0], [2]]


@pytest.mark.parametrize("prefix, per_row", [(0, 1), (7, 1), (3, 4)])
def test_a_token_budget_fills_each_batch_and_keeps_every_row_once(prefix, per_row):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 40, 200).tolist()
    cut = Batching(rows=8, token_budget=300, sequences_per_row=per_row).cut(_items(lengths), prefix_tokens=prefix)
    rows = [row for batch in cut for row, _ in batch]
    assert sorted(rows) == list(range(200))
    assert [lengths[r] for r in rows] == sorted(lengths)  # one length order across the batches
    for batch, following in zip(cut, [*cut[1:], None], strict=True):
        cost = len(batch) * (prefix + max(len(ids) for _, ids in batch)) * per_row
        assert cost <= 300 or len(batch) == 1  # a row alone over the budget is a batch of its own
        if following:  # filled: the next row would not have fit
            assert (len(batch) + 1) * (prefix + len(following[0][1])) * per_row > 300


def test_a_transformers_that_gathers_every_rows_position_keeps_batches_of_rows(monkeypatch, capsys):
    """Before 5.23, transformers took all B last positions for every row (B^2 rows of logits): a
    token budget's hundreds of rows would take gigabytes, so it is refused in one line."""
    monkeypatch.setattr(budget, "_transformers_version", lambda: "5.17.0")
    assert budget.token_budget(640, torch.nn.Linear(2, 2), torch.device("cpu")) is None
    assert "transformers 5.17.0 computes a batch of B rows' logits at B x B positions" in capsys.readouterr().err
    monkeypatch.setattr(budget, "_transformers_version", lambda: "5.23.0")
    assert budget.token_budget(640, torch.nn.Linear(2, 2), torch.device("cpu")) == 640


def test_the_budget_settings():
    assert budget.parse_token_budget("auto") == "auto" and budget.parse_token_budget("512") == 512
    for bad in ("0", "-3", "many", "1.5"):
        with pytest.raises(ValueError, match="token budget must be auto, off or a positive number"):
            budget.parse_token_budget(bad)
    model = torch.nn.Linear(2, 2)
    assert budget.token_budget("auto", model, torch.device("cpu")) is None  # the CPU keeps batches of rows
    assert budget.token_budget("off", model, torch.device("cuda")) is None
    assert budget.token_budget(640, model, torch.device("cpu")) == 640
    assert budget.micro_tokens_on_device(model, torch.device("cpu")) is None
    with pytest.raises(ValueError, match="token_budget must be"):
        ExtractConfig(token_budget=0).validate()


def test_batches_by_tokens_give_the_same_rows_and_states(tmp_path, tiny_model_dir, tiny_mmlu):
    """Same rows in the same places, the states equal to float tolerance (other batch shapes),
    the same predictions; the condition records how it was batched."""
    common = dict(
        model=str(tiny_model_dir),
        task_data=str(tiny_mmlu),
        shots=(0, 2),
        demos=("fixed", "resampled"),
        subjects="all",
        per_subject=10,
        demo_pool=3,
        train_per_subject=2,
        batch_size=4,
    )
    run_extract(ExtractConfig(**common), tmp_path / "rows", progress=False)
    run_extract(ExtractConfig(**common, token_budget=1500), tmp_path / "tokens", progress=False)
    with h5py.File(tmp_path / "rows" / "hidden.h5", "r") as a, h5py.File(tmp_path / "tokens" / "hidden.h5", "r") as b:
        np.testing.assert_array_equal(store.hidden.read_examples(a).ids, store.hidden.read_examples(b).ids)
        for name in store.hidden.condition_names(a):
            for layer in store.hidden.stored_layers(a, name):
                np.testing.assert_allclose(
                    store.hidden.read_layer(b, name, layer),
                    store.hidden.read_layer(a, name, layer),
                    rtol=1e-4,
                    atol=1e-5,
                )
            np.testing.assert_array_equal(store.hidden.read_outputs(b, name)[2], store.hidden.read_outputs(a, name)[2])
            rows, tokens = (store.hidden.condition_attrs(store.hidden.get_condition(f, name)) for f in (a, b))
            assert rows["batch_size"] == 4 and "token_budget" not in rows
            assert tokens["token_budget"] == 1500 and tokens["batches_run"] <= rows["batches_run"]
            if name == "0shot":  # short prompts: more than 4 rows a batch
                assert tokens["batches_run"] < rows["batches_run"]


def test_host_copies_are_complete_after_wait(tiny):
    model, tokenizer = tiny
    ids = [tokenizer.encode(text) for text in ("The answer is", "Which of these")]
    out = forward.last_token_states(model, ids, prefix=None, letter_ids=[5, 6, 7, 8], non_blocking=True).wait()
    again = forward.last_token_states(model, ids, prefix=None, letter_ids=[5, 6, 7, 8])
    assert out.hidden.device.type == "cpu" and torch.equal(out.hidden, again.hidden)
    assert torch.equal(out.letter_logits, again.letter_logits)


def test_a_fine_tune_resumes_with_the_micro_batch_it_recorded(tmp_path, tiny_model_dir):
    """A micro-batch sized by the device's memory may come out other on a restart: the one
    settings.json recorded is kept (a resume state must match it), unless --overwrite."""
    from types import SimpleNamespace

    from transformers import AutoConfig

    from extract.finetune import _micro_tokens
    from extract.finetune_config import FinetuneConfig, micro_tokens_for
    from extract.ranks import Ranks

    model = SimpleNamespace(
        config=AutoConfig.from_pretrained(tiny_model_dir), get_input_embeddings=lambda: torch.nn.Embedding(2, 2)
    )
    run = SimpleNamespace(hidden=tmp_path / "hidden.h5")
    assert _micro_tokens(model, run, FinetuneConfig(), Ranks(), overwrite=False) == micro_tokens_for(model.config)
    (tmp_path / "adapters" / "sft").mkdir(parents=True)
    (tmp_path / "adapters" / "sft" / "settings.json").write_text(json.dumps({"micro_tokens": 192}))
    assert _micro_tokens(model, run, FinetuneConfig(), Ranks(), overwrite=False) == 192
    assert _micro_tokens(model, run, FinetuneConfig(), Ranks(), overwrite=True) == micro_tokens_for(model.config)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU's states are checked where one is")
def test_the_gpus_states_equal_the_cpus(tmp_path, tiny_model_dir, tiny_mmlu):
    """Float32 on cuda (batches by the free memory's token budget, copies without blocking) against
    the CPU (batches of rows): every layer's states to float tolerance, the same predictions."""
    common = dict(
        model=str(tiny_model_dir),
        task_data=str(tiny_mmlu),
        shots=(0, 2),
        subjects="all",
        per_subject=10,
        demo_pool=3,
        train_per_subject=2,
        dtype="float32",
    )
    run_extract(ExtractConfig(**common, device="cpu"), tmp_path / "cpu", progress=False)
    run_extract(ExtractConfig(**common, device="cuda"), tmp_path / "cuda", progress=False)
    with h5py.File(tmp_path / "cpu" / "hidden.h5", "r") as a, h5py.File(tmp_path / "cuda" / "hidden.h5", "r") as b:
        for name in store.hidden.condition_names(a):
            assert "token_budget" in store.hidden.condition_attrs(store.hidden.get_condition(b, name))
            for layer in store.hidden.stored_layers(a, name):
                np.testing.assert_allclose(
                    store.hidden.read_layer(b, name, layer),
                    store.hidden.read_layer(a, name, layer),
                    rtol=1e-3,
                    atol=1e-4,
                )
            np.testing.assert_array_equal(store.hidden.read_outputs(b, name)[2], store.hidden.read_outputs(a, name)[2])


def test_the_gpu_benchmark_runs_its_model_section_at_a_tiny_shape_on_the_cpu(tmp_path):
    """bench/bench_gpu.py is what a GPU session runs in its few minutes: checked here at a tiny
    shape (--smoke-cpu), so that it does not rot between the sessions that have a GPU."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [
            sys.executable,
            str(root / "bench" / "bench_gpu.py"),
            "--smoke-cpu",
            "--skip-knn",
            "--subjects",
            "largest:2",
            "--per-subject",
            "4",
            "--train-per-subject",
            "4",
            "--json",
            str(tmp_path / "gpu.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads((tmp_path / "gpu.json").read_text())
    assert out["cpu_vs_gpu"]["predictions_agree"] == 1.0 and out["cpu_vs_gpu"]["max_rel_state_diff"] < 1e-3
    model = out["model"]
    assert [r["condition"] for r in model["extract_after"]] == ["0shot", "5shot"]
    assert all(r["token_budget"] == 2048 and r["tokens_run"] > 0 and r["tflops"] > 0 for r in model["extract_after"])
    assert all(r["batch_size"] == 8 for r in model["extract_before"])
    assert model["states_rows_vs_tokens"]["predictions_agree"] == 1.0
    assert model["finetune_after"]["steps"] == 1 and model["finetune_after"]["tokens_per_s"] > 0
    assert set(model["paper_projection"]) == {"before", "after"}


def test_the_benchmarks_flop_count_at_the_8b_shape():
    """2 x Llama-3-8B's 6,979,321,856 block weights a token, the choice head at the last token,
    and QK^T + AV over the causal context (a token attends to the prefix and to itself)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import gpu_model

    config = gpu_model.model_config("8b", 49152)
    matrix, attention = gpu_model.forward_flops(config, np.array([1]), np.array([0]))
    assert matrix == 2 * 6_979_321_856 + 2 * 4096 * 49152
    assert attention == 2 * 2 * 32 * 4096 * 1
    _, with_prefix = gpu_model.forward_flops(config, np.array([10]), np.array([100]))
    assert with_prefix == 2 * 2 * 32 * 4096 * (10 * 100 + 55)


def test_lora_runs_in_a_half_precision_models_dtype_with_float32_weights(tiny_model_dir, tiny):
    """A bfloat16 model (a GPU's default): LoRA's branch gets bfloat16 inputs under autocast (peft
    would cast them up to its float32 weights), its weights and updates stay float32; a float32
    model is left alone."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from extract.finetune_config import FinetuneConfig
    from extract.lora import TrainData, lora_in_model_dtype, train_lora

    _, tokenizer = tiny
    seen: dict[str, set] = {"float32": set(), "bfloat16": set()}
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=dtype)
        model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
        lora_a = [m for name, m in model.named_modules() if name.endswith("lora_A.default")]
        assert lora_a and all(m.weight.dtype == torch.float32 for m in lora_a)  # peft keeps adapters in float32
        name = str(dtype).removeprefix("torch.")
        handles = [
            m.register_forward_hook(
                lambda _m, inputs, output, name=name: seen[name].add((inputs[0].dtype, output.dtype))
            )
            for m in lora_a
        ]
        ids = tokenizer.encode("Which planet is largest?\nAnswer:")
        with lora_in_model_dtype(model):
            forward.letter_log_probs(model, [ids], letter_ids=[5, 6, 7, 8])
        for handle in handles:
            handle.remove()
        rng = np.random.default_rng(0)
        train = TrainData(rows=np.arange(8), tokens=[ids] * 8, labels=rng.integers(0, 4, 8), weights=np.ones(8))
        record = train_lora(
            model,
            train,
            FinetuneConfig(epochs=1, batch_size=4, lr=1e-2, micro_tokens=64),
            scoring=forward.Scoring([5, 6, 7, 8]),
            progress=False,
        )
        assert np.isfinite(record["online_bits"]).all() and all(m.weight.dtype == torch.float32 for m in lora_a)
    assert seen["float32"] == {(torch.float32, torch.float32)}
    assert seen["bfloat16"] == {(torch.bfloat16, torch.bfloat16)}
