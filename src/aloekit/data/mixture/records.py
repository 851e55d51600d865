"""One mixture source's records, read, cleaned and formatted: from a source entry to schema records, and from a
record to the chat sample SFT trains on (letter balancing, chain-of-thought, attack styles, refusals)."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from aloekit.data.clean import CleanConfig, clean_chat, clean_harmful, clean_mcq
from aloekit.data.cot import explanation_cot, load_verified
from aloekit.data.mixture.config import MixtureConfig, SafetyFormat, SourceEntry
from aloekit.data.prefs import pick_styles, template_refusal
from aloekit.data.schema import ChatSample, HarmfulRequest, MCQItem, PreferencePair
from aloekit.data.sources import SOURCES, BenignItem, load_source
from aloekit.data.tally import Tally
from aloekit.data.templates import is_yes_no_maybe, mcq_to_chat, mcq_to_plain, with_system
from aloekit.errors import MalformedRow, UserError
from aloekit.safety.styles import apply_style

Record = MCQItem | ChatSample | HarmfulRequest | PreferencePair | BenignItem


def load_entry(entry: SourceEntry, data_dir: Path | None, tally: Tally) -> list[Record]:
    """Read one mixture entry into schema records (malformed rows counted in ``tally``)."""
    if entry.source is not None and entry.source not in SOURCES:
        known = ", ".join(sorted(SOURCES))
        raise UserError(f"unknown source '{entry.source}' in the mixture: use one of {known}, or 'format' + 'path'")
    records = load_source(
        entry.source,
        format=entry.format,
        path=entry.path,
        hub=entry.hub,
        data_dir=data_dir,
        tally=tally,
        limit=entry.limit,
    )
    if entry.part is None:
        return records
    start, end = entry.part
    return [r for r in records if start <= _hash_share("part", str(getattr(r, "id", r)), 0) < end]


def styled_requests(request: HarmfulRequest, config: SafetyFormat, seed: int) -> list[HarmfulRequest]:
    """``request`` as SFT wants it: wrapped in its seeded attack styles (ids ``<id>:<style>``), with a templated
    refusal where the source ships none and ``refusal_templates`` is on."""
    safe = request.safe_response or template_refusal(request.id, seed, config.refusal_templates)
    if not config.styles:
        return [dataclasses.replace(request, safe_response=safe)]
    return [
        dataclasses.replace(
            request, id=f"{request.id}:{style}", prompt=apply_style(style, request.prompt), safe_response=safe
        )
        for style in pick_styles(
            request.id, list(dict.fromkeys(config.styles)), config.styles_per_request, seed, config.always_styles
        )
    ]


def to_chat(
    record: Record,
    label: str,
    config: MixtureConfig,
    teacher: dict[str, str],
    tally: Tally,
    *,
    original: MCQItem | None = None,
    plain_share: float | None = None,
) -> tuple[ChatSample | None, str]:
    """A chat sample for SFT (or None, counted), and where an MCQ's reasoning came from: teacher, explanation or
    none (answer only); "n/a" for other records. ``original``: the question a rotated copy was made from (its
    id picks the format, so all copies of one question share it, and keys its teacher reasoning). ``plain_share``: the
    source's own share of MCQs taught as plain letter-format samples (default: ``mcq.plain_share``)."""
    if isinstance(record, MCQItem):
        source = original or record
        if original is not None:
            item = record  # already rotated
        else:
            item = balanced(record, config.seed) if config.mcq.balance_letters else record
        share = config.mcq.plain_share if plain_share is None else plain_share
        if share and _hash_share("plain", source.id, config.seed) < share:
            return _relabel(mcq_to_plain(item, seed=config.seed), label), "plain"
        reasoning, origin = teacher.get(source.id), "teacher"
        if reasoning is None and config.cot.explanations:
            reasoning, origin = explanation_cot(source), "explanation"
        if reasoning is not None and _hash_share("cot", source.id, config.seed) >= config.cot.share:
            reasoning = None  # taught answer-only: asked for the answer, it answers
        if reasoning is None:
            origin = "none"
        elif item.options != source.options:
            # Reasoning was written for the original order: its closing "Answer: X" is dropped (the right letter
            # is added back), and reasoning that still names an option by its old letter is not used.
            reasoning = _ANSWER_LINE.sub("", reasoning).rstrip()
        try:
            sample = mcq_to_chat(item, seed=config.seed, reasoning=reasoning, system=config.system_prompt)
        except MalformedRow:
            if item.options == source.options:
                raise
            tally.drop("format", "reasoning names an option by its letter before reordering (answer kept)", record.id)
            sample, origin = mcq_to_chat(item, seed=config.seed, system=config.system_prompt), "none"
        return _relabel(sample, label), origin
    if isinstance(record, ChatSample):
        return _relabel(with_system(record, config.system_prompt), label), "n/a"
    if isinstance(record, HarmfulRequest):
        if not record.safe_response:
            tally.drop("format", "harmful request without a safe response (use it in `aloe data prefs`)", record.id)
            return None, "n/a"
        return _one_turn(record.id, record.prompt, record.safe_response, label, "safety", config.system_prompt), "n/a"
    if isinstance(record, BenignItem):
        if not record.answer:
            tally.drop("format", "benign prompt without an answer", record.id)
            return None, "n/a"
        # Asked as written, like the harmful requests it must be told apart from (a question template around
        # it would teach the difference on the template's words).
        return _one_turn(record.id, record.prompt, record.answer, label, "open_qa", config.system_prompt), "n/a"
    raise UserError(f"source '{label}' holds preference pairs: list it in a preference config (`aloe data prefs`)")


def _one_turn(item_id: str, prompt: str, reply: str, label: str, task: str, system: str | None) -> ChatSample:
    """A one-turn chat (the prompt as written, then the reply), with the system turn if there is one."""
    messages = ({"role": "user", "content": prompt}, {"role": "assistant", "content": reply})
    return with_system(ChatSample(id=item_id, messages=messages, source=label, task=task), system)


_ANSWER_LINE = re.compile(r"\n*Answer: [A-J]\s*$")


def _hash_share(purpose: str, key: str, seed: int) -> float:
    """A number in [0, 1) fixed by (purpose, seed, key): per-item choices that do not depend on order."""
    digest = hashlib.blake2b(f"{purpose}\x00{seed}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def balanced(item: MCQItem, seed: int) -> MCQItem:
    """``item`` with its options reordered so the right one sits at a letter dealt by a hash of (seed, id):
    over many items every letter is the key about equally often. The wrong options keep their relative order.
    Yes/no/maybe items (PubMedQA, scored by word) are returned unchanged."""
    if is_yes_no_maybe(item.options):
        return item
    n = len(item.options)
    target = int(_hash_share("letter", item.id, seed) * n)
    if target == item.answer:
        return item
    wrong = [o for i, o in enumerate(item.options) if i != item.answer]
    options = (*wrong[:target], item.options[item.answer], *wrong[target:])
    return dataclasses.replace(item, options=options, answer=target)


def _relabel(sample: ChatSample, label: str) -> ChatSample:
    return sample if sample.source == label else dataclasses.replace(sample, source=label)


def clean_record(record: Record, config: CleanConfig, tally: Tally) -> Record | None:
    if isinstance(record, MCQItem):
        return clean_mcq(record, config, tally)
    if isinstance(record, ChatSample):
        return clean_chat(record, config, tally)
    if isinstance(record, HarmfulRequest):
        return clean_harmful(record, config, tally)
    return record


def teacher_reasoning(files: Sequence[Path]) -> dict[str, str]:
    """id -> verified reasoning from `aloe data cot` outputs (later files win)."""
    out: dict[str, str] = {}
    for path in files:
        if not path.is_file():
            raise UserError(f"cot.teacher: {path} not found; run `aloe data cot` first or fix the path")
        for item in load_verified(path):
            if item.explanation:
                out[item.id] = item.explanation
    return out


def content_key(record: Record) -> str:
    """What makes two records the same item: an MCQ's question, options and context (two copies of a question
    get different templates, so the formatted prompts differ); a chat's turns without the system prompt, answers
    included: "What are the symptoms of X?" for two different X is the same question shape, not a duplicate."""
    if isinstance(record, MCQItem):
        return "\n".join([record.context or "", record.question, *record.options])
    if isinstance(record, ChatSample):
        return "\n".join(m["content"] for m in record.messages if m["role"] != "system")
    if isinstance(record, HarmfulRequest):
        return "\n".join([record.prompt, record.safe_response or ""])
    if isinstance(record, BenignItem):
        return "\n".join([record.prompt, record.answer or ""])
    return str(record)
