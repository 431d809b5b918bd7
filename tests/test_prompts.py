from landscape.tasks import Item, continuations, load_task, render_prefix, render_question

MMLU = load_task("mmlu")
Q1 = Item(0, ("anatomy",), "Which bone?", ("Femur", "Ulna", "Skull", "Rib"), 2, {"subject": "anatomy"})
Q2 = Item(1, ("anatomy",), "Which organ?", ("Heart", "Liver", "Lung", "Skin"), 0, {"subject": "anatomy"})


def test_question_format_matches_the_paper():
    assert render_question(MMLU, Q1) == "Which bone?\nA. Femur\nB. Ulna\nC. Skull\nD. Rib\nAnswer:"


def test_prefix_is_header_then_demos_with_answers():
    header = "The following are multiple choice questions (with answers) about anatomy.\n\n"
    assert render_prefix(MMLU, Q1, []) == header
    two = render_prefix(MMLU, Q1, [Q1, Q2])
    assert two == header + render_question(MMLU, Q1) + " C\n\n" + render_question(MMLU, Q2) + " A\n\n"
    assert render_prefix(MMLU, None, [Q1]).startswith("Which bone?")  # no header


def test_continuations():
    assert continuations(MMLU, Q1) == [" A", " B", " C", " D"]
