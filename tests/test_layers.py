"""The package's layering, read from the source with ``ast``: no import cycle (imports inside
functions included, since they run too), only :mod:`phasezoo.executors` starts processes, and
every import left inside a function says why with a ``# lazy:`` comment."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "phasezoo"


def _modules() -> dict[str, Path]:
    """``phasezoo.x.y`` -> its file (a package is its ``__init__.py``)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module an imported dotted name lives in: the longest known prefix
    (``phasezoo.data.load_dataset`` -> ``phasezoo.data``)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in modules:
            return ".".join(parts[:i])
    return None


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """Dotted names an ``import`` / ``from … import`` statement pulls in (relative ones made
    absolute; ``from pkg import name`` counts as ``pkg.name``, a submodule or an attribute)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")
            base = base[: len(base) - node.level + (1 if is_package else 0)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        return [f"{source}.{a.name}" for a in node.names] + [source]
    return []


def import_graph() -> dict[str, set[str]]:
    """``module -> modules of the package it imports``, at any depth of its code."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for name in _imported(node, module, is_package):
                if name == "phasezoo" or name.startswith("phasezoo."):
                    target = _resolve(name, modules)
                    if target and target != module:
                        graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
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
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    # phasezoo.cli imports the zoo operations inside main(), not at the top
    assert "phasezoo.zoo" in graph["phasezoo.cli"]


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    cycles = _cycles(graph)
    detail = "; ".join(" -> ".join(c) + " (" + ", ".join(f"{a}->{b}" for a in c for b in sorted(graph[a] & set(c)))
                       + ")" for c in cycles)
    assert not cycles, f"import cycles: {detail}"


#: modules whose import starts or manages other processes
PROCESS_MODULES = ("multiprocessing", "subprocess", "concurrent.futures.process")


def test_only_executors_starts_processes():
    offenders = []
    for module, path in _modules().items():
        if module == "phasezoo.executors":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = _imported(node, module, path.name == "__init__.py")
            names += [f"{n}.ProcessPoolExecutor" for n in names if isinstance(node, ast.ImportFrom)
                      and any(a.name == "ProcessPoolExecutor" for a in node.names)]
            bad = [n for n in names if n.startswith(PROCESS_MODULES) or n.endswith("ProcessPoolExecutor")
                   or n in ("os.fork", "os.system", "os.popen")]
            if bad:
                offenders.append(f"{module}: {sorted(set(bad))}")
    assert not offenders, "processes started outside phasezoo.executors: " + "; ".join(offenders)


def _function_imports(tree: ast.AST) -> list[ast.stmt]:
    """``import`` / ``from … import`` statements inside a function body (at any depth)."""
    out: list[ast.stmt] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                out.append(child)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(tree, False)
    return out


def _unmarked_function_imports(source: str) -> list[int]:
    """Lines of in-function imports with no ``# lazy:`` comment on their line or on a comment
    line just above. An import stays in a function only to keep start-up fast or to tolerate an
    optional extra; anything else belongs at the top of its module."""
    lines = source.splitlines()
    out = []
    for node in _function_imports(ast.parse(source)):
        own = lines[node.lineno - 1]
        above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
        if "# lazy:" not in own and not above.startswith("# lazy:"):
            out.append(node.lineno)
    return out


def test_the_lazy_import_check_finds_an_unmarked_import():
    source = (
        "import os\n"
        "def f():\n"
        "    import json\n"  # line 3: unmarked
        "    import re  # lazy: a reason\n"
        "    # lazy: a reason\n"
        "    from a import b\n"
        "    x = 1  # lazy: not a comment line\n"
        "    import csv\n"  # line 8: the line above is code
        "    class C:\n"
        "        def g(self):\n"
        "            import sys\n"  # line 11: nested
    )
    assert _unmarked_function_imports(source) == [3, 8, 11]


def test_imports_inside_functions_say_why():
    offenders = []
    for module, path in sorted(_modules().items()):
        if module == "phasezoo.cli" or path.name == "__init__.py":
            continue  # they defer imports by design, so that the command line starts fast
        source = path.read_text()
        lines = source.splitlines()
        offenders += [f"{path.relative_to(PACKAGE.parent)}:{n}: {lines[n - 1].strip()}"
                      for n in _unmarked_function_imports(source)]
    assert not offenders, ("imports inside functions without a '# lazy:' comment (move them to the top "
                           "of the module, or say why they must wait):\n" + "\n".join(offenders))
