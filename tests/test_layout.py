"""The package's layout: no import cycles, and every stage imports only the stages below it.

The stages, bottom to top (a module may import its own stage and those below, never above):

    floor       errors, _boxes, _files, _images, _progress, _core, _core_cuda   (importable by every module)
    video       decoding frames
    detect      detectors: a batch of frames in, boxes out
    mining      the flicker rules, their kernels and backends, the streaming miner; the package
                root (``flickermine/__init__.py``) re-exports this stage's API
    io, dataset files in and out; the mined dataset and the training presets
    runner      jobs over many videos and images
    evaluate, train
    cli         the command line

Imports are read from the source with :mod:`ast`: module-level and function-level ones alike
(``import flickermine.x``, ``from flickermine.x import y``, ``from .x import y``, ``from .. import
x``), so an import moved into a function to dodge a cycle is still seen.

One exception: the package root's module-level ``__getattr__`` (PEP 562) may load a higher stage's
name on first use (``flickermine.mine``, from :mod:`flickermine.runner._api`). It runs only after
the whole package is imported, so it adds no import-time dependency; those lazy exports are listed
in :data:`ROOT_LAZY_EXPORTS` and checked to be exactly what the root's ``__getattr__`` imports.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "python" / "flickermine"

FLOOR = 0
#: stage of each top-level module or subpackage of flickermine ("" is the package root)
STAGES = {
    "errors": FLOOR,
    "_boxes": FLOOR,
    "_files": FLOOR,
    "_images": FLOOR,
    "_progress": FLOOR,
    "_core": FLOOR,
    "_core_cuda": FLOOR,
    "video": 1,
    "detect": 2,
    "mining": 3,
    "": 3,
    "io": 4,
    "dataset": 4,
    "runner": 5,
    "evaluate": 6,
    "train": 6,
    "cli": 7,
}
#: the modules the package root's ``__getattr__`` loads lazily (not dependencies of the root)
ROOT_LAZY_EXPORTS = {"flickermine.runner._api"}
STAGE_NAMES = {0: "floor", 1: "video", 2: "detect", 3: "mining", 4: "io/dataset", 5: "runner", 6: "evaluate/train", 7: "cli"}


def package_modules(package_dir: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` of every module of the package in ``package_dir``; the
    compiled extensions are known by their stubs (``.pyi``)."""
    root = package_dir.name
    modules: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py*")):
        if path.suffix not in (".py", ".pyi") or "__pycache__" in path.parts:
            continue
        parts = path.relative_to(package_dir).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join((root, *parts))
        if path.suffix == ".py" or name not in modules:
            modules[name] = path
    return modules


def _lazy_getattr(tree: ast.Module) -> ast.FunctionDef | None:
    """The module-level ``def __getattr__`` of a module (PEP 562), or None."""
    return next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "__getattr__"), None)


def imported_modules(
    name: str, path: Path, known: dict[str, Path], unresolved: list[str] | None = None, lazy: bool = False
) -> set[str]:
    """The modules of ``known`` that module ``name`` (source ``path``) imports, anywhere in it but,
    for the package root, its ``__getattr__`` (with ``lazy=True``: only there). Imports of package
    modules that do not exist are appended to ``unresolved``."""
    root = name.split(".")[0]
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    getattr_function = _lazy_getattr(tree) if name == root else None
    skipped = {id(n) for n in ast.walk(getattr_function)} if getattr_function is not None else set()
    if lazy:
        nodes = [n for n in ast.walk(getattr_function)] if getattr_function is not None else []
    else:
        nodes = [n for n in ast.walk(tree) if id(n) not in skipped]
    for node in nodes:
        if isinstance(node, ast.Import):
            modules = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: len(base) - (node.level - 1)]
                assert base, f"{path}:{node.lineno}: relative import beyond the package"
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # `from pkg import x`: x is a submodule of pkg, or a name defined in pkg
            modules = [(module, alias.name) for alias in node.names]
        else:
            continue
        for module, member in modules:
            if module != root and not module.startswith(root + "."):
                continue  # not this package
            if module not in known:
                if unresolved is not None:
                    unresolved.append(f"{name} (line {node.lineno}) imports {module}")
                continue
            if member is not None and f"{module}.{member}" in known:
                module = f"{module}.{member}"
            if module != name:
                found.add(module)
    return found


def import_graph(package_dir: Path, unresolved: list[str] | None = None) -> dict[str, set[str]]:
    """``{module: modules it imports}`` for every module of the package (extensions import nothing)."""
    known = package_modules(package_dir)
    return {
        name: imported_modules(name, path, known, unresolved) if path.suffix == ".py" else set()
        for name, path in known.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (``[a, b, ..., a]``, each importing the next), or None."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        # graphlib lists it with each node a dependency of the next: reversed, each imports the next
        return list(reversed(error.args[1]))
    return None


def group(module: str) -> str:
    """The top-level module or subpackage of ``module`` ("" for the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def group_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between top-level modules and subpackages (imports inside one are dropped)."""
    groups: dict[str, set[str]] = {}
    for module, imports in graph.items():
        groups.setdefault(group(module), set()).update(group(m) for m in imports if group(m) != group(module))
    return groups


def stage_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a higher stage, and every module whose stage is unknown, as text."""
    problems = []
    for module in sorted(graph):
        if group(module) not in STAGES:
            problems.append(f"{module}: no stage for {group(module)!r}: add it to STAGES in {Path(__file__).name}")
            continue
        stage = STAGES[group(module)]
        for imported in sorted(graph[module]):
            other = STAGES.get(group(imported))
            if other is not None and other > stage:
                problems.append(
                    f"{module} ({STAGE_NAMES[stage]}) imports {imported} ({STAGE_NAMES[other]}), a higher stage"
                )
    return problems


def _describe(cycle: list[str]) -> str:
    return " -> ".join(cycle)


# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(PACKAGE_DIR)


def test_the_graph_sees_the_package(graph):
    assert "flickermine.cli" in graph and "flickermine.errors" in graph and "flickermine._core" in graph
    assert "flickermine.errors" in graph["flickermine._boxes"]


def test_every_import_names_a_module_of_the_package():
    unresolved: list[str] = []
    import_graph(PACKAGE_DIR, unresolved)
    assert not unresolved, "imports of modules that do not exist:\n" + "\n".join(unresolved)


def test_the_root_lazy_exports_are_the_listed_ones():
    known = package_modules(PACKAGE_DIR)
    assert imported_modules("flickermine", known["flickermine"], known, lazy=True) == ROOT_LAZY_EXPORTS


def test_only_the_root_getattr_is_lazy(tmp_path):
    """A ``__getattr__`` elsewhere, or another function of the root, still counts."""
    package = _write_package(tmp_path, {
        "__init__.py": "def __getattr__(name):\n    from .cli import main\n\ndef f():\n    from .video import a\n",
        "video/__init__.py": "def __getattr__(name):\n    from ..cli import main\n",
        "video/a.py": "",
        "cli/__init__.py": "def main():\n    pass\n",
    })
    planted = import_graph(package)
    assert planted["flickermine"] == {"flickermine.video.a"}
    assert planted["flickermine.video"] == {"flickermine.cli"}


def test_no_import_cycle_between_modules(graph):
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {_describe(cycle)}"


def test_no_import_cycle_between_subpackages(graph):
    cycle = find_cycle(group_graph(graph))
    assert cycle is None, f"import cycle between subpackages: {_describe(['<root>' if g == '' else g for g in cycle])}"


def test_stages_import_only_downward(graph):
    problems = stage_violations(graph)
    assert not problems, "imports against the stage order:\n" + "\n".join(problems)


def _write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "flickermine"
    for name, text in {"__init__.py": "", **files}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    return package


def test_the_checks_catch_a_planted_cycle(tmp_path):
    """A cycle through a function-level relative import and an absolute one."""
    package = _write_package(tmp_path, {
        "errors.py": "",
        "video/__init__.py": "from .source import open_video\n",
        "video/source.py": "from ..errors import InputError\n\ndef open_video():\n    from . import helper\n",
        "video/helper.py": "import flickermine.video.source\n",
        "cli/__init__.py": "from flickermine.video import open_video\n\ndef main():\n    from ..detectors import make_detector\n",
    })
    unresolved: list[str] = []
    planted = import_graph(package, unresolved)
    assert unresolved == ["flickermine.cli (line 4) imports flickermine.detectors"]
    assert planted["flickermine.video.source"] == {"flickermine.errors", "flickermine.video.helper"}
    assert planted["flickermine.cli"] == {"flickermine.video"}
    cycle = find_cycle(planted)
    assert cycle is not None and cycle[0] == cycle[-1]
    assert set(cycle) == {"flickermine.video.source", "flickermine.video.helper"}
    assert find_cycle(group_graph(planted)) is None  # inside one subpackage
    assert stage_violations(planted) == []


def test_the_checks_catch_a_cycle_between_subpackages_and_an_upward_import(tmp_path):
    """No module imports itself back, yet video and detect import each other; video is the lower."""
    package = _write_package(tmp_path, {
        "video/__init__.py": "",
        "video/a.py": "def f():\n    from ..detect.b import g\n",
        "video/d.py": "",
        "detect/__init__.py": "",
        "detect/b.py": "",
        "detect/c.py": "from ..video import d\n",
    })
    planted = import_graph(package)
    assert find_cycle(planted) is None
    groups = find_cycle(group_graph(planted))
    assert groups is not None and set(groups) == {"video", "detect"}
    assert stage_violations(planted) == ["flickermine.video.a (video) imports flickermine.detect.b (detect), a higher stage"]
