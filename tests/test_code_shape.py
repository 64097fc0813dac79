"""The shape of the code, checked: no import cycles, packages that import only what the
design allows, modules a newcomer can read, lint and format clean.

Import edges are read from the source (every `import` and `from ... import`, those under
`if TYPE_CHECKING:` included: a cycle a type checker needs is still a cycle a reader must
untangle), so the check does not depend on what happens to be imported at run time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("models", "workers", "pipeline")
MAX_LINES = 400
# Modules allowed past MAX_LINES, and why.
LONG_MODULES: dict[str, str] = {}


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports (the nearest module for `from x import y`)."""
    targets: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets.add(mod)
            targets.update(f"{mod}.{alias.name}" for alias in node.names)
    found = set()
    for target in targets:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
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
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles_type_checking_included() -> None:
    cycles = _cycles(_graph())
    assert cycles == [], f"import cycles: {cycles}"


def test_packages_import_only_what_the_design_allows() -> None:
    """models/ imports nothing of the project; workers/ imports models/ only; nothing
    imports pipeline/ but pipeline/ itself (entry points are pipeline.cli)."""
    bad = []
    for name, targets in _graph().items():
        top = name.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            if other == top:
                continue
            if top == "models" or (top == "workers" and other != "models"):
                bad.append(f"{name} -> {target}")
    assert bad == []


def test_no_module_in_pipeline_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in (ROOT / "pipeline").rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    unexplained = {p: n for p, n in long.items() if p not in LONG_MODULES}
    assert unexplained == {}, f"over {MAX_LINES} lines: {unexplained}"


def test_lint_and_format_are_clean() -> None:
    """ruff with the project's rules plus RUF100: a `noqa` that suppresses nothing is dead."""
    ruff = [sys.executable, "-m", "ruff"]
    check = subprocess.run(
        [*ruff, "check", "--extend-select", "RUF100", "."],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout[-3000:]
    fmt = subprocess.run(
        [*ruff, "format", "--check", "."], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert fmt.returncode == 0, fmt.stdout[-3000:]
