"""No import circle among the modules of ``tseg`` (``tseg.data`` first), read from the source with
``ast``.

Every ``import`` and ``from ... import`` statement counts, at module level and inside functions
alike (a lazy import is still a circle: it only moves the failure to the first call), except
those under ``if TYPE_CHECKING:``, which never run. ``from package import name`` is an edge to
``package.name`` when that is a module, else to the package. Importing a submodule also runs its
parent packages' ``__init__``; that implicit edge is left out, as Python resolves it before the
submodule runs.

Before the data sub-packages there were three, all in ``tseg.data``: ``check`` <-> ``check_own``,
``tseg.data`` <-> ``own`` and ``stream`` <-> ``hf_stream``.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def modules(src: Path = SRC) -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package) for every module under ``src/tseg``."""
    out = {}
    for path in sorted((src / "tseg").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if package else parts)] = (path, package)
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the statements under ``if TYPE_CHECKING:`` (never run)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        test = getattr(node, "test", None)
        if isinstance(node, ast.If) and (
            (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
        ):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def imports_of(name: str, path: Path, package: bool, known: set[str]) -> set[str]:
    """The modules of ``known`` that module ``name`` imports anywhere in its body."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree)
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in known else target)
    return (out & known) - {name}


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    mods = modules(src)
    return {name: imports_of(name, path, pkg, set(mods)) for name, (path, pkg) in mods.items()}


def circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, edges = work[-1]
            for w in edges:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(frozenset(comp))
    return found


def test_the_graph_sees_module_and_function_level_imports():
    graph = import_graph()
    # a submodule imported from its package is an edge to the submodule, not the package
    assert "tseg.train.state" in graph["tseg.train.build"]
    assert "tseg.train" not in graph["tseg.train.build"]
    # module level, absolute: check/own.py imports the report it fills
    assert "tseg.data.check.report" in graph["tseg.data.check.own"]
    # function level: convert_dataset imports build_dataset (the package) when called
    assert "tseg.data" in graph["tseg.data.convert"]
    # relative, from a package: tseg/data/__init__.py imports .registry
    assert "tseg.data.registry" in graph["tseg.data"]
    # under TYPE_CHECKING: never run, so not an edge (the registry names the report's types)
    assert "tseg.data.check.report" not in graph["tseg.data.registry"]


def test_circles_are_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "f"}, "e": set(), "f": {"d"}}
    assert set(circles(graph)) == {frozenset({"a", "b", "c"}), frozenset({"d", "f"})}
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_tseg_data():
    graph = import_graph()
    data = {m: {d for d in deps if d.startswith("tseg.data")} for m, deps in graph.items()}
    data = {m: deps for m, deps in data.items() if m == "tseg.data" or m.startswith("tseg.data.")}
    assert circles(data) == []


def test_no_import_circle_in_tseg():
    assert circles(import_graph()) == []
