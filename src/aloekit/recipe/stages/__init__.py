"""One module per stage of ``aloe run``: each a function from its typed inputs (the recipe and the outputs of the
stages it reads) to its typed outputs, working in the folder the runner gives it. The runner
(:mod:`aloekit.recipe.runner`) records the outputs; the wiring is :mod:`aloekit.recipe.run`."""
