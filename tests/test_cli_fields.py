"""Specification of the CLI's options built from pydantic configs (issue 19, item 5): a flag's name, default and
help come from the config field, and a bad value is one error line naming the flag."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic import BaseModel, Field, model_validator

from aloekit.cli import app
from aloekit.cli.fields import build_config, cli_default, field_option, negated_option
from aloekit.config import EngineConfig, MCQAConfig, MedpromptSettings, OpenEndedConfig, SafetyConfig
from aloekit.errors import UserError


class Toy(BaseModel):
    name: str = Field("x", description="A name.")
    count: int | None = Field(None, ge=1, description="How many.")
    names: tuple[str, ...] = Field(("a", "b"), description="Some names.")
    paths: tuple[Path, ...] = Field((), description="Some paths.")
    loud: bool = Field(False, description="Shout.")
    quiet: bool = Field(True, description="Whisper.")
    needed: str = Field(description="Required.")

    @model_validator(mode="after")
    def _whole(self) -> Toy:
        if self.name == "both":
            raise ValueError("name both is a whole-model error")
        return self


def command(callback: object) -> Any:
    toy = typer.Typer()
    toy.command()(callback)
    return typer.main.get_command(toy)


def options(cmd: Any) -> dict[str, Any]:
    return {p.name: p for p in cmd.params if p.name}


def test_a_field_option_takes_the_flag_default_and_help_from_the_field() -> None:
    seen: dict[str, object] = {}

    def run(
        name: str = field_option(Toy, "name"),
        count: int | None = field_option(Toy, "count", "--how-many", scope="mode"),
        names: str = field_option(Toy, "names"),
        paths: list[Path] | None = field_option(Toy, "paths"),
        loud: bool = field_option(Toy, "loud"),
        quiet_off: bool = negated_option(Toy, "quiet"),
    ) -> None:
        seen.update(name=name, count=count, names=names, paths=paths, loud=loud, quiet_off=quiet_off)

    cmd = command(run)
    params = options(cmd)
    assert params["name"].opts == ["--name"] and params["name"].default == "x"
    assert params["count"].opts == ["--how-many"]
    assert params["count"].help == "mode: How many."
    assert params["names"].default == "a,b"  # a tuple of names is typed comma-separated
    assert params["paths"].default is None  # an empty tuple: a repeatable option given nothing
    assert params["loud"].opts == ["--loud"] and params["loud"].secondary_opts == []  # one flag, no --no-loud
    assert params["quiet_off"].opts == ["--no-quiet"] and params["quiet_off"].default is False

    cmd.main(["--how-many", "3", "--loud", "--no-quiet", "--paths", "p", "--paths", "q"], standalone_mode=False)
    assert seen == {
        "name": "x",
        "count": 3,
        "names": "a,b",
        "paths": [Path("p"), Path("q")],
        "loud": True,
        "quiet_off": True,
    }


def test_a_required_field_makes_a_required_option_and_an_unknown_field_fails_at_declaration() -> None:
    assert cli_default(Toy, "needed") is ...
    with pytest.raises(KeyError):
        field_option(Toy, "nosuch")
    with pytest.raises(TypeError, match="does not default to True"):
        negated_option(Toy, "loud")


def test_build_config_names_the_flag_of_the_first_bad_field() -> None:
    with pytest.raises(UserError, match=r"^--count: Input should be greater than or equal to 1$"):
        build_config(Toy, needed="n", count=0)
    with pytest.raises(UserError, match=r"^--judge-count: "):
        build_config(Toy, prefix="judge-", needed="n", count=0)
    with pytest.raises(UserError, match=r"^--cot-db: "):
        build_config(Toy, flags={"count": "cot-db"}, needed="n", count=0)
    with pytest.raises(UserError, match=r"^name both is a whole-model error$"):
        build_config(Toy, needed="n", name="both")


def aloe_options(name: str) -> dict[str, Any]:
    # typer 0.29 vendors click: its group is not a click.Group, so it is read by its commands attribute only.
    group: Any = typer.main.get_command(app)
    return options(group.commands[name])


def test_every_safety_flag_is_a_field_of_its_config_with_its_default_and_help() -> None:
    params = aloe_options("safety")
    for name, field in SafetyConfig.model_fields.items():
        param = params[name]
        assert param.opts == ["--" + name.replace("_", "-")], name
        assert param.default == cli_default(SafetyConfig, name), name
        assert param.help == field.description, name


@pytest.mark.parametrize(
    ("param", "config", "field", "scope"),
    [
        ("mode", MCQAConfig, "mode", None),
        ("formulation", MCQAConfig, "formulation", None),
        ("subset", MCQAConfig, "subset", None),
        ("num_fewshot", MCQAConfig, "num_fewshot", None),
        ("checkpoint_every", MCQAConfig, "checkpoint_every", None),
        ("cot_db", MedpromptSettings, "database", "medprompt"),
        ("k", MedpromptSettings, "k", "medprompt"),
        ("runs", MedpromptSettings, "runs", "medprompt"),
        ("temperature", MedpromptSettings, "temperature", "medprompt"),
        ("exclude", OpenEndedConfig, "exclude", "--open-ended"),
        ("batch_size", EngineConfig, "batch_size", None),
        ("dtype", EngineConfig, "dtype", None),
    ],
)
def test_eval_flags_mirroring_a_config_take_its_default_and_help(
    param: str, config: type[BaseModel], field: str, scope: str | None
) -> None:
    option = aloe_options("eval")[param]
    description = config.model_fields[field].description
    assert option.default == cli_default(config, field)
    assert option.help == (f"{scope}: {description}" if scope else description)


def test_the_safety_config_checks_what_the_command_checked() -> None:
    with pytest.raises(UserError, match="--suites: names no suite"):
        build_config(SafetyConfig, suites=",")
    with pytest.raises(UserError, match="--judge: gpt: use offline or llm:REF"):
        build_config(SafetyConfig, judge="gpt")
    with pytest.raises(UserError, match="--styles: unknown attack style 'nosuch'"):
        build_config(SafetyConfig, styles="nosuch")
    with pytest.raises(UserError, match=r"^--bias reads BBQ from the data folder: add --data-dir"):
        build_config(SafetyConfig, bias=True)
    assert build_config(SafetyConfig, suites="advbench, file:x.jsonl").suites == ("advbench", "file:x.jsonl")
