"""Prompts: a task's format filled with an item, the demonstrations before it, and the scored continuations.

A prompt is ``header + demonstrations + question``; the model's state is read at the last token of
the question's cue (``Answer:`` by default), and each choice is scored as a continuation of it.
"""

from __future__ import annotations

from landscape.tasks.task import ALPHABET, Item, Task


def render_question(task: Task, item: Item) -> str:
    """The question part of a prompt: the question, its choices, and the cue whose last token is read.

    Example:
        >>> from landscape.tasks import load_task
        >>> task = load_task("mmlu")
        >>> item = Item(0, ("anatomy",), "Which bone?", ("Femur", "Ulna", "Skull", "Rib"), 0)
        >>> print(render_question(task, item))
        Which bone?
        A. Femur
        B. Ulna
        C. Skull
        D. Rib
        Answer:
    """
    choices = "".join(
        task.choice.format(letter=letter, text=text) for letter, text in zip(ALPHABET, item.choices, strict=False)
    )
    return task.prompt.format(**{**item.fields, "question": item.question, "choices": choices})


def render_header(task: Task, item: Item) -> str:
    """The header line(s) of ``item``'s prompt, filled from its fields ('' when the task has none)."""
    return task.header.format(**item.fields) if task.header else ""


def render_prefix(task: Task, header_item: Item | None, demos: list[Item]) -> str:
    """Header (of ``header_item``; none when None) plus demonstrations, each ending in its answer.

    Example:
        >>> from landscape.tasks import load_task
        >>> task = load_task("mmlu")
        >>> item = Item(0, ("anatomy",), "Which bone?", ("Femur", "Ulna", "Skull", "Rib"), 0, {"subject": "anatomy"})
        >>> render_prefix(task, item, [item])[-18:]
        'D. Rib\\nAnswer: A\\n\\n'
    """
    parts = [render_header(task, header_item)] if header_item is not None else []
    parts.extend(
        render_question(task, demo) + render_answer(task, task.demo_answer, demo.choices, demo.answer) for demo in demos
    )
    return "".join(parts)


def render_answer(task: Task, template: str, choices: tuple[str, ...], index: int) -> str:
    """``template`` (``demo_answer`` or ``continuation``) filled with choice ``index``'s letter and text."""
    return template.format(letter=ALPHABET[index], text=choices[index])


def continuations(task: Task, item: Item) -> list[str]:
    """The scored continuation of each choice (``" A"``, ``" B"``, ... with letter scoring)."""
    return [render_answer(task, task.continuation, item.choices, i) for i in range(len(item.choices))]
