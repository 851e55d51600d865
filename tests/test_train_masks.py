"""Answer-only loss masks built from the chat template (aloekit.train.masks), on SmolLM2's real tokenizer.

SmolLM2's template has no ``{% generation %}`` markers and injects a default system prompt; the masks must
still train exactly the assistant contents plus each turn's ``<|im_end|>``, and nothing else.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aloekit.errors import UserError
from aloekit.train.masks import IGNORE, mask_conversation, render_tokens, stop_token_ids
from aloekit.train.sft import tokenize_split


@pytest.fixture(scope="module")
def tokenizer(tiny_llama: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama)


def trained_text(tokenizer, sample) -> str:
    return tokenizer.decode([t for t, keep in zip(sample.input_ids, sample.trained, strict=True) if keep])


def untrained_text(tokenizer, sample) -> str:
    return tokenizer.decode([t for t, keep in zip(sample.input_ids, sample.trained, strict=True) if not keep])


def test_single_turn_trains_the_answer_and_its_end_of_turn_token_only(tokenizer) -> None:
    messages = [
        {"role": "user", "content": "What does a high troponin level suggest?"},
        {"role": "assistant", "content": "Damage to heart muscle, most often a myocardial infarction."},
    ]
    sample = mask_conversation(tokenizer, messages)
    assert trained_text(tokenizer, sample) == "Damage to heart muscle, most often a myocardial infarction.<|im_end|>"
    # The default system prompt the template injects, the question and the headers are context, not targets.
    context = untrained_text(tokenizer, sample)
    assert "You are a helpful AI assistant" in context
    assert "troponin" in context
    assert context.endswith("<|im_start|>assistant\n\n")  # the separator after <|im_end|> is not trained
    # The token after the trained <|im_end|> is the template's "\n": context, never generated.
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    last = max(i for i, keep in enumerate(sample.trained) if keep)
    assert sample.input_ids[last] == im_end
    assert sample.labels[last] == im_end and sample.labels[last + 1] == IGNORE
    # The tokens are exactly what the chat template gives (what inference sees).
    rendered = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    assert sample.input_ids == list(rendered)


def test_multi_turn_with_system_prompt_trains_every_assistant_turn(tokenizer) -> None:
    messages = [
        {"role": "system", "content": "You are a careful clinician."},
        {"role": "user", "content": "I have a fever."},
        {"role": "assistant", "content": "How high is it, and for how long?"},
        {"role": "user", "content": "39 degrees, two days."},
        {"role": "assistant", "content": " Drink fluids; see a doctor if it lasts past three days.\n"},
    ]
    sample = mask_conversation(tokenizer, messages)
    assert len(sample.spans) == 2
    first, second = (tokenizer.decode(sample.input_ids[s:e]) for s, e in sample.spans)
    assert first == "How high is it, and for how long?<|im_end|>"
    assert second == " Drink fluids; see a doctor if it lasts past three days.\n<|im_end|>"
    context = untrained_text(tokenizer, sample)
    for text in ("careful clinician", "I have a fever.", "39 degrees"):
        assert text in context
    assert "helpful AI assistant" not in context  # a given system prompt replaces the default one
    assert sum(sample.trained) == sum(e - s for s, e in sample.spans)
    assert [label for label in sample.labels if label != IGNORE] == [
        t for t, keep in zip(sample.input_ids, sample.trained, strict=True) if keep
    ]


def test_render_tokens_brackets_trained_tokens(tokenizer) -> None:
    sample = mask_conversation(
        tokenizer, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"}]
    )
    shown = render_tokens(tokenizer, sample)
    assert shown.endswith("assistant↵[Hello][ there][<|im_end|>]↵")
    assert "[Hi]" not in shown


def test_stop_tokens_include_generation_config_ids(tokenizer) -> None:
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in stop_token_ids(tokenizer)
    assert 7 in stop_token_ids(tokenizer, extra=[7])


class _Template:
    """SmolLM2's tokenizer with another chat template."""

    def __init__(self, tokenizer, template: str) -> None:
        self._tokenizer = tokenizer
        self.chat_template = template

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def apply_chat_template(self, *args, **kwargs):
        return self._tokenizer.apply_chat_template(*args, chat_template=self.chat_template, **kwargs)


# Marks earlier assistant turns differently from the last one (like templates that drop past reasoning).
UNSTABLE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['role'] == 'assistant' and not loop.last %}(earlier) {% endif %}"
    "{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Rewrites the assistant's content, so the trained tokens would not be what the data says.
REWRITING = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['role'] == 'assistant' %}{{ m['content'] | upper }}{% else %}{{ m['content'] }}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TWO_TURNS = [
    {"role": "user", "content": "one"},
    {"role": "assistant", "content": "first answer"},
    {"role": "user", "content": "two"},
    {"role": "assistant", "content": "second answer"},
]


def test_prefix_unstable_template_is_refused_clearly(tokenizer) -> None:
    with pytest.raises(UserError, match="not prefix-stable") as e:
        mask_conversation(_Template(tokenizer, UNSTABLE), TWO_TURNS, where="train.jsonl:3")
    assert str(e.value).startswith("train.jsonl:3: ")
    assert "\n" not in str(e.value)
    # A single turn renders the same either way: that template is only caught on multi-turn data.
    assert mask_conversation(_Template(tokenizer, UNSTABLE), TWO_TURNS[:2]).n_trained > 0


def test_template_that_changes_the_content_is_refused(tokenizer) -> None:
    with pytest.raises(UserError, match="decode to"):
        mask_conversation(_Template(tokenizer, REWRITING), TWO_TURNS[:2])


def test_conversation_without_an_assistant_turn_is_refused(tokenizer) -> None:
    with pytest.raises(UserError, match="no assistant message"):
        mask_conversation(tokenizer, [{"role": "user", "content": "hello?"}], where="row 4")
    with pytest.raises(UserError, match="starts with an assistant"):
        mask_conversation(tokenizer, [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}])


def test_tokenizer_without_template_is_refused(tokenizer) -> None:
    with pytest.raises(UserError, match="no chat template"):
        mask_conversation(_Template(tokenizer, None), TWO_TURNS)


def test_truncation_keeps_the_start_and_drops_conversations_left_without_targets(tokenizer) -> None:
    long_question = {"role": "user", "content": "symptom " * 80}
    records = [
        {"id": "short", "messages": TWO_TURNS},
        {"id": "long", "messages": [long_question, {"role": "assistant", "content": "answer"}]},
    ]
    split = tokenize_split(tokenizer, records, max_length=56)  # the short one has 49 tokens
    assert split.ids == ["short"]
    assert split.stats()["dropped_no_trained_token_after_truncation"] == 1
    assert split.stats()["truncated"] == 1
    # A conversation cut inside its answer keeps the trained tokens that fit.
    cut = tokenize_split(
        tokenizer, [{"messages": [TWO_TURNS[0], {"role": "assistant", "content": "x " * 60}]}], max_length=40
    )
    (sample,) = cut.samples
    assert len(sample.input_ids) == 40 and 0 < sample.n_trained < 40
    assert sample.trained[-1]


def test_malformed_record_names_its_line(tokenizer) -> None:
    with pytest.raises(UserError, match=r"data.jsonl:2: no 'messages'"):
        tokenize_split(tokenizer, [{"_where": "data.jsonl:2", "prompt": "x"}], max_length=64)
    with pytest.raises(UserError, match=r"train record 1: message 0 has role .doctor."):
        tokenize_split(tokenizer, [{"messages": [{"role": "doctor", "content": "x"}]}], max_length=64)


def test_a_plain_completion_trains_only_the_completion_and_keeps_the_prompts_end_when_cut(tokenizer) -> None:
    from aloekit.train.masks import mask_completion

    prompt = "Which vitamin deficiency causes scurvy?\nA. A\nB. C\nC. D\nD. K\nAnswer:"
    sample = mask_completion(tokenizer, prompt, " B", max_length=64)
    assert trained_text(tokenizer, sample) == " B"
    assert untrained_text(tokenizer, sample) == prompt
    short = mask_completion(tokenizer, prompt, " B", max_length=8)
    assert len(short.input_ids) == 8 and trained_text(tokenizer, short) == " B"
    assert untrained_text(tokenizer, short).endswith("Answer:")  # the question's end survives, its start goes


def test_tokenize_split_reads_plain_samples_without_the_chat_template(tokenizer) -> None:
    record = {
        "id": "p",
        "plain": True,
        "messages": [{"role": "user", "content": "Q?\nA. x\nB. y\nAnswer:"}, {"role": "assistant", "content": " A"}],
    }
    split = tokenize_split(tokenizer, [record], max_length=64)
    (sample,) = split.samples
    assert "<|im_start|>" not in tokenizer.decode(sample.input_ids)
    assert trained_text(tokenizer, sample) == " A" and split.trained_tokens == 1
