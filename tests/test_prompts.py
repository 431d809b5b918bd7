from extract.data import Question
from extract.prompts import MMLU, answer_texts, render_prefix, render_question

Q1 = Question(0, "anatomy", "Which bone?", ("Femur", "Ulna", "Skull", "Rib"), 2)
Q2 = Question(1, "anatomy", "Which organ?", ("Heart", "Liver", "Lung", "Skin"), 0)


def test_question_format_matches_the_paper():
    assert render_question(MMLU, Q1) == "Which bone?\nA. Femur\nB. Ulna\nC. Skull\nD. Rib\nAnswer:"


def test_prefix_is_header_then_demos_with_answers():
    header = "The following are multiple choice questions (with answers) about anatomy.\n\n"
    assert render_prefix(MMLU, "anatomy", []) == header
    two = render_prefix(MMLU, "anatomy", [Q1, Q2])
    assert two == header + render_question(MMLU, Q1) + " C\n\n" + render_question(MMLU, Q2) + " A\n\n"


def test_answer_texts():
    assert answer_texts(MMLU) == [" A", " B", " C", " D"]
