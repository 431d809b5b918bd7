import pytest
import torch

from extract import forward

LETTERS = [" A", " B", " C", " D"]


def _ids(tokenizer, text, special=False):
    return tokenizer.encode(text, add_special_tokens=special)


@pytest.fixture(scope="module")
def prompt_parts(tiny):
    _, tok = tiny
    prefix = _ids(
        tok,
        "The following are multiple choice questions (with answers) about astronomy.\n\n"
        "What orbit star?\nA. x\nB. y\nC. z\nD. w\nAnswer: B\n\n",
        special=True,
    )
    questions = [
        _ids(tok, "Which planet?\nA. star\nB. the orbit\nC. z\nD. w\nAnswer:"),
        _ids(tok, "What is a light cell in the heart of a god temple?\nA. x\nB. y\nC. z\nD. bone\nAnswer:"),
        _ids(tok, "Bone?\nA. x\nB. y\nC. z\nD. w\nAnswer:"),
    ]
    assert len({len(q) for q in questions}) == 3  # different lengths: padding is exercised
    return prefix, questions


def _run(model, tok, questions, prefix):
    return forward.last_token_states(model, questions, prefix=prefix, letter_ids=forward.letter_token_ids(tok, LETTERS))


def test_hooks_equal_output_hidden_states_and_last_layer_is_pre_norm(tiny, prompt_parts):
    model, tok = tiny
    prefix, questions = prompt_parts
    seq = prefix + questions[0]
    out = _run(model, tok, [seq], None)
    with torch.no_grad():
        ref = model(torch.tensor([seq]), output_hidden_states=True)
    n = model.config.num_hidden_layers
    assert out.hidden.shape == (n + 1, 1, model.config.hidden_size)
    for layer in range(n):  # hidden_states[n] is after the final norm; ours is not
        torch.testing.assert_close(out.hidden[layer, 0], ref.hidden_states[layer][0, -1], rtol=1e-5, atol=1e-6)
    normed = model.model.norm(out.hidden[n][None])[0, 0]
    torch.testing.assert_close(normed, ref.hidden_states[n][0, -1], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out.hidden[n, 0], ref.hidden_states[n][0, -1])
    letter_ids = forward.letter_token_ids(tok, LETTERS)
    torch.testing.assert_close(out.letter_logits[0], ref.logits[0, -1, letter_ids], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.logsumexp[0], torch.logsumexp(ref.logits[0, -1], -1), rtol=1e-5, atol=1e-5)


def test_batched_equals_unbatched(tiny, prompt_parts):
    model, tok = tiny
    prefix, questions = prompt_parts
    full = [prefix + q for q in questions]
    batched = _run(model, tok, full, None)
    for row, seq in enumerate(full):
        alone = _run(model, tok, [seq], None)
        torch.testing.assert_close(batched.hidden[:, row], alone.hidden[:, 0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(batched.letter_logits[row], alone.letter_logits[0], rtol=1e-4, atol=1e-5)


def test_prefix_cache_equals_full_prompt(tiny, prompt_parts):
    model, tok = tiny
    prefix, questions = prompt_parts
    cache = forward.encode_prefix(model, prefix)
    cached = _run(model, tok, questions, cache)
    full = _run(model, tok, questions, list(prefix))
    torch.testing.assert_close(cached.hidden, full.hidden, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cached.letter_logits, full.letter_logits, rtol=1e-4, atol=1e-5)
    # the cache is copied per batch, never extended: a second use gives the same numbers
    again = _run(model, tok, questions, cache)
    torch.testing.assert_close(again.hidden, cached.hidden)


def test_states_depend_on_the_prefix(tiny, prompt_parts):
    model, tok = tiny
    prefix, questions = prompt_parts
    with_prefix = _run(model, tok, questions[:1], list(prefix))
    without = _run(model, tok, questions[:1], None)
    assert not torch.allclose(with_prefix.hidden[-1], without.hidden[-1])


def test_letter_token_ids_refuses_multi_token_answers(tiny):
    _, tok = tiny
    assert len(set(forward.letter_token_ids(tok, LETTERS))) == 4
    with pytest.raises(forward.ForwardError, match="not one"):
        forward.letter_token_ids(tok, [" Answer: the planet orbit"])


def test_decoder_layers_found(tiny):
    model, _ = tiny
    assert forward.n_blocks(model) == model.config.num_hidden_layers


def test_last_logits_whatever_logits_to_keep_returned():
    """Per-row positions (B, 1) as logits_to_keep: transformers >= 5.23 returns (B, 1, V); older
    ones index with the whole tensor, (B, B, 1, V); a model without it returns every position."""
    from types import SimpleNamespace

    full = torch.randn(3, 7, 5)  # (B, T, V)
    last = torch.tensor([6, 2, 4])
    expected = full[torch.arange(3), last]
    per_row = full[torch.arange(3)[:, None], last[:, None]]  # (B, 1, V)
    whole = full[:, last[:, None]]  # (B, B, 1, V)
    for logits in (per_row, whole, full):
        torch.testing.assert_close(forward._last_logits(SimpleNamespace(logits=logits), last), expected)
