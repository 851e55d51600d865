"""Typer options built from pydantic config fields, so a setting is named, defaulted and documented once.

A command that mirrors a config (``aloe eval`` -> :class:`~aloekit.config.MCQAConfig`, ``aloe safety`` ->
:class:`~aloekit.config.SafetyConfig`) declares each such parameter as ``name: T = field_option(Config, "name")``:
the flag is ``--name`` in kebab case, the default is the field's and the help is the field's description. The
annotation ``T`` is the type typed on the command line (a comma-separated ``str`` for a tuple of names, ``str`` for
a ``Literal``): the config, not click, validates the value, so every bad value ends in the same one-line error
naming the flag (:func:`build_config`).
"""

from __future__ import annotations

from typing import Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from aloekit.errors import UserError

C = TypeVar("C", bound=BaseModel)


def flag(name: str) -> str:
    """The command-line flag of a config field: ``checkpoint_every`` -> ``--checkpoint-every``."""
    return "--" + name.replace("_", "-")


def cli_default(config: type[BaseModel], name: str) -> object:
    """Field ``name``'s default as typed on the command line: a tuple of names comma-joined, an empty tuple None
    (a repeatable option given no value); a required field has none (``...``: typer then requires the flag)."""
    field = config.model_fields[name]
    if field.is_required():
        return ...
    default = field.get_default(call_default_factory=True)
    if isinstance(default, tuple):
        if not default:
            return None
        if all(isinstance(item, str) for item in default):
            return ",".join(default)
    return default


def field_option(
    config: type[BaseModel],
    name: str,
    *decls: str,
    scope: str | None = None,
    help: str | None = None,
    **click: Any,
) -> Any:
    """A ``typer.Option`` for field ``name`` of ``config``: flag ``--kebab-name`` (or ``decls``), the field's
    default and its description as help, prefixed with ``scope`` (the mode it applies to, e.g. ``medprompt``).

    ``help`` replaces the description only where one flag feeds several configs (``aloe eval --limit``) and so
    needs wording of its own. Other keywords (``min=1``) go to typer unchanged. A name the config lacks is a
    KeyError when the command's module is imported, so a renamed field cannot leave a stale flag behind.
    """
    field = config.model_fields[name]
    text = help if help is not None else field.description or ""
    return typer.Option(
        cli_default(config, name), *(decls or (flag(name),)), help=f"{scope}: {text}" if scope else text, **click
    )


def negated_option(config: type[BaseModel], name: str, *, scope: str | None = None) -> Any:
    """A ``--no-kebab-name`` flag (default off) for a boolean field that defaults to on; pass ``not value``."""
    field = config.model_fields[name]
    if field.get_default() is not True:
        raise TypeError(f"{config.__name__}.{name} does not default to True: it needs no --no- flag")
    text = f"turn off ({field.description})"
    return typer.Option(False, f"--no-{name.replace('_', '-')}", help=f"{scope}: {text}" if scope else text)


def build_config(config: type[C], *, flags: dict[str, str] | None = None, prefix: str = "", **values: Any) -> C:
    """``config(**values)``; its first validation error as one UserError naming the flag (``--limit: ...``).

    The flag is the last named part of the error's location in kebab case (``medprompt.k`` -> ``--k``), after
    ``prefix`` (``judge-``); ``flags`` maps a dotted location to another flag (``medprompt.database`` -> ``cot-db``),
    or to ``""`` for a location that no flag stands for (the message is then shown alone).
    """
    try:
        return config(**values)
    except ValidationError as e:
        first = e.errors()[0]
        named = [part for part in first["loc"] if isinstance(part, str)]
        dotted = ".".join(named)
        renamed = flags or {}
        name = renamed[dotted] if dotted in renamed else (prefix + named[-1].replace("_", "-") if named else "")
        message = str(first["msg"]).removeprefix("Value error, ")
        raise UserError(f"--{name}: {message}" if name else message) from e
