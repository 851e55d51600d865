"""Specification of the "known" filter (a source's multiple-choice questions narrowed to those the scoring model
already answers right when it scores the option texts: cloze, per character, as lm-eval's acc_norm) and of
"cloze_answers" (each question keyed to the option the scoring model ranks first, taught as the letter format)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from aloekit.config import parse_yaml
from aloekit.data.known import cloze_requests, keep_known, known_by_cloze, relabel_by_cloze, scan_order
from aloekit.data.mixture import MixtureConfig, build
from aloekit.data.schema import MCQItem
from aloekit.data.tally import Tally
from aloekit.engines.base import Loglikelihood, LoglikelihoodRequest
from aloekit.errors import UserError

NO_EVAL = "decontamination: {benchmarks: [], safety: false}\n"


class OptionScorer:
    """Scores an option -1 per character when its text starts with "right", -3 per character otherwise."""

    def __init__(self) -> None:
        self.asked: list[LoglikelihoodRequest] = []

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *, progress: bool = False) -> list[Loglikelihood]:
        self.asked += requests
        out = []
        for r in requests:
            text = r.continuation.strip()
            out.append(
                Loglikelihood(
                    logprob=(-1.0 if text.startswith("right") else -3.0) * len(text), is_greedy=False, n_tokens=1
                )
            )
        return out

    def close(self) -> None:
        pass


def question(i: int, *, known: bool) -> MCQItem:
    if known:  # the key is the option the scorer likes best
        return MCQItem(id=f"q{i}", question=f"Question {i}?", options=("right answer", "b", "c", "d"), answer=0)
    return MCQItem(id=f"q{i}", question=f"Question {i}?", options=("right answer", "b", "c", "d"), answer=2)


def test_the_key_must_have_the_best_log_likelihood_per_character_not_in_total() -> None:
    item = MCQItem(id="q", question="Q?", options=("a much longer right option", "no"), answer=0)
    # In total the long option is less likely (-26 vs -4), per character it is the more likely (-1.0 vs -2.0).
    assert known_by_cloze(item, [-26.0, -4.0])
    assert not known_by_cloze(item, [-60.0, -4.0])


def test_each_option_is_scored_after_the_evaluations_cloze_prompt() -> None:
    item = MCQItem(id="q", question="  What is it? ", options=("one", "two"), answer=1)
    assert [(r.context, r.continuation) for r in cloze_requests(item)] == [
        ("Question: What is it?\nAnswer:", " one"),
        ("Question: What is it?\nAnswer:", " two"),
    ]


def test_only_known_questions_are_kept_in_their_order_and_every_other_one_is_counted() -> None:
    items = [question(i, known=i % 3 == 0) for i in range(12)]
    tally = Tally()
    kept = keep_known(items, OptionScorer(), scan=None, label="x", tally=tally, log=lambda _: None)
    assert [q.id for q in kept] == ["q0", "q3", "q6", "q9"]
    assert sum(tally.counts.values()) == 8


def test_scan_scores_a_fixed_hash_order_prefix_whatever_the_file_order() -> None:
    items = [question(i, known=True) for i in range(20)]
    scorer = OptionScorer()
    kept = keep_known(items, scorer, scan=5, label="x", tally=Tally(), log=lambda _: None)
    assert {q.id for q in kept} == {q.id for q in scan_order(items)[:5]}
    assert len(scorer.asked) == 5 * 4  # the others are never scored
    again = keep_known(list(reversed(items)), OptionScorer(), scan=5, label="x", tally=Tally(), log=lambda _: None)
    assert {q.id for q in again} == {q.id for q in kept}


def test_a_mixture_source_with_known_trains_only_those_questions_at_every_letter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aloekit.config import EngineConfig

    path = tmp_path / "mcq.jsonl"
    path.write_text("".join(json.dumps(question(i, known=i < 3).to_json()) + "\n" for i in range(8)))
    monkeypatch.setattr(EngineConfig, "load", lambda self, **_: OptionScorer())
    text = (
        f"sources: [{{format: mcq, path: {path}, name: exam, known: {{}}}}]\nvalidation: 0\n"
        f"responder: {{model: x}}\nmcq: {{rotations: 4}}\n{NO_EVAL}"
    )
    build(parse_yaml(text, MixtureConfig, source="t.yaml", what="mixture"), tmp_path / "o", log=lambda _: None)
    train = [json.loads(line) for line in (tmp_path / "o" / "train.jsonl").read_text().splitlines()]
    assert len(train) == 3 * 4  # three known questions, each at the four letters
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    assert stats["sources"]["exam"]["not known by the scorer"] == 5


def test_known_without_any_scorer_is_a_config_error_naming_the_source(tmp_path: Path) -> None:
    text = f"sources: [{{format: mcq, path: {tmp_path / 'x.jsonl'}, name: exam, known: {{scan: 10}}}}]\n{NO_EVAL}"
    with pytest.raises(UserError, match="source 'exam' has 'known' but nothing scores its questions"):
        parse_yaml(text, MixtureConfig, source="t.yaml", what="mixture")


def test_a_real_model_scores_the_questions_and_each_is_kept_or_counted(tiny_llama: Path) -> None:
    from aloekit.config import EngineConfig

    items = [question(i, known=i % 2 == 0) for i in range(6)]
    engine = EngineConfig(model=str(tiny_llama), batch_size=4).load()
    tally = Tally()
    try:
        kept = keep_known(items, engine, scan=None, label="x", tally=tally, log=lambda _: None)
    finally:
        engine.close()
    assert len(kept) + sum(tally.counts.values()) == len(items)


def test_known_narrows_the_questions_of_medical_preference_pairs_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aloekit.config import EngineConfig
    from aloekit.data.prefs_build import PrefsConfig, build_prefs

    path = tmp_path / "mcq.jsonl"
    path.write_text("".join(json.dumps(question(i, known=i < 2).to_json()) + "\n" for i in range(6)))
    monkeypatch.setattr(EngineConfig, "load", lambda self, **_: OptionScorer())
    text = (
        f"validation: 0\nmedical: {{sources: [{{format: mcq, path: {path}, name: exam, known: {{}}}}], "
        f"rejected: wrong_option}}\n{NO_EVAL}"
    )
    build_prefs(parse_yaml(text, PrefsConfig, source="p.yaml", what="prefs"), tmp_path / "p", log=lambda _: None)
    pairs = [json.loads(line) for line in (tmp_path / "p" / "train.jsonl").read_text().splitlines()]
    assert len(pairs) == 2  # one pair per known question
    assert all("right answer" in p["prompt"][-1]["content"] for p in pairs)


def test_known_on_a_source_without_questions_is_refused_not_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aloekit.config import EngineConfig

    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"instruction": "Say hi.", "output": "Hi."}) + "\n")
    monkeypatch.setattr(EngineConfig, "load", lambda self, **_: OptionScorer())
    text = f"sources: [{{format: alpaca, path: {path}, name: chat, known: {{}}}}]\nresponder: {{model: x}}\n{NO_EVAL}"
    with pytest.raises(UserError, match="source 'chat' has 'known' but no multiple-choice questions"):
        build(parse_yaml(text, MixtureConfig, source="t.yaml", what="mixture"), tmp_path / "o", log=lambda _: None)


def test_cloze_answers_key_each_question_to_the_option_the_scorer_ranks_first() -> None:
    items = [
        MCQItem(id="q1", question="Q1?", options=("b", "right one", "c"), answer=0, explanation="Because b."),
        MCQItem(id="q2", question="Q2?", options=("right", "x", "y", "z"), answer=0),
    ]
    logs: list[str] = []
    keyed = relabel_by_cloze(items, OptionScorer(), scan=None, label="x", tally=Tally(), log=logs.append)
    assert [(q.id, q.answer) for q in keyed] == [("q1", 1), ("q2", 0)]
    assert "1 differ from the source's key" in logs[0]


def test_cloze_answers_scan_a_fixed_prefix_and_count_every_question_left_out() -> None:
    items = [question(i, known=False) for i in range(10)]
    tally = Tally()
    keyed = relabel_by_cloze(items, OptionScorer(), scan=4, label="x", tally=tally, log=lambda _: None)
    assert {q.id for q in keyed} == {q.id for q in scan_order(items)[:4]}
    assert sum(tally.counts.values()) == 6


def test_a_mixture_source_with_cloze_answers_teaches_only_plain_letters_of_the_scorers_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aloekit.config import EngineConfig

    path = tmp_path / "mcq.jsonl"
    path.write_text("".join(json.dumps(question(i, known=False).to_json()) + "\n" for i in range(3)))
    monkeypatch.setattr(EngineConfig, "load", lambda self, **_: OptionScorer())
    text = (
        f"sources: [{{format: mcq, path: {path}, name: exam, cloze_answers: {{}}}}]\nvalidation: 0\n"
        f"responder: {{model: x}}\nmcq: {{rotations: 4, plain_share: 0}}\n{NO_EVAL}"
    )
    build(parse_yaml(text, MixtureConfig, source="t.yaml", what="mixture"), tmp_path / "o", log=lambda _: None)
    train = [json.loads(line) for line in (tmp_path / "o" / "train.jsonl").read_text().splitlines()]
    assert len(train) == 3 * 4  # plain_share 0 does not turn them into chats
    for row in train:
        assert row["plain"] is True
        prompt, letter = row["messages"][0]["content"], row["messages"][1]["content"].strip()
        # The taught letter is the one in front of "right answer" (the scorer's choice), not the source's key.
        assert f"{letter}. right answer" in prompt
    assert sorted(r["messages"][1]["content"] for r in train) == sorted([" A", " B", " C", " D"] * 3)


def test_known_and_cloze_answers_on_one_source_is_a_config_error(tmp_path: Path) -> None:
    text = (
        f"sources: [{{format: mcq, path: {tmp_path / 'x.jsonl'}, name: exam, known: {{}}, cloze_answers: {{}}}}]\n"
        f"responder: {{model: x}}\n{NO_EVAL}"
    )
    with pytest.raises(UserError, match="give 'known' or 'cloze_answers', not both"):
        parse_yaml(text, MixtureConfig, source="t.yaml", what="mixture")


def test_cloze_answers_with_a_plain_share_below_one_is_a_config_error(tmp_path: Path) -> None:
    text = (
        f"sources: [{{format: mcq, path: {tmp_path / 'x.jsonl'}, name: exam, cloze_answers: {{}}, plain_share: 0.5}}]"
        f"\nresponder: {{model: x}}\n{NO_EVAL}"
    )
    with pytest.raises(UserError, match=r"plain_share 0\.5 with cloze_answers"):
        parse_yaml(text, MixtureConfig, source="t.yaml", what="mixture")


def test_cloze_answers_without_any_scorer_is_a_config_error_naming_the_source(tmp_path: Path) -> None:
    text = f"sources: [{{format: mcq, path: {tmp_path / 'x.jsonl'}, name: exam, cloze_answers: {{}}}}]\n{NO_EVAL}"
    with pytest.raises(UserError, match="source 'exam' has 'cloze_answers' but nothing scores its questions"):
        parse_yaml(text, MixtureConfig, source="t.yaml", what="mixture")


def test_cloze_answers_key_the_chosen_side_of_medical_preference_pairs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aloekit.config import EngineConfig
    from aloekit.data.prefs_build import PrefsConfig, build_prefs

    path = tmp_path / "mcq.jsonl"
    path.write_text("".join(json.dumps(question(i, known=False).to_json()) + "\n" for i in range(2)))
    monkeypatch.setattr(EngineConfig, "load", lambda self, **_: OptionScorer())
    text = (
        f"validation: 0\nmedical: {{sources: [{{format: mcq, path: {path}, name: exam, cloze_answers: {{}}}}], "
        f"rejected: wrong_option, option_text: true, policy: {{model: x}}}}\n{NO_EVAL}"
    )
    build_prefs(parse_yaml(text, PrefsConfig, source="p.yaml", what="prefs"), tmp_path / "p", log=lambda _: None)
    pairs = [json.loads(line) for line in (tmp_path / "p" / "train.jsonl").read_text().splitlines()]
    assert len(pairs) == 2
    assert all("right answer" in p["chosen"][-1]["content"] for p in pairs)


def test_cloze_answers_cannot_feed_pairs_that_choose_the_sources_explanation(tmp_path: Path) -> None:
    from aloekit.data.prefs_build import PrefsConfig, build_prefs

    path = tmp_path / "mcq.jsonl"
    path.write_text(json.dumps(question(0, known=False).to_json()) + "\n")
    text = (
        f"validation: 0\nmedical: {{sources: [{{format: mcq, path: {path}, name: exam, cloze_answers: {{}}}}], "
        f"rejected: policy, policy: {{model: x}}}}\n{NO_EVAL}"
    )
    with pytest.raises(UserError, match="source 'exam' has 'cloze_answers', but rejected: policy"):
        build_prefs(parse_yaml(text, PrefsConfig, source="p.yaml", what="prefs"), tmp_path / "p", log=lambda _: None)


def test_a_letters_section_adds_plain_cloze_keyed_letter_pairs_beside_chat_pairs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One build, two layouts: chat pairs and, from the letters section, '...Answer:' then ' <the scorer's option>'
    over a wrong option's letter, at every rotation, with the space the benchmarks score kept."""
    from collections import Counter

    from aloekit.config import EngineConfig
    from aloekit.data.prefs_build import PrefsConfig, build_prefs

    mcq, chat = tmp_path / "mcq.jsonl", tmp_path / "chat.jsonl"
    mcq.write_text("".join(json.dumps(question(i, known=False).to_json()) + "\n" for i in range(3)))
    chat.write_text(json.dumps({"prompt": "How do I store insulin?", "chosen": "In the fridge.", "rejected": "No."}))
    monkeypatch.setattr(EngineConfig, "load", lambda self, **_: OptionScorer())
    text = (
        f"validation: 0\nletters: {{sources: [{{format: mcq, path: {mcq}, name: exam, "
        f"cloze_answers: {{scorer: {{model: x}}}}}}], rejected: wrong_option, rotations: 4, plain: true}}\n"
        f"pairs: [{{format: preference, path: '{chat}', name: mine}}]\n{NO_EVAL}"
    )
    build_prefs(parse_yaml(text, PrefsConfig, source="p.yaml", what="prefs"), tmp_path / "p", log=lambda _: None)
    rows = [json.loads(line) for line in (tmp_path / "p" / "train.jsonl").read_text().splitlines()]
    letters = [r for r in rows if r["category"] == "letters"]
    assert len(rows) == 13 and len(letters) == 12 and all(r["plain"] for r in letters)
    assert Counter(r["chosen"] for r in letters) == Counter({" A": 3, " B": 3, " C": 3, " D": 3})
    for row in letters:  # the chosen letter is the scorer's favourite, "right answer", wherever it moved
        assert f"\n{row['chosen'].strip()}. right answer\n" in row["prompt"] and row["prompt"].endswith("Answer:")
    assert [r["chosen"] for r in rows if r["category"] != "letters"] == [
        [{"role": "assistant", "content": "In the fridge."}]
    ]


def test_a_letters_section_holds_plain_letter_pairs_only() -> None:
    from aloekit.data.prefs_build import PrefsConfig

    sources = [{"source": "medmcqa"}]
    for letters, message in (
        ({"sources": sources, "rejected": "wrong_option"}, "letters: set plain: true"),
        ({"sources": sources, "rejected": "reasoning", "plain": True}, "letters: plain pairs need rejected"),
    ):
        with pytest.raises(UserError, match=message):
            parse_yaml(json.dumps({"letters": letters}), PrefsConfig, source="p.yaml", what="prefs")


def test_cloze_keyed_answer_format_pairs_choose_the_scorers_option_over_starting_to_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from aloekit.config import EngineConfig
    from aloekit.data.prefs_build import PrefsConfig, build_prefs

    path = tmp_path / "mcq.jsonl"
    item = replace(question(0, known=False), explanation="The c option is what the textbook says about this.")
    path.write_text(json.dumps(item.to_json()) + "\n")
    monkeypatch.setattr(EngineConfig, "load", lambda self, **_: OptionScorer())
    text = (
        f"validation: 0\nmedical: {{sources: [{{format: mcq, path: {path}, name: exam, "
        f"cloze_answers: {{scorer: {{model: x}}}}}}], rejected: reasoning, option_text: true}}\n{NO_EVAL}"
    )
    build_prefs(parse_yaml(text, PrefsConfig, source="p.yaml", what="prefs"), tmp_path / "p", log=lambda _: None)
    pairs = [json.loads(line) for line in (tmp_path / "p" / "train.jsonl").read_text().splitlines()]
    assert [p["chosen"][-1]["content"] for p in pairs] == ["Answer: A. right answer"]
