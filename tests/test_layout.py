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
    "cli": set(),
    "files": set(),
    "likelihoods": set(),
    "disentanglement": set(),
    "fashion_mnist": set(),
    "shapes": {"files"},
    "models": {"cli", "likelihoods"},
    "objectives": {"cli", "likelihoods", "models"},
    "data": {"fashion_mnist", "shapes"},
    "config": {"cli", "data", "objectives"},
    "checkpoint": {"config", "files", "models"},
    "runs": {"checkpoint", "config", "files", "models"},
    "train": {"checkpoint", "cli", "config", "data", "files", "models", "objectives", "runs"},
    "samplers": {"models"},
    "latent_view": set(),
    "latent_scatter": {"latent_view"},
    "metrics": {"models", "objectives"},
    "classifier": {"checkpoint", "fashion_mnist", "files", "models"},
    "quality": {"classifier", "config", "data", "metrics", "models", "samplers"},
    "evaluate": {
        *("checkpoint", "classifier", "cli", "config", "data", "disentanglement", "files", "metrics", "models"),
        *("objectives", "quality", "runs", "samplers"),
    },
    "plots": {"latent_view", "models", "samplers", "shapes"},
    "webpage": {"checkpoint", "data", "files", "latent_view", "models", "runs", "samplers"},
    "explorer": {"cli", "latent_scatter", "latent_view", "models", "plots", "samplers", "webpage"},
}


def project_imports(path: Path) -> set[str]:
    """Project modules that `path` imports anywhere (top level or inside functions), but for type checking."""
    names = set()
    tree = ast.parse(path.read_text())
    for block in [n for n in ast.walk(tree) if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]:
        block.body = []  # imports for type annotations only: they never run
    for node in ast.walk(tree):
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
    assert all(lines[name] <= 300 for name in CORE), {n: lines[n] for n in CORE if lines[n] > 300}
    assert all(lines[name] <= 320 for name in LAB), {n: lines[n] for n in LAB if lines[n] > 320}


def test_the_detector_finds_circles_and_function_level_imports(tmp_path):
    assert in_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {"a", "b", "c"}
    assert in_circles({"a": {"b"}, "b": set()}) == set()
    source = tmp_path / "x.py"
    source.write_text("def f():\n    import models\n    from lab import records\n")
    assert project_imports(source) == {"models", "lab.records"}
