"""The layout's rules, read from the source with ``ast`` (nothing is imported):

* no import cycle among the project's modules, counting every import statement:
  top-level ones, those inside functions and those under ``if TYPE_CHECKING:``;
* no module over 400 lines and no function over 60 lines (migrations under alembic/
  are generated and stay out).

    .venv/bin/python -m pytest -q tests/test_layout.py
"""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The packages pyproject.toml installs (bot, bot.adapters, genmodels, training, storage,
# ...); alembic/ is not one of them, so its migrations stay out.
PACKAGES = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def module_files() -> dict[str, Path]:
    """Module name -> file for every .py file of the packages (``__init__`` as the package)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package.replace(".", "/")).glob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is one of our modules, else None."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every project module that ``module`` imports, wherever the statement is.

    Importing ``a.b.c`` runs ``a`` and ``a.b`` first, so packages count as imported too.
    """
    is_package = path.name == "__init__.py"
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this module is in
                package = module.split(".")[:None if is_package else -1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            # ``from pkg import mod`` imports the submodule; ``from mod import name`` the
            # module itself (and ``from pkg import name`` reads the package: it counts).
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
            names += subs if len(subs) == len(node.names) else [*subs, base]
    # A module's own packages are already being imported when it runs: an implied edge
    # to them is no cycle (an explicit ``from pkg import name`` still counts).
    own = {module.rsplit(".", i)[0] for i in range(1, module.count(".") + 1)}
    found: set[str] = set()
    for name in names:
        target = _resolve(name, modules)
        if target is not None:
            found.add(target)
        while target and "." in target:
            target = target.rpartition(".")[0]
            if target not in own:
                found.add(target)
    found &= set(modules)
    found.discard(module)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "genmodels.styles" in graph["bot.core"]
    assert len(graph) > 50


def test_packages_count_as_imported_except_the_modules_own(tmp_path):
    (tmp_path / "pkg").mkdir()
    files = {"pkg": tmp_path / "pkg" / "__init__.py", "pkg.a": tmp_path / "pkg" / "a.py",
             "pkg.b": tmp_path / "pkg" / "b.py", "other": tmp_path / "other.py"}
    files["pkg.a"].write_text("from pkg.b import x\nfrom . import b\n")
    files["other"].write_text("def f():\n    import pkg.a\n")
    files["pkg.b"].write_text("from pkg import y\n")
    assert imports_of("pkg.a", files["pkg.a"], files) == {"pkg.b"}
    assert imports_of("other", files["other"], files) == {"pkg", "pkg.a"}
    assert imports_of("pkg.b", files["pkg.b"], files) == {"pkg"}


def test_find_cycle_reports_the_modules():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_interfaces_know_no_implementation():
    """The client interface is a leaf of the serving code, and the command handlers reach
    the core only through its public API (``commands.CoreAPI``), never by import."""
    graph = import_graph()
    serving = {"serving.engine", "serving.http_client", "serving.service",
               "serving.config", "bot.wiring"}
    assert not graph["serving.client"] & serving, graph["serving.client"]
    assert not {m for m in graph["serving.client"] if m.startswith("bot")}
    for module in ("bot.commands", "bot.storage_work", "bot.identity", "bot.messages"):
        assert "bot.core" not in graph[module], module


def test_packages_import_downwards():
    """The model package (format, kernel, sampling) imports neither the serving code nor
    training nor the bot; serving imports no training and no bot. ``genmodels.service`` is
    only the old command name of the service, forwarding to ``serving``."""
    graph = import_graph()
    for module, imports in graph.items():
        top = {m.split(".")[0] for m in imports}
        if module.split(".")[0] == "genmodels" and module != "genmodels.service":
            assert not top & {"serving", "training", "bot", "storage"}, (module, imports)
        if module.split(".")[0] == "serving":
            assert not top & {"training", "bot"}, (module, imports)


def test_no_module_over_400_lines():
    long = {name: n for name, path in module_files().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_over_60_lines():
    long = {}
    for name, path in module_files().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{name}.{node.name} (line {node.lineno})"] = lines
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
