"""Reading a recipe file: placeholders filled, the data folder applied, ``if_present`` sets resolved, and every
file it names checked before the run starts.

A recipe is plain YAML with a few placeholders, replaced before it is read:

``{demo_data}``     the demo corpus shipped inside the package (aloekit/demo_data)
``{data_dir}``      the recipe's ``data_dir`` (or ``aloe run --data-dir``)
``{run}``           the run folder
``{holdout}``       the folder of ``data.holdout``'s files: ``NAME-train.jsonl`` and ``NAME-eval.jsonl``

and, in the ``merge`` section only, ``{base}``, ``{instruct}`` and ``{sft}``: the models being merged
(:func:`aloekit.recipe.config.merge_config`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from aloekit.config import node_line, read_config_text, read_yaml, validation_message
from aloekit.errors import UserError
from aloekit.evaluation import benchmarks
from aloekit.evaluation.redteam import SUITES
from aloekit.recipe.config import RecipeConfig

__all__ = ["load_recipe", "placeholders"]


def placeholders(run: Path, data_dir: Path | None) -> dict[str, str]:
    """The path placeholders of a recipe run in folder ``run``."""
    demo = Path(__file__).parents[1] / "demo_data"
    values = {
        "demo_data": str(demo),
        "run": str(run),
        "holdout": str(run / "data" / "holdout"),
    }
    if data_dir is not None:
        values["data_dir"] = str(data_dir)
    return values


_PLACEHOLDER = re.compile(r"\{(demo_data|data_dir|run|holdout)\}")


def load_recipe(path: Path, *, run: Path | None = None, data_dir: Path | None = None) -> tuple[RecipeConfig, str, Path]:
    """Read a recipe; return it (placeholders filled), its text as written, and the run folder.

    The run folder is ``run`` if given, else ``runs/<name>`` next to the current directory. ``data_dir``
    overrides the recipe's (and every section's) data folder. Any problem is one UserError naming the file, the
    line and the key.
    """
    text = read_config_text(path, "recipe")
    data, _ = read_yaml(text, str(path))
    if not isinstance(data, dict):
        raise UserError(f"{path}: a recipe is a mapping of keys ({', '.join(RecipeConfig.model_fields)})")
    name = str(data.get("name") or path.stem)
    folder = (run or Path("runs") / name).expanduser().absolute()
    if data_dir is not None and not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir} is not a folder")
    recipe_dir = data.get("data_dir")
    if data_dir is None and isinstance(recipe_dir, str) and "{" not in recipe_dir:
        # A relative data_dir is relative to the recipe file, so a recipe runs the same from any directory.
        data_dir = (path.parent / recipe_dir).resolve() if not Path(recipe_dir).is_absolute() else Path(recipe_dir)
    values = placeholders(folder, data_dir)

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise UserError(f"{path}: {{{key}}} is used but no data_dir is set: add data_dir or pass --data-dir")
        return values[key]

    filled_text = _PLACEHOLDER.sub(fill, text)
    filled, root = read_yaml(filled_text, str(path))
    filled["data_dir"] = str(data_dir) if data_dir is not None else None
    launcher = filled.get("launcher")
    if isinstance(launcher, dict) and isinstance(launcher.get("accelerate_config"), str):
        # Relative to the recipe file, like data_dir: recipes/aloe-8b.yaml names accelerate/deepspeed_zero3.yaml.
        launcher["accelerate_config"] = str((path.parent / launcher["accelerate_config"]).resolve())
    data_section = filled.get("data")
    if data_dir is not None and isinstance(data_section, dict):
        for key in ("mixture", "letters", "prefs_general", "prefs_safety"):
            if isinstance(data_section.get(key), dict):
                data_section[key]["data_dir"] = str(data_dir)
    try:
        recipe = RecipeConfig.model_validate(filled)
    except ValidationError as e:
        raise UserError(validation_message(e, RecipeConfig, str(path), root)) from e
    _check_files(recipe, path, root, folder)
    return _with_present(recipe), text, folder


def _paths(value: Any, loc: list[int | str]) -> Iterator[tuple[list[int | str], str]]:
    """(location, value) of every ``path`` key in a dumped config (data sources, preference pairs...)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "path" and isinstance(item, (str, Path)):
                yield [*loc, key], str(item)
            else:
                yield from _paths(item, [*loc, key])
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _paths(item, [*loc, index])


def _with_present(recipe: RecipeConfig) -> RecipeConfig:
    """The recipe with its ``if_present`` benchmarks and suites added where the data folder holds their files
    (all of them when the data comes from the Hub), and the others listed as skipped."""
    data_dir = recipe.data_dir

    def bench_present(name: str) -> bool:
        if name not in benchmarks.REGISTRY:
            raise UserError(
                f"eval.if_present: unknown benchmark '{name}': choose from {', '.join(benchmarks.REGISTRY)}"
            )
        local = benchmarks.REGISTRY[name].local
        return data_dir is None or (local is not None and (data_dir / local).is_file())

    def suite_present(name: str) -> bool:
        if name not in SUITES:
            raise UserError(f"safety.if_present: unknown suite '{name}': choose from {', '.join(SUITES)}")
        return data_dir is None or any(any(data_dir.glob(pattern)) for pattern in SUITES[name].files)

    ev, sa = recipe.eval, recipe.safety
    eval_present = [n for n in ev.if_present if bench_present(n)]
    suites_present = [n for n in sa.if_present if suite_present(n)]
    return recipe.model_copy(
        update={
            "eval": ev.model_copy(
                update={
                    "benchmarks": tuple(dict.fromkeys([*ev.benchmarks, *eval_present])),
                    "skipped": tuple(n for n in ev.if_present if n not in eval_present),
                }
            ),
            "safety": sa.model_copy(
                update={
                    "suites": tuple(dict.fromkeys([*sa.suites, *suites_present])),
                    "skipped": tuple(n for n in sa.if_present if n not in suites_present),
                }
            ),
        }
    )


def _check_files(recipe: RecipeConfig, path: Path, root: Any, run: Path) -> None:
    """Files a recipe names that must exist before the run starts (and not an hour into it). Files inside the
    run folder are made by the data stage ({holdout}/...), so only the others are checked."""
    made_by_the_run = run.resolve()

    def check(loc: list[int | str], file: Path) -> None:
        if not file.expanduser().resolve().is_relative_to(made_by_the_run) and not file.expanduser().exists():
            where = ".".join(str(k) if isinstance(k, str) else f"[{k}]" for k in loc).replace(".[", "[")
            raise UserError(f"{path} line {node_line(root, loc)}: {where} {file} not found: fix the path")

    named: list[tuple[list[int | str], tuple[str, ...]]] = [
        (["eval", "benchmarks"], recipe.eval.benchmarks),
        (["eval", "medprompt", "benchmarks"], recipe.eval.medprompt.benchmarks or ()),
        (["safety", "suites"], recipe.safety.suites),
    ]
    for loc, names in named:
        for index, name in enumerate(names):
            if name.startswith("file:"):
                check([*loc, index], Path(name.removeprefix("file:")))
    for where, value in _paths(recipe.data.model_dump(exclude={"holdout"}), ["data"]):
        check(where, Path(value))
    launcher = recipe.launcher.accelerate_config
    if launcher is not None and not launcher.is_file():
        line = node_line(root, ["launcher", "accelerate_config"])
        raise UserError(f"{path} line {line}: launcher.accelerate_config {launcher} not found: fix the path")
    for index, holdout in enumerate(recipe.data.holdout):
        if not holdout.path.is_file():
            line = node_line(root, ["data", "holdout", index, "path"])
            raise UserError(f"{path} line {line}: data.holdout[{index}].path {holdout.path} not found: fix the path")
