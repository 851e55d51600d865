"""Instruction data as :class:`~aloekit.data.schema.ChatSample`: the generic chat layouts (alpaca, ShareGPT,
``messages``) and the medical QA / dialogue sources that use their own field names.

Each parser takes one :class:`~aloekit.data.sources.mcqa.Row` and the source name, and raises
:class:`~aloekit.errors.MalformedRow` for that row alone (no reply, unknown role, ...), so the caller counts it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aloekit.data.schema import ChatSample, Message, check_messages
from aloekit.data.sources.mcqa import Row
from aloekit.errors import MalformedRow

ChatParser = Callable[[Row, str], ChatSample]

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
"""ShareGPT's ``from`` values (and the ``messages`` role names some ShareGPT exports use instead)."""

NO_ANSWER = {"", "no answers", "unanswerable", "n/a"}
"""MedicationQA's placeholders for a question the annotators found no answer to: an empty answer in disguise."""


def alpaca(task: str) -> ChatParser:
    """``instruction``, optional ``input``, ``output``: one user turn (instruction, blank line, input) and the reply."""

    def parse(row: Row, source: str) -> ChatSample:
        fields = row.fields()
        prompt = "\n\n".join(p for p in (_text(fields, "instruction", row), _text(fields, "input", row)) if p)
        return _single_turn(row, source, fields, prompt, _text(fields, "output", row), task)

    return parse


def sharegpt(task: str) -> ChatParser:
    """``conversations``: [{``from``: human | gpt | system, ``value``}]."""

    def parse(row: Row, source: str) -> ChatSample:
        fields = row.fields()
        turns = _list(fields, "conversations", row)
        messages = []
        for i, turn in enumerate(turns):
            if not isinstance(turn, Mapping) or not isinstance(turn.get("value"), str):
                raise MalformedRow("bad message", f"{row.where}: turn {i} must be an object with 'from' and 'value'")
            role = SHAREGPT_ROLES.get(str(turn.get("from")))
            if role is None:
                raise MalformedRow(
                    "unknown role", f"{row.where}: turn {i} is from {turn.get('from')!r}; use human, gpt or system"
                )
            messages.append({"role": role, "content": turn["value"]})
        return _sample(row, source, fields, messages, task)

    return parse


def messages(task: str) -> ChatParser:
    """``messages``: [{``role``, ``content``}], the layout TRL trains on (extra keys per message are dropped)."""

    def parse(row: Row, source: str) -> ChatSample:
        fields = row.fields()
        turns = _list(fields, "messages", row)
        check_messages(turns, row.where)
        return _sample(row, source, fields, [{"role": m["role"], "content": m["content"]} for m in turns], task)

    return parse


def capybara(row: Row, source: str) -> ChatSample:
    """LDJnr/Capybara: ``conversation``: [{``input`` (user), ``output`` (assistant)}], one object per exchange."""
    fields = row.fields()
    exchanges = _list(fields, "conversation", row)
    messages: list[Message] = []
    for i, exchange in enumerate(exchanges):
        if not isinstance(exchange, Mapping) or not all(isinstance(exchange.get(k), str) for k in ("input", "output")):
            raise MalformedRow("bad message", f"{row.where}: exchange {i} must have string 'input' and 'output'")
        messages += [
            {"role": "user", "content": exchange["input"]},
            {"role": "assistant", "content": exchange["output"]},
        ]
    return _sample(row, source, fields, messages, "general")


def medicationqa(row: Row, source: str) -> ChatSample:
    """MedicationQA (``Question``, ``Answer``, ``Focus (Drug)``, ``Question Type``, ...): a consumer question and
    its MedlinePlus-sourced answer. Placeholder answers ("No answers", "Unanswerable", ...) are empty answers."""
    fields = row.fields()
    answer = _text(fields, "Answer", row)
    if answer.lower() in NO_ANSWER:
        raise MalformedRow("empty answer", f"{row.where}: the answer is {answer!r}; there is nothing to learn from")
    return _single_turn(row, source, fields, _text(fields, "Question", row), answer, "open_qa")


# --- helpers --------------------------------------------------------------------------------------------------


def _text(fields: Mapping[str, Any], key: str, row: Row) -> str:
    """A string field, stripped; a missing or null one is empty (alpaca's ``input`` is often left out)."""
    value = fields.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedRow(f"field '{key}' not str", f"{row.where}: field '{key}' must be a string")
    return value.strip()


def _list(fields: Mapping[str, Any], key: str, row: Row) -> list[Any]:
    value = fields.get(key)
    if not isinstance(value, list):
        raise MalformedRow(
            f"missing field '{key}'",
            f"{row.where}: field '{key}' must be a list (fields present: {', '.join(sorted(fields)) or 'none'})",
        )
    return value


def _single_turn(row: Row, source: str, fields: Mapping[str, Any], prompt: str, reply: str, task: str) -> ChatSample:
    if not prompt:
        raise MalformedRow("empty prompt", f"{row.where}: the question / instruction is empty")
    if not reply:
        raise MalformedRow("empty answer", f"{row.where}: the answer / output is empty")
    return _sample(
        row, source, fields, [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}], task
    )


def _sample(row: Row, source: str, fields: Mapping[str, Any], turns: Sequence[Message], task: str) -> ChatSample:
    if turns and turns[-1]["role"] == "assistant" and not turns[-1]["content"].strip():
        raise MalformedRow("empty answer", f"{row.where}: the last (assistant) message is empty")
    # A user file may say what each row is (``task``); registered sources fix it.
    return ChatSample(
        id=str(fields.get("id") or row.id), messages=tuple(turns), source=source, task=str(fields.get("task") or task)
    )
