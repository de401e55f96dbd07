"""The module graph of ``egom2p/`` has no circles and no back edges (issue 14, item 5).

Read from the source with ``ast``: every ``import`` / ``from ... import`` anywhere in a module (at module
level and inside functions), plus the plugin look-ups by name (``importlib.import_module(f"pkg.{name}")``),
which may reach every module of that package. Importing ``a.b.c`` also runs the ``__init__`` of ``a.b``
(an edge from the importer, unless it lives inside that package: a package's own modules are loaded after
its ``__init__`` has started, which is not a circle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "egom2p"


def _modules() -> dict[str, Path]:
    mods = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


def _package_of(mod: str, path: Path) -> str:
    return mod if path.name == "__init__.py" else mod.rpartition(".")[0]


def _dynamic_prefix(call: ast.Call, aliases: dict[str, str]) -> str | None:
    """``importlib.import_module(f"egom2p.pkg.{name}")`` or ``(f"{pkg.__name__}.{name}")`` -> "egom2p.pkg"."""
    arg = call.args[0] if call.args else None
    if isinstance(arg, ast.JoinedStr) and arg.values:
        head = arg.values[0]
        if isinstance(head, ast.Constant) and isinstance(head.value, str) and head.value.endswith("."):
            return head.value[:-1]
        if (isinstance(head, ast.FormattedValue) and isinstance(head.value, ast.Attribute)
                and head.value.attr == "__name__" and isinstance(head.value.value, ast.Name)
                and head.value.value.id in aliases and len(arg.values) > 1
                and isinstance(arg.values[1], ast.Constant) and str(arg.values[1].value).startswith(".")):
            return aliases[head.value.value.id]
    return None


def module_graph() -> tuple[dict[str, set[str]], list[str]]:
    """({module: modules it imports}, dynamic imports this test cannot resolve as 'file:line')."""
    mods = _modules()

    def owner(name: str) -> str | None:  # the longest module name that ``name`` starts with
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    unknown: list[str] = []
    for mod, path in mods.items():
        pkg = _package_of(mod, path)
        tree = ast.parse(path.read_text(), str(path))
        targets: set[str] = set()  # what the code names (a module, or a package whose __init__ it reads from)
        aliases: dict[str, str] = {}  # local name -> module, for f"{x.__name__}.{name}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    targets.add(a.name)
                    if a.name in mods:
                        aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    name = ".".join(base + ([node.module] if node.module else []))
                else:
                    name = node.module or ""
                for a in node.names:
                    if f"{name}.{a.name}" in mods:  # from pkg import submodule
                        targets.add(f"{name}.{a.name}")
                        aliases[a.asname or a.name] = f"{name}.{a.name}"
                    else:  # from module import name: reads that module (a package: its __init__)
                        targets.add(name)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr == "import_module"):
                prefix = _dynamic_prefix(node, aliases)
                if prefix is None or prefix not in mods:
                    unknown.append(f"{path.relative_to(ROOT)}:{node.lineno}")
                    continue
                targets.update(m for m in mods if m.startswith(prefix + ".") and not m.rpartition(".")[2].startswith("_"))
        deps: set[str] = set()
        for t in targets:
            m = owner(t)
            if m is None or not m.startswith("egom2p"):
                continue
            if m != mod:
                deps.add(m)  # named: a real edge, also to this module's own package (from . import name)
            for k in range(1, m.count(".")):  # importing m first runs its packages' __init__ ...
                c = m.rsplit(".", k)[0]
                if not (mod == c or mod.startswith(c + ".")):  # ... which, for its own packages, has already started
                    deps.add(c)
        graph[mod] = deps
    return graph, unknown


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph():
    g, unknown = module_graph()
    assert not unknown, f"dynamic imports this test cannot follow (teach _dynamic_prefix): {unknown}"
    return g


def test_the_graph_is_read_from_the_real_code(graph):
    """The reader sees module- and function-level imports and the plugin look-ups by name."""
    assert len(graph) > 80 and "egom2p.safeio" in graph
    assert "egom2p.errors" in graph["egom2p.safeio"]  # module level
    assert "egom2p.train" in graph["egom2p.demo"]  # inside a function
    assert "egom2p.commands.demo" in graph["egom2p.cli"]  # importlib over the commands package
    assert "egom2p.adapters.h2o" in graph["egom2p.adapters"]  # get_adapter(name)
    assert "egom2p.annotators.sensor" in graph["egom2p.annotators"]  # get_annotator(name)
    assert "egom2p.flows.curate" in graph["egom2p.commands._flows"]  # load_flow(name)
    assert "egom2p.adapters" in graph["egom2p.demo"]  # importing a package runs its __init__
    assert all(m not in deps for m, deps in graph.items())
    assert "egom2p.tokenizers" in graph["egom2p.tokenizers.train"]  # from . import name (the package's __init__)
    # a made-up circle is found
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_circles_among_egom2p_modules(graph):
    found = cycles(graph)
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("low, high", [
    ("egom2p.safeio", "egom2p.adapters"), ("egom2p.safeio", "egom2p.annotators"),
    ("egom2p.rollingdepth", "egom2p.adapters"), ("egom2p.rollingdepth", "egom2p.annotators"),
    ("egom2p.errors", "egom2p."),  # the error base imports nothing of the package
])
def test_no_back_edges(graph, low, high):
    """Low-level modules (safe readers, the RollingDepth model, the error base) never import the layers above."""
    def reach(start: str) -> set[str]:
        seen, todo = set(), [m for m in graph if m == start or m.startswith(start + ".")]
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(graph[m])
        return seen

    bad = sorted(m for m in reach(low) if m.startswith(high) and not (m == low or m.startswith(low + ".")))
    assert not bad, f"{low} reaches {bad}"
