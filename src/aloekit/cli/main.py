"""The ``aloe`` command: the root app, its command groups, and the CLI's one error path (:func:`main`).

Each command lives in its group's module of :mod:`aloekit.cli` and calls a library function that does the work.
Errors the user can fix (:class:`~aloekit.errors.UserError`) print one line and exit 2; heavy libraries are
imported inside commands so ``aloe --help`` and ``aloe models info`` start fast.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated

import typer

from aloekit.cli.data import data_app
from aloekit.cli.eval import eval_
from aloekit.cli.export import export_app
from aloekit.cli.generate import demo, generate
from aloekit.cli.medprompt import medprompt_app
from aloekit.cli.merge import merge_
from aloekit.cli.models import models_app
from aloekit.cli.review import review_app
from aloekit.cli.run import run_
from aloekit.cli.safety import safety
from aloekit.cli.serve import serve
from aloekit.cli.train import train_app
from aloekit.errors import UserError

try:  # typer >= 0.29 vendors click: its usage errors derive from TyperException, not click.ClickException
    from typer import TyperException as UsageBase
except ImportError:  # older typer raises click's own exceptions
    from click import ClickException as UsageBase  # type: ignore[assignment]

app = typer.Typer(
    name="aloe",
    help="aloekit: turn an open base LLM into an aligned, evaluated healthcare LLM (the Aloe recipe).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")
app.add_typer(export_app, name="export")
app.add_typer(train_app, name="train")
app.add_typer(medprompt_app, name="medprompt")
app.add_typer(review_app, name="review")
# In the order `aloe --help` has always listed them.
app.command()(generate)
app.command()(serve)
app.command("eval")(eval_)
app.command("safety")(safety)
app.command("merge")(merge_)
app.command("run")(run_)
app.command()(demo)


DEBUG_HINT = "rerun with --debug for the traceback"


@app.callback()
def _root(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", help="On an unexpected error, print the full traceback (also accepted after the command)."
        ),
    ] = False,
) -> None:
    """aloekit: turn an open base LLM into an aligned, evaluated healthcare LLM (the Aloe recipe)."""
    # main() takes --debug out of the arguments before parsing (so it works in any position); the option is
    # declared here only so `aloe --help` lists it.


def _usage_line(e: UsageBase) -> str:
    """One line for a command-line usage error: click's message plus where the help is."""
    message = " ".join(e.format_message().split()).rstrip(".")
    ctx = getattr(e, "ctx", None)
    where = f"'{ctx.command_path} --help'" if ctx is not None else "'aloe --help'"
    return f"error: {message}; see {where}"


def main(argv: list[str] | None = None) -> int:
    """Entry point and the CLI's one error path.

    - usage errors (missing or unknown option, wrong type, unknown command) and :class:`UserError`: one
      ``error: ...`` line on stderr, exit 2 (click's convention for usage errors);
    - an unreadable or unwritable path (OSError naming a file): one line, exit 2;
    - anything else is a bug or an input not checked yet: one line with a hint to rerun with ``--debug``, exit 1.
    ``--debug`` (anywhere before ``--``, or ``ALOE_DEBUG=1``) prints the traceback as well.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    cut = args.index("--") if "--" in args else len(args)
    debug = "--debug" in args[:cut] or os.environ.get("ALOE_DEBUG", "") not in ("", "0")
    args = [a for a in args[:cut] if a != "--debug"] + args[cut:]

    try:
        return _run(args, debug)
    finally:
        _close_process_group()


def _close_process_group() -> None:
    """Tear down torch.distributed's process group, if a command under ``accelerate launch`` opened one.

    Left to interpreter exit, gloo's background threads can be destroyed while still joinable: the process then dies
    of "terminate called without an active exception" (SIGABRT) after its work is done, and the launcher reports
    the whole run failed. Torch is only looked up, never imported: commands that did not load it pay nothing.
    """
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


def _run(args: list[str], debug: bool) -> int:
    try:
        # typer 0.29 vendors click: its exceptions are typer._click.exceptions.*, which `except click.ClickException`
        # misses; UsageBase is the base class of whichever the installed typer raises.
        returned = app(args=args, prog_name="aloe", standalone_mode=False)
    except UserError as e:
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {e.message}", err=True)
        return UserError.exit_code
    except typer.Exit as e:
        return int(e.exit_code or 0)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        return 130
    except UsageBase as e:
        # `aloe` or `aloe data` alone: the help, exit 2 as click does.
        if type(e).__name__ == "NoArgsIsHelpError" and hasattr(e, "show"):
            e.show()
        else:
            typer.echo(_usage_line(e), err=True)
        return 2  # click's code for usage errors; its other exceptions (a file it cannot open) are the user's too
    except OSError as e:
        if e.filename is None:
            return _unexpected(e, debug)
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {e.filename}: {e.strerror or e}", err=True)
        return 2
    except Exception as e:
        return _unexpected(e, debug)
    # In non-standalone mode typer returns the code of a `typer.Exit` raised inside a command.
    return returned if isinstance(returned, int) else 0


def _unexpected(e: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    detail = " ".join(str(e).split())[:300]
    hint = "" if debug else f"; {DEBUG_HINT}"
    typer.echo(f"error: unexpected {type(e).__name__}{': ' + detail if detail else ''}{hint}", err=True)
    return 1
