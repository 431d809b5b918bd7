"""Prompt formats as data, and the two pieces every prompt is made of.

A prompt is **prefix tokens + question tokens**, tokenised apart, on every path (cached, uncached,
fine-tuning, scoring). BPE can merge across the boundary when the two texts are tokenised
together; tokenising them apart keeps one token sequence for the shared-prefix key/value cache
and the full forward pass alike.

- prefix: the header naming the subject, then the k demonstrations, each ending in its answer;
- question: the question, its four choices, and ``Answer:`` (the last token, whose hidden state
  is the representation).

Example:
    >>> from extract.data import Question
    >>> q = Question(0, "anatomy", "Which bone?", ("Femur", "Ulna", "Skull", "Rib"), 0)
    >>> print(render_question(MMLU, q))
    Which bone?
    A. Femur
    B. Ulna
    C. Skull
    D. Rib
    Answer:
    >>> render_prefix(MMLU, "anatomy", [q])[-18:]
    'D. Rib\\nAnswer: A\\n\\n'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from extract.data import Question
from landscape.schema import LETTERS


@dataclass(frozen=True)
class PromptFormat:
    """Templates of one prompt format; fields are ``str.format`` templates."""

    name: str
    header: str  # {subject}
    question: str  # {question}, {choices}
    choice: str  # {letter}, {text}; one per answer option, concatenated into {choices}
    demo_answer: str  # {letter}; appended to a rendered question to make a demonstration
    answer_token: str  # {letter}; the continuation scored as the model's answer

    def to_dict(self) -> dict:
        return asdict(self)


# Doimo et al. 2024 and lm-eval's MMLU format.
MMLU = PromptFormat(
    name="mmlu",
    header="The following are multiple choice questions (with answers) about {subject}.\n\n",
    question="{question}\n{choices}Answer:",
    choice="{letter}. {text}\n",
    demo_answer=" {letter}\n\n",
    answer_token=" {letter}",
)

FORMATS = {MMLU.name: MMLU}


def render_question(fmt: PromptFormat, q: Question) -> str:
    choices = "".join(fmt.choice.format(letter=l, text=t) for l, t in zip(LETTERS, q.choices))
    return fmt.question.format(question=q.question, choices=choices)


def render_prefix(fmt: PromptFormat, subject: str | None, demos: Sequence[Question]) -> str:
    """Header plus demonstrations; with no demos, the header alone (0-shot); no header when ``subject`` is empty."""
    parts = [fmt.header.format(subject=subject)] if subject else []
    for demo in demos:
        parts.append(render_question(fmt, demo) + fmt.demo_answer.format(letter=LETTERS[demo.answer]))
    return "".join(parts)


def answer_texts(fmt: PromptFormat) -> list[str]:
    """The four continuations whose logits are recorded (``" A"`` .. ``" D"`` for MMLU)."""
    return [fmt.answer_token.format(letter=letter) for letter in LETTERS]
