"""Import graph of the project's packages: cycles (counting imports inside functions), the
direction rule (kernels never imports studies) and module sizes.

    python scripts/check_imports.py          # prints the cycles; exit 1 if there is one
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kernels", "studies")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of a dotted name that is a project module."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every project module `name` imports, at any depth of the file (functions included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: len(base) - node.level + 1]
                prefix = ".".join(base)
                module = f"{prefix}.{node.module}" if node.module else prefix
            else:
                module = node.module or ""
            # `from pkg import sub` imports pkg.sub (and runs pkg/__init__ on the way, which is
            # not an edge of the importer's choosing); `from pkg import name` imports pkg.
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module
                       for alias in node.names]
        for target in targets:
            resolved = _resolve(target, modules)
            if resolved and resolved != name:
                found.add(resolved)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
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
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """kernels -> studies edges: the compute layer must not know the research tool."""
    return sorted((a, b) for a, targets in graph.items() for b in targets
                  if a.split(".")[0] == "kernels" and b.split(".")[0] == "studies")


def long_modules(limit: int = 500) -> list[tuple[str, int]]:
    return [(name, n) for name, path in project_modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > limit]


def main() -> int:
    graph = import_graph()
    found = cycles(graph)
    for component in found:
        print("cycle:", " <-> ".join(component))
    for a, b in upward_imports(graph):
        print(f"upward import: {a} -> {b}")
    for name, n in long_modules():
        print(f"long module: {name} ({n} lines)")
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports, {len(found)} cycles")
    return 1 if found or upward_imports(graph) else 0


if __name__ == "__main__":
    sys.exit(main())
