"""The public API: every subpackage lists what users may import in ``__all__``, every listed name
exists, and README's "Python API" table lists exactly those names; every other module is private
(a component of its dotted path starts with ``_``), so a name not listed is reachable only through
an underscore path."""

from __future__ import annotations

import importlib
import pkgutil
import re
import types
from pathlib import Path

import pytest

import flickermine
from flickermine.errors import MissingExtraError

SUBPACKAGES = ("video", "detect", "mining", "io", "dataset", "runner", "evaluate", "train", "cli")
#: the public modules below the package root that README's table lists: the subpackages and errors
MODULES = (*SUBPACKAGES, "errors")
#: the public modules that are not packages (``python -m flickermine.cli`` runs the second)
PUBLIC_PLAIN_MODULES = {"flickermine.errors", "flickermine.cli.__main__"}
#: optional dependencies: a module whose import needs one that is absent here is skipped
OPTIONAL_IMPORTS = {"torch", "torchvision", "torchcodec", "ray", "pycocotools", "matplotlib", "pynvml"}
README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_rows() -> dict[str, list[str]]:
    rows = {}
    for module, names in re.findall(r"^\| `(flickermine[\w.]*)` \| (.*) \|$", README.read_text(), re.MULTILINE):
        rows[module] = re.findall(r"`([^`]+)`", names)
    return rows


@pytest.mark.parametrize("name", ["", *MODULES])
def test_all_names_exist_and_readme_lists_them(name):
    module = importlib.import_module(f"flickermine.{name}" if name else "flickermine")
    assert module.__all__, f"{module.__name__} has an empty __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{module.__name__}.__all__ names what it lacks: {missing}"
    assert _readme_rows().get(module.__name__) == list(module.__all__), f"README's Python API row for {module.__name__}"


def test_the_root_reexports_the_mining_api():
    for name in ("Miner", "MiningParams", "Detections", "get_backend"):
        assert name in flickermine.__all__


def _unlisted_public_names(module: types.ModuleType) -> list[str]:
    """What ``module`` defines or imports without an underscore and its ``__all__`` lacks
    (submodules and ``from __future__`` features are not names of the API)."""
    import __future__

    return [
        n
        for n, value in vars(module).items()
        if not n.startswith("_")
        and n not in module.__all__
        and not isinstance(value, types.ModuleType)
        and not isinstance(value, __future__._Feature)
    ]


@pytest.mark.parametrize("name", ["", *MODULES])
def test_every_public_name_of_an_init_is_listed(name):
    """The rule: what a package's ``__init__`` defines or imports without an underscore is public,
    so it is in ``__all__``."""
    module = importlib.import_module(f"flickermine.{name}" if name else "flickermine")
    unlisted = _unlisted_public_names(module)
    assert not unlisted, f"{module.__name__} has public names missing from __all__ (list them or prefix _): {unlisted}"


def _walk() -> dict[str, bool]:
    """``{dotted name: is a package}`` of every module of the package, the root included
    (:func:`pkgutil.walk_packages` imports the packages to find their modules, not the others)."""
    found = {"flickermine": True}
    for info in pkgutil.walk_packages(flickermine.__path__, "flickermine."):
        found[info.name] = info.ispkg
    return found


MODULE_WALK = _walk()


def _is_public_path(name: str) -> bool:
    """No component of the dotted path starts with ``_`` (``__init__`` and ``__main__`` aside)."""
    return not any(part.startswith("_") and part not in ("__init__", "__main__") for part in name.split("."))


def _import_or_skip(name: str) -> types.ModuleType:
    """Import module ``name``, skipping the test where that needs what is absent here: an optional
    dependency, or for a backend module its own requirement (a backend that raises ImportError
    cannot run here, as ``get_backend`` reads it; e.g. the CUDA one without a device)."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        missing = (error.name or "").split(".")[0]
        if missing in OPTIONAL_IMPORTS or isinstance(error, MissingExtraError) or name.startswith("flickermine.mining._backends."):
            pytest.skip(f"{name} cannot be imported here: {error}")
        raise


def test_the_walk_sees_every_kind_of_module():
    assert {"flickermine.cli", "flickermine.errors", "flickermine.cli.__main__", "flickermine._files",
            "flickermine.runner._mine_run", "flickermine.mining._backends.numpy_backend"} <= set(MODULE_WALK)
    assert MODULE_WALK["flickermine.mining._backends"] and not MODULE_WALK["flickermine.runner._mine_run"]


def test_every_module_outside_the_api_is_underscore_private():
    """Only packages (their ``__init__``), ``flickermine.errors`` and ``flickermine.cli.__main__`` may
    have a dotted path without an underscore component; every other module is private (``_X.py``)."""
    public = [name for name, is_package in MODULE_WALK.items() if _is_public_path(name) and not is_package]
    assert sorted(public) == sorted(PUBLIC_PLAIN_MODULES), (
        "modules with a public path that are neither packages nor listed public modules (rename to _X.py): "
        f"{sorted(set(public) - PUBLIC_PLAIN_MODULES)}"
    )


@pytest.mark.parametrize("name", sorted(MODULE_WALK))
def test_every_module_imports_and_a_public_one_lists_its_names(name):
    """Every module imports (but where an optional dependency is absent); a public one has an
    ``__all__`` naming all it defines or imports without an underscore, and only what it has."""
    module = _import_or_skip(name)
    if not _is_public_path(name):
        return
    assert hasattr(module, "__all__"), f"{name} is a public module without __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it lacks: {missing}"
    unlisted = _unlisted_public_names(module)
    assert not unlisted, f"{name} has public names missing from __all__ (list them or prefix _): {unlisted}"


def test_the_version_is_written_once_in_pyproject():
    """flickermine.__version__ is the installed distribution's, which pyproject.toml sets."""
    import re

    import flickermine

    from .conftest import ROOT

    pyproject = (ROOT / "pyproject.toml").read_text()
    (declared,) = re.findall(r'(?m)^version = "([^"]+)"$', pyproject)
    assert flickermine.__version__ == declared
    sources = [p for p in (ROOT / "python" / "flickermine").rglob("*.py") if re.search(r'(?m)^__version__ = "', p.read_text())]
    assert sources == []
