"""The layout: the research core at the top level, the experiment machinery in lab/; imports run one way (the
floors below), nothing in the core imports the lab, and every core file reads in one sitting."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = {path.stem: path for path in ROOT.glob("*.py")}
LAB = {f"lab.{path.stem}": path for path in (ROOT / "lab").glob("*.py") if path.stem != "__init__"}
MODULES = {**CORE, **LAB}
# each core module, and the project modules it may import
FLOORS = {
    "likelihoods": set(),
    "cli": set(),
    "files": set(),
    "config": {"likelihoods"},
    "models": {"config", "likelihoods"},
    "data": {"likelihoods"},
    "checkpoint": {"config", "files", "models"},
    "train": {"checkpoint", "cli", "config", "data", "files", "models"},
    "samplers": {"data", "models"},
    "metrics": {"data", "models"},
    "classifier": {"checkpoint", "cli", "data", "files", "models"},
    "evaluate": {"checkpoint", "classifier", "cli", "config", "data", "files", "metrics", "models", "samplers"},
    "plots": {"config", "data", "models", "samplers"},
    "webpage": {"checkpoint", "config", "data", "files", "likelihoods", "models", "samplers"},
    "explorer": {"cli", "config", "data", "models", "plots", "samplers", "webpage"},
}


def project_imports(path: Path) -> set[str]:
    """Project modules that `path` imports anywhere (top level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name if name in MODULES else name.split(".")[0] for name in names} & set(MODULES)


def in_circles(graph: dict[str, set[str]]) -> set[str]:
    """The modules from which a chain of imports leads back to themselves."""

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        return any(n == target or (n not in seen and reaches(n, target, seen | {n})) for n in graph.get(start, ()))

    return {name for name in graph if reaches(name, name, {name})}


def test_no_module_imports_one_that_imports_it_back():
    graph = {name: project_imports(path) for name, path in MODULES.items()}
    assert not in_circles(graph), {name: sorted(graph[name]) for name in in_circles(graph)}


def test_each_core_module_imports_only_the_floors_below_it_and_never_the_lab():
    assert set(CORE) == set(FLOORS), "a core module was added or removed: give it its floor here"
    for name, path in CORE.items():
        imports = project_imports(path)
        assert imports <= FLOORS[name], (name, sorted(imports - FLOORS[name]))
        assert not any(i.startswith("lab") for i in imports), name
    assert not any("explorer" in project_imports(path) for path in MODULES.values())


def test_core_files_read_in_one_sitting_and_the_lab_files_stay_small():
    """About 300 lines a file, kept by splitting by responsibility (ruff formats every line: nothing is packed)."""
    lines = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    waiting = {"checkpoint", "evaluate", "models", "lab.sweep"}  # grown by ruff format: split next
    assert all(lines[name] <= 300 for name in CORE if name not in waiting), {
        n: lines[n] for n in CORE if lines[n] > 300
    }
    assert all(lines[name] <= 320 for name in LAB if name not in waiting), {n: lines[n] for n in LAB if lines[n] > 320}


def test_the_detector_finds_circles_and_function_level_imports(tmp_path):
    assert in_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {"a", "b", "c"}
    assert in_circles({"a": {"b"}, "b": set()}) == set()
    source = tmp_path / "x.py"
    source.write_text("def f():\n    import models\n    from lab import records\n")
    assert project_imports(source) == {"models", "lab.records"}
