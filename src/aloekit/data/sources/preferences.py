"""Preference pairs in TRL's layouts, as :class:`~aloekit.data.schema.PreferencePair`.

Two layouts are read, the two DPOTrainer accepts:

* explicit prompt: ``prompt`` (a string or messages), ``chosen`` / ``rejected`` (strings or messages ending with
  the assistant's reply);
* implicit prompt: no ``prompt``; ``chosen`` and ``rejected`` are whole conversations that share every turn but
  the last (argilla/dpo-mix-7k, Anthropic HH in messages form).
"""

from __future__ import annotations

from typing import Any

from aloekit.data.schema import PreferencePair, check_messages
from aloekit.data.sources.mcqa import Row
from aloekit.errors import MalformedRow


def preference(row: Row, source: str) -> PreferencePair:
    fields = row.fields()
    if fields.get("prompt") is None and isinstance(fields.get("chosen"), list):
        fields = _split_prompt(fields, row)
    prompt = fields.get("prompt")
    if isinstance(prompt, list):
        check_messages(prompt, row.where)  # before PreferencePair copies each message as a dict
    elif prompt is not None and not isinstance(prompt, str):
        raise MalformedRow("bad field 'prompt'", f"{row.where}: field 'prompt' must be a string or a list of messages")
    pair = PreferencePair.from_json({**fields, "id": fields.get("id") or row.id, "source": source}, row.where)
    return pair


def _split_prompt(fields: dict[str, Any], row: Row) -> dict[str, Any]:
    """Implicit prompt: the shared turns before the last become the prompt."""
    chosen, rejected = fields["chosen"], fields.get("rejected")
    if not isinstance(rejected, list):
        raise MalformedRow(
            "bad field 'rejected'", f"{row.where}: 'chosen' is a conversation, so 'rejected' must be one"
        )
    check_messages(chosen, f"{row.where} (chosen)")
    check_messages(rejected, f"{row.where} (rejected)")
    if chosen[:-1] != rejected[:-1]:
        raise MalformedRow(
            "chosen and rejected differ before the reply",
            f"{row.where}: without a 'prompt', chosen and rejected must share every turn but the last",
        )
    return {**fields, "prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}
