"""LoRA fine-tuning and the prequential code on the tiny model: bookkeeping, order, resume."""

import math

import h5py
import numpy as np
import pytest
import torch

import landscape
from extract import forward, lora, prequential
from extract.finetune import FinetuneConfig, run_finetune
from extract.icl import ExtractConfig, run_extract
from extract.lora import TrainData, train_lora
from extract.prequential import bits_from_logits
from landscape import cli, store

LETTERS = [" A", " B", " C", " D"]


@pytest.fixture(scope="module")
def ft_run(tmp_path_factory, tiny_model_dir, tiny_mmlu):
    folder = tmp_path_factory.mktemp("ftrun")
    run_extract(
        ExtractConfig(
            model=str(tiny_model_dir),
            task_data=str(tiny_mmlu),
            shots=(0,),
            subjects="all",
            per_subject=6,
            demo_pool=2,
            train_per_subject=8,
            batch_size=8,
        ),
        folder,
        progress=False,
    )
    config = FinetuneConfig(
        rank=4, alpha=8, dropout=0.0, lr=5e-3, epochs=2, batch_size=4, task_data=str(tiny_mmlu), checkpoints=(3,)
    )
    summary = run_finetune(folder, config, progress=False)
    return folder, summary


def _tiny_peft(tiny_model_dir, dropout=0.0):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    return get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["q_proj", "v_proj"])
    )


def _train_data(tok, n=12, seed=0):
    rng = np.random.default_rng(seed)
    words = ["star", "bone", "orbit", "cell", "god", "planet"]
    tokens = [tok.encode(" ".join(rng.choice(words, 6)) + "\nAnswer:") for _ in range(n)]
    return TrainData(rows=np.arange(n), tokens=tokens, labels=rng.integers(0, 4, n), weights=np.ones(n))


def test_edl_record_adds_up_in_bits(ft_run):
    folder, summary = ft_run
    with h5py.File(folder / "hidden.h5") as f:
        arrays, attrs = store.edl.read_edl(f, "sft")
        base_logits, _, _ = store.hidden.read_outputs(f, "0shot")
        sft_logits, _, _ = store.hidden.read_outputs(f, "sft")
    ex = landscape.examples(folder)
    train_rows = np.flatnonzero(ex.splits == "train")
    np.testing.assert_array_equal(arrays["rows"], train_rows)
    assert attrs["n_train"] == 24 and attrs["uniform_bits"] == 48.0 and attrs["labels"] == "true"
    assert attrs["mdl_bits"] == pytest.approx(arrays["online_bits"].sum())
    assert attrs["final_bits"] == pytest.approx(arrays["final_bits"].sum())
    per_example = arrays["online_bits"] - arrays["final_bits"]
    assert (
        per_example.sum()
        == pytest.approx(attrs["edl_train_bits"])
        == pytest.approx(attrs["mdl_bits"] - attrs["final_bits"])
    )
    # the headline EDL: the residual is n x the final model's mean bits on held-out (eval) rows
    assert attrs["heldout_residual_bits"] == pytest.approx(24 * arrays["eval_final_bits"].mean())
    assert attrs["edl_heldout_bits"] == pytest.approx(attrs["mdl_bits"] - attrs["heldout_residual_bits"])
    assert attrs["edl_per_example"] == pytest.approx(attrs["edl_heldout_bits"] / 24)
    assert attrs["gain_beyond_format_bits"] == pytest.approx(
        24 * (arrays["heldout_format_bits"].mean() - arrays["heldout_final_bits"].mean())
    )
    assert attrs["edl_format_only_bits"] == pytest.approx(
        arrays["format_online_bits"].sum() - 24 * arrays["heldout_format_bits"].mean()
    )
    for name in (
        "edl_heldout_bits",
        "edl_train_bits",
        "edl_format_only_bits",
        "gain_beyond_format_bits",
        "accuracy_gain",
    ):
        assert attrs[f"{name}_low"] <= attrs[name] <= attrs[f"{name}_high"], name
    assert attrs["marginal_mdl_bits"] == pytest.approx(arrays["marginal_online_bits"].sum())
    assert attrs["marginal_entropy_bits"] <= attrs["uniform_bits"] + 1e-9
    assert attrs["edl_per_parameter"] == pytest.approx(attrs["edl_heldout_bits"] / attrs["n_trainable"])
    # bits, not nats: -log2 of the renormalised letter probability
    p = torch.softmax(torch.tensor(base_logits[train_rows], dtype=torch.float64), -1)[
        torch.arange(24), ex.answers[train_rows]
    ]
    np.testing.assert_allclose(arrays["base_bits"], -torch.log2(p).numpy(), rtol=1e-9)
    np.testing.assert_allclose(arrays["final_bits"], bits_from_logits(sft_logits[train_rows], ex.answers[train_rows]))
    # the first batch is coded by the pretrained model (LoRA starts as the identity, no dropout)
    first = arrays["order"][:4]
    np.testing.assert_allclose(arrays["online_bits"][first], arrays["base_bits"][first], rtol=1e-4)
    # lr 5e-3 on 24 examples twice over: the labels are learnt, so the final code is shorter
    assert attrs["final_bits"] < attrs["base_bits"]
    assert summary["edl_heldout_bits"] == pytest.approx(attrs["edl_heldout_bits"])
    eval_rows = np.flatnonzero(ex.splits == "eval")
    np.testing.assert_array_equal(arrays["eval_rows"], eval_rows)
    np.testing.assert_allclose(arrays["eval_gain_bits"], arrays["eval_base_bits"] - arrays["eval_final_bits"])


def test_sft_conditions_and_adapters(ft_run):
    folder, _ = ft_run
    assert landscape.conditions(folder) == ["0shot", "sft", "sft@step3"]
    info = landscape.info(folder)["conditions"]
    assert info["sft"]["kind"] == "sft" and info["sft"]["complete"] and info["sft"]["finetune"]["rank"] == 4
    assert (folder / "adapters" / "sft" / "final" / "adapter_model.safetensors").is_file()
    assert (folder / "adapters" / "sft" / "step-3" / "adapter_model.safetensors").is_file()
    base = landscape.load_layer(folder, "0shot", 3).X
    step3 = landscape.load_layer(folder, "sft@step3", 3).X
    final = landscape.load_layer(folder, "sft", 3).X
    assert not np.allclose(base, final) and not np.allclose(step3, final)


def test_online_code_is_taken_before_the_update(tmp_path, tiny, tiny_model_dir):
    """online_bits of batch b equals the code under the adapter after b-1 updates, not after b."""
    _, tok = tiny
    model = _tiny_peft(tiny_model_dir)
    train = _train_data(tok)
    letter_ids = forward.letter_token_ids(tok, LETTERS)
    config = FinetuneConfig(lr=2e-2, epochs=1, batch_size=3, dropout=0.0, checkpoints=(1, 2, 3, 4), warmup=0.0)
    record = train_lora(
        model, train, config, scoring=forward.Scoring(letter_ids), checkpoint_dir=tmp_path, progress=False
    )
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    order = lora.epoch_order(12, 0, 0)
    for b in (1, 2, 3):  # batch b is the (b+1)-th: coded after b updates
        batch = order[3 * b : 3 * b + 3]

        def bits_under(step, batch=batch):
            set_peft_model_state_dict(model, load_file(tmp_path / f"step-{step}" / "adapter_model.safetensors"))
            with torch.no_grad():
                log_p = forward.letter_log_probs(model, [train.tokens[i] for i in batch], letter_ids=letter_ids)
            return (-log_p[torch.arange(3), torch.as_tensor(train.labels[batch])] / math.log(2)).numpy()

        np.testing.assert_allclose(record["online_bits"][batch], bits_under(b), rtol=1e-4, atol=1e-6)
        assert not np.allclose(record["online_bits"][batch], bits_under(b + 1), rtol=1e-3)


def test_interrupted_training_resumes_to_the_same_numbers(tmp_path, tiny, tiny_model_dir, monkeypatch):
    _, tok = tiny
    train = _train_data(tok)
    letter_ids = forward.letter_token_ids(tok, LETTERS)
    config = FinetuneConfig(lr=1e-2, epochs=2, batch_size=3, dropout=0.1, save_every=2)
    full = train_lora(
        _tiny_peft(tiny_model_dir, 0.1), train, config, scoring=forward.Scoring(letter_ids), progress=False
    )

    calls = {"n": 0}
    real = forward.letter_log_probs

    def dies_on_the_sixth_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    state = tmp_path / "state.pt"
    monkeypatch.setattr(forward, "letter_log_probs", dies_on_the_sixth_batch)
    with pytest.raises(KeyboardInterrupt):
        train_lora(
            _tiny_peft(tiny_model_dir, 0.1),
            train,
            config,
            scoring=forward.Scoring(letter_ids),
            state_path=state,
            progress=False,
        )
    monkeypatch.setattr(forward, "letter_log_probs", real)
    assert torch.load(state, weights_only=False)["step"] == 4
    resumed = train_lora(
        _tiny_peft(tiny_model_dir, 0.1),
        train,
        config,
        scoring=forward.Scoring(letter_ids),
        state_path=state,
        progress=False,
    )
    np.testing.assert_allclose(resumed["online_bits"], full["online_bits"], rtol=1e-6)
    np.testing.assert_allclose(resumed["losses"], full["losses"], rtol=1e-6)


def test_random_labels_and_errors(ft_run, tmp_path, tiny_mmlu, capsys):
    folder, _ = ft_run
    config = FinetuneConfig(
        name="sft-random", labels="random", rank=4, alpha=8, epochs=1, batch_size=8, task_data=str(tiny_mmlu)
    )
    run_finetune(folder, config, progress=False)
    with h5py.File(folder / "hidden.h5") as f:
        arrays, attrs = store.edl.read_edl(f, "sft-random")
    ex = landscape.examples(folder)
    assert attrs["labels"] == "random" and (arrays["label"] != ex.answers[arrays["rows"]]).any()
    with pytest.raises(ValueError, match="other settings"):
        run_finetune(folder, FinetuneConfig(rank=8, task_data=str(tiny_mmlu)), progress=False)
    assert cli.main(["finetune", str(tmp_path)]) == 1
    assert "no hidden.h5" in capsys.readouterr().err
    with pytest.raises(ValueError, match="checkpoint steps must be <= 3"):
        run_finetune(
            folder,
            FinetuneConfig(name="x", epochs=1, batch_size=8, checkpoints=(9,), task_data=str(tiny_mmlu)),
            progress=False,
        )


def test_analysis_correlates_edl_with_the_landscape(ft_run):
    from analyses.layer import AnalysisConfig
    from analyses.run import run_analysis

    folder, _ = ft_run
    config = AnalysisConfig(maxk=10, gride_range=10, density_k=5, overlap_k=5, tree_min_size=2)
    metrics = run_analysis(folder, config, progress=False)
    import csv

    with open(metrics) as handle:
        rows = list(csv.DictReader(handle))
    assert {r["split"] for r in rows} == {"eval", "train"}
    corr = [r for r in rows if r["condition"] == "corr:edl:sft" and r["split"] == "train"]
    assert {int(r["layer"]) for r in corr} == {1, 2, 3}  # layer 0 is one point repeated
    names = {r["metric"] for r in corr}
    assert {"sft:log_density_rho", "0shot:core_rho", "data_overlap_rho", "sft:purity_subject_rho"} <= names
    assert not any(name.endswith(("_low", "_high")) for name in names)  # the interval is in its own columns
    value = {
        (int(r["layer"]), r["metric"]): tuple(float(r[k] or "nan") for k in ("value", "low", "high")) for r in corr
    }
    for layer in (1, 2, 3):
        rho, low, high = value[(layer, "sft:log_density_rho")]
        assert -1 <= low <= high <= 1 and -1 <= rho <= 1
    assert any(r["condition"] == "corr:gain:sft" and r["split"] == "eval" for r in rows)


def test_marginal_prequential_code():
    bits = prequential.marginal_prequential_bits(np.array([0, 0, 3]), np.array([1, 0, 2]))
    np.testing.assert_allclose(bits, [-np.log2(2 / 5), 2.0, -np.log2(1 / 6)])


def test_block_boundaries_follow_voita_and_titov():
    assert lora.block_boundaries(1000) == [1, 2, 4, 8, 16, 32, 62, 125, 250, 500, 1000]
    assert lora.block_boundaries(10) == [1, 2, 5, 10]


def test_blockwise_code_first_block_by_the_base_model(tiny, tiny_model_dir):
    _, tok = tiny
    train = _train_data(tok, n=10)
    letter_ids = forward.letter_token_ids(tok, LETTERS)
    model = _tiny_peft(tiny_model_dir)
    with torch.no_grad():
        base = -forward.letter_log_probs(model, train.tokens, letter_ids=letter_ids)[
            torch.arange(10), torch.as_tensor(train.labels)
        ] / math.log(2)
    config = FinetuneConfig(lr=2e-2, epochs=1, batch_size=4, dropout=0.0, schedule="blockwise")
    record = lora.train_blockwise(model, train, config, scoring=forward.Scoring(letter_ids), progress=False)
    order = lora.epoch_order(10, 0, 0)
    assert np.isfinite(record["online_bits"]).all()
    assert record["online_bits"][order[0]] == pytest.approx(float(base[order[0]]), rel=1e-5)
    assert not np.allclose(record["online_bits"][order[5:]], base.numpy()[order[5:]])
    assert record["steps"] == sum(math.ceil(t / 4) for t in (1, 2, 5, 10))


def test_micro_batches_cover_the_batch_within_budget():
    batch = np.array([7, 3, 9, 1, 4])
    lengths = [100, 900, 120, 50, 400]
    groups = lora.micro_batches(batch, lengths, budget=1000)
    assert sorted(np.concatenate(groups).tolist()) == sorted(batch.tolist())
    length_of = dict(zip(batch.tolist(), lengths, strict=True))
    for g in groups:
        assert len(g) * max(length_of[i] for i in g) <= 1000 or len(g) == 1
    assert lora.micro_batches(batch, lengths, budget=10**6)[0].tolist() == [1, 7, 9, 4, 3]


def test_warm_up_starts_above_zero_the_second_batch_is_coded_by_an_updated_model(tiny, tiny_model_dir):
    """With warm-up (the default 5 %: here 2 of 40 steps), the first batch is coded by the base
    model and the second by the model after one update at a learning rate above 0."""
    _, tok = tiny
    model = _tiny_peft(tiny_model_dir)
    train = _train_data(tok, n=40)
    letter_ids = forward.letter_token_ids(tok, LETTERS)
    config = FinetuneConfig(lr=2e-2, epochs=4, batch_size=4, dropout=0.0)
    assert int(config.warmup * 40) == 2 and lora.lr_multiplier(0, 2, 40) == pytest.approx(1 / 3)
    with torch.no_grad():
        base = (
            -forward.letter_log_probs(model, train.tokens, letter_ids=letter_ids)[
                torch.arange(40), torch.as_tensor(train.labels)
            ]
            / math.log(2)
        ).numpy()
    record = train_lora(model, train, config, scoring=forward.Scoring(letter_ids), progress=False)
    order = lora.epoch_order(40, 0, 0)
    first, second = order[:4], order[4:8]
    np.testing.assert_allclose(record["online_bits"][first], base[first], rtol=1e-5)
    assert np.abs(record["online_bits"][second] - base[second]).max() > 1e-3


def test_random_label_fine_tune_has_held_out_edl_near_its_expectation(ft_run, tiny_mmlu):
    """Random labels: the held-out residual is the expected code of uniform labels, so a fine-tune
    that memorises them gains nothing on held-out rows."""
    folder, _ = ft_run
    config = FinetuneConfig(
        name="sft-random2",
        labels="random",
        rank=4,
        alpha=8,
        dropout=0.0,
        lr=5e-3,
        epochs=2,
        batch_size=4,
        task_data=str(tiny_mmlu),
    )
    run_finetune(folder, config, progress=False)
    with h5py.File(folder / "hidden.h5") as f:
        arrays, attrs = store.edl.read_edl(f, "sft-random2")
        logits, _, _ = store.hidden.read_outputs(f, "sft-random2")
    eval_rows = arrays["eval_rows"]
    expected = -torch.log_softmax(torch.tensor(logits[eval_rows], dtype=torch.float64), -1).mean(-1) / math.log(2)
    np.testing.assert_allclose(arrays["heldout_final_bits"], expected.numpy(), rtol=1e-9)
    assert attrs["heldout_labels"].startswith("uniform") and (arrays["heldout_final_bits"] >= 2.0 - 1e-9).all()
