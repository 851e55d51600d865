"""The ``aloe`` command line, one module per command group; wiring only, the work is in the library.

- :mod:`~aloekit.cli.main`: the root app and the one error path (``aloe = aloekit.cli:main``);
- :mod:`~aloekit.cli.fields`: typer options built from pydantic config fields (one source for a flag's name,
  default and help); :mod:`~aloekit.cli.options`: options and engine helpers several commands share;
  :mod:`~aloekit.cli.show`: printing results as JSON or tables;
- commands: :mod:`~aloekit.cli.models`, :mod:`~aloekit.cli.generate` (and demo), :mod:`~aloekit.cli.serve`,
  :mod:`~aloekit.cli.eval` (with :mod:`~aloekit.cli.eval_open_ended`), :mod:`~aloekit.cli.safety`,
  :mod:`~aloekit.cli.merge`, :mod:`~aloekit.cli.run`, and the groups :mod:`~aloekit.cli.data`,
  :mod:`~aloekit.cli.train`, :mod:`~aloekit.cli.export`, :mod:`~aloekit.cli.medprompt`, :mod:`~aloekit.cli.review`.
"""

from aloekit.cli.main import DEBUG_HINT, app, main

__all__ = ["DEBUG_HINT", "app", "main"]
