"""The import graph of dltrain's modules, and its cycles.

Reads every module's import statements (``ast``, nothing is imported), those inside functions
included: an import deferred into a function still closes a cycle once the function runs
(cli -> sweeps -> cli did). An edge goes to the module that provides the name: ``from dltrain
import schema`` to dltrain.schema, ``from dltrain.data import load_data`` to the package
dltrain.data. Imports under ``if TYPE_CHECKING:`` never run and are left out.

    python scripts/import_graph.py            # the cycles (exit 1 if any), with a summary
    python scripts/import_graph.py --edges    # and every edge, "deferred" for function-level ones
    python scripts/import_graph.py --root OTHER/dltrain   # another checkout's package
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

PACKAGE = "dltrain"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

Graph = Dict[str, Dict[str, bool]]  # module -> {imported module: deferred (inside a function)}


def modules(root: Path = ROOT) -> Dict[str, Path]:
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(tree: ast.AST) -> Iterator[Tuple[ast.stmt, bool]]:
    """Each import statement and whether it sits in a function; not those under TYPE_CHECKING."""
    def visit(node: ast.AST, deferred: bool) -> Iterator[Tuple[ast.stmt, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, deferred
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from visit(ast.Module(body=child.orelse, type_ignores=[]), deferred)
            else:
                yield from visit(child, deferred or isinstance(
                    child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
    return visit(tree, False)


def _target(name: str, known: Set[str]) -> Optional[str]:
    """The dltrain module ``name`` (a module, or a name inside one) is provided by."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def build(root: Path = ROOT) -> Graph:
    known = modules(root)
    graph: Graph = {name: {} for name in known}
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        for node, deferred in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from the module's own package upwards
                    package = name.split(".") if is_package else name.split(".")[:-1]
                    package = package[:len(package) - node.level + 1]
                    base = ".".join(package + ([base] if base else []))
                names = [f"{base}.{alias.name}" for alias in node.names]
            for imported in names:
                target = _target(imported, set(known)) if imported.startswith(PACKAGE) else None
                if target and target != name:
                    # an edge is deferred only if every import of it is
                    graph[name][target] = graph[name].get(target, True) and deferred
    return graph


def cycles(graph: Graph) -> List[List[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(1000, 10 * len(graph)))
    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def a_cycle(graph: Graph, component: List[str]) -> List[str]:
    """One closed path through ``component``, to show how its modules import each other."""
    members, start = set(component), component[0]
    paths = [[start]]
    while paths:  # breadth first: the shortest way back to the start
        path = paths.pop(0)
        for w in sorted(graph[path[-1]]):
            if w == start:
                return path + [start]
            if w in members and w not in path:
                paths.append(path + [w])
    return component


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="print every edge")
    parser.add_argument("--root", type=Path, default=ROOT, help=f"the package folder ({ROOT})")
    args = parser.parse_args(argv)
    graph = build(args.root)
    edges = [(a, b, deferred) for a in sorted(graph) for b, deferred in sorted(graph[a].items())]
    if args.edges:
        for a, b, deferred in edges:
            print(f"{a} -> {b}{'  (deferred)' if deferred else ''}")
    deferred = sum(d for _, _, d in edges)
    print(f"{len(graph)} modules, {len(edges)} imports between them "
          f"({len(edges) - deferred} at import time, {deferred} inside functions)")
    found = cycles(graph)
    for component in found:
        path = a_cycle(graph, component)
        shown = path[0] + "".join(f" {'~>' if graph[a][b] else '->'} {b}"
                                  for a, b in zip(path, path[1:]))
        print(f"cycle among {', '.join(component)}:\n  {shown}   (~> inside a function)")
    if not found:
        print("no import cycles")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
