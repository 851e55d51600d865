"""Find import cycles between aloekit's modules (``make lint`` runs it).

    python tools/import_cycles.py [--src src] [--top-level-only]

Builds the graph of aloekit modules from their ``import`` statements with :mod:`ast` (nothing is imported or run):
an edge ``a -> b`` for every ``import b`` / ``from b import x`` in ``a``, and ``a -> b.x`` where ``b.x`` is itself a
module. By default every import counts, deferred ones inside functions and ``TYPE_CHECKING`` blocks included (a
cycle through a deferred import is still two modules that need each other); ``--top-level-only`` keeps only the
imports that run when the module is imported. A package's ``__init__`` is a module like any other: importing
``a.b`` is not counted as importing ``a``. Prints each cycle (a strongly connected component of two or more
modules, or a module importing itself) and exits 1 if there is any; otherwise prints how many modules and edges it
checked and exits 0.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = "aloekit"


def module_names(src: Path) -> dict[str, Path]:
    """Every module of the package under ``src``: dotted name -> file."""
    names: dict[str, Path] = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_top_level(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether ``node`` runs at import time: not inside a function, nor under ``if TYPE_CHECKING:``."""
    current = parents.get(node)
    while current is not None:
        if isinstance(current, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            return False
        if isinstance(current, ast.If) and "TYPE_CHECKING" in ast.unparse(current.test):
            return False
        current = parents.get(current)
    return True


def imports_of(name: str, path: Path, modules: dict[str, Path], *, top_level_only: bool) -> set[str]:
    """The aloekit modules that module ``name`` (the file ``path``) imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if top_level_only and isinstance(node, ast.Import | ast.ImportFrom) and not _is_top_level(node, parents):
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        for target in targets:
            # ``import a.b.c`` of a name that is not a module (an attribute): the longest module prefix.
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target.startswith(PACKAGE):
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of ``graph`` that are cycles (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            if children:
                child = children.pop(0)
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, sorted(graph.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    found.append(sorted(component))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parent.parent / "src")
    parser.add_argument("--top-level-only", action="store_true", help="only imports that run at import time")
    args = parser.parse_args(argv)
    modules = module_names(args.src)
    graph = {
        name: imports_of(name, path, modules, top_level_only=args.top_level_only) for name, path in modules.items()
    }
    found = cycles(graph)
    for component in found:
        inside = {m: sorted(graph[m] & set(component)) for m in component}
        print("import cycle: " + "; ".join(f"{m} -> {', '.join(t)}" for m, t in inside.items()))
    if found:
        return 1
    edges = sum(len(targets) for targets in graph.values())
    kind = "top-level imports" if args.top_level_only else "imports, deferred ones included"
    print(f"no import cycle: {len(modules)} modules, {edges} edges ({kind})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
