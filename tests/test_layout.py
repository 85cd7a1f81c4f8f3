"""The module layout: imports run one way (no module imports one that imports it back)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = {path.stem: path for path in ROOT.glob("*.py")}


def project_imports(path: Path) -> set[str]:
    """Project modules that `path` imports anywhere (top level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & set(MODULES)


def in_circles(graph: dict[str, set[str]]) -> set[str]:
    """The modules from which a chain of imports leads back to themselves."""
    def reaches(start: str, target: str, seen: set[str]) -> bool:
        return any(n == target or (n not in seen and reaches(n, target, seen | {n})) for n in graph.get(start, ()))
    return {name for name in graph if reaches(name, name, {name})}


def test_no_module_imports_one_that_imports_it_back():
    graph = {name: project_imports(path) for name, path in MODULES.items()}
    assert not in_circles(graph), {name: sorted(graph[name]) for name in in_circles(graph)}


def test_the_bottom_modules_import_nothing_above_them_and_only_scripts_import_plots():
    graph = {name: project_imports(path) for name, path in MODULES.items()}
    assert graph["cli"] == set()
    assert graph["models"] <= {"cli"}
    assert graph["data"] <= {"models", "checkpoint"} and graph["checkpoint"] <= {"models"}
    assert "train" not in graph["samplers"] | graph["classifier"] | graph["checkpoint"]
    assert {name for name, imports in graph.items() if "plots" in imports} <= {"sweep", "study"}
    assert not any("explorer" in imports for imports in graph.values()) and "plots" not in graph["explorer"]


def test_the_detector_finds_circles_and_function_level_imports():
    assert in_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {"a", "b", "c"}
    assert in_circles({"a": {"b"}, "b": set()}) == set()
    assert "models" in project_imports(MODULES["train"]) and "plots" in project_imports(MODULES["sweep"])
