"""Structure figures for docs/architecture.md: import cycles between the project's apps.

Run from the repository root: `PYTHONPATH=. .venv/bin/python ops/measure_structure.py`.
It builds the import graph with grimp (installed with import-linter; imports inside
functions count) and prints the apps that import each other, the simple cycles between
apps, and the module-level import cycles (strongly connected sets of more than one module).
Complexity comes from radon: `radon cc -n D -s <apps> -e '*/migrations/*'` (above 20).
"""

from __future__ import annotations

import sys
from collections import defaultdict

import grimp

APPS = ["kernel", "approvals", "billing", "integrations", "disputes", "revenue", "insights", "customers", "portal"]


def main() -> None:
    graph = grimp.build_graph(*APPS)
    edges = set()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = module.split(".")[0], imported.split(".")[0]
            if a != b:
                edges.add((a, b))
    print("apps importing each other:", sorted({tuple(sorted(e)) for e in edges if (e[1], e[0]) in edges}))

    adjacent = defaultdict(set)
    for a, b in edges:
        adjacent[a].add(b)
    cycles: list[list[str]] = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in adjacent[node]:
            if nxt == start:
                cycles.append(path[:])
            elif nxt not in path and nxt > start:
                walk(start, nxt, [*path, nxt])

    for app in APPS:
        walk(app, app, [app])
    print("simple cycles between apps:", len(cycles), cycles)

    sys.setrecursionlimit(100_000)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
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
                components.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            connect(module)
    print("module import cycles:", len(components))
    for component in components:
        print(f"  {len(component)} modules, apps {sorted({m.split('.')[0] for m in component})}: {component}")


if __name__ == "__main__":
    main()
