"""The three floors, kept by the import graph: core imports nothing else of the project, the stages
import core and each other without cycles, the applications import anything and nothing imports
them; benchmarks never import the tests."""
import ast

import pytest

from core.layout import PROJECT_ROOT

FLOOR = {"core": 0, "python_layers": 1, "data_prep": 1, "eval": 1, "baselines": 1, "apps": 2}
CHECKS = ("bench", "tests")          # may use everything they check (bench not the tests)


def imports_of(package):
    """{imported top-level project package: [file:line, ...]} for every .py file of `package`,
    relative imports resolved, imports inside functions included."""
    found = {}
    for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [package if node.level else (node.module or "")]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in FLOOR or top in CHECKS:
                    found.setdefault(top, []).append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}")
    return found


GRAPH = {p: imports_of(p) for p in (*FLOOR, *CHECKS)}


def test_every_top_level_package_has_a_floor():
    packages = {p.name for p in PROJECT_ROOT.iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(FLOOR) | set(CHECKS), f"packages without a floor: {packages - set(FLOOR)}"


@pytest.mark.parametrize("package", list(FLOOR))
def test_imports_only_go_down(package):
    for target, where in GRAPH[package].items():
        if target == package:
            continue
        assert target in FLOOR, f"{package} imports {target} ({where[0]})"
        assert FLOOR[target] < FLOOR[package] or (FLOOR[target] == FLOOR[package] == 1), \
            f"{package} (floor {FLOOR[package]}) imports {target} (floor {FLOOR[target]}) at {where[0]}"


def test_core_imports_nothing_else_of_the_project():
    assert set(GRAPH["core"]) <= {"core"}, GRAPH["core"]


def test_no_cycle_between_packages():
    edges = {p: {t for t in GRAPH[p] if t in FLOOR and t != p} for p in FLOOR}

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, (*seen, n))) for n in edges[start])
    cyclic = [p for p in FLOOR if reaches(p, p)]
    assert not cyclic, f"packages on an import cycle: {cyclic}"


def test_benchmarks_do_not_import_the_tests():
    assert "tests" not in GRAPH["bench"], GRAPH["bench"].get("tests")
