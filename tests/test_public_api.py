"""The public API: every subpackage lists what users may import in ``__all__``, every listed name
exists, and README's "Python API" table lists exactly those names."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import flickermine

SUBPACKAGES = ("video", "detect", "mining", "io", "dataset", "runner", "evaluate", "train")
README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_rows() -> dict[str, list[str]]:
    rows = {}
    for module, names in re.findall(r"^\| `(flickermine[\w.]*)` \| (.*) \|$", README.read_text(), re.MULTILINE):
        rows[module] = re.findall(r"`([^`]+)`", names)
    return rows


@pytest.mark.parametrize("name", ["", *SUBPACKAGES])
def test_all_names_exist_and_readme_lists_them(name):
    module = importlib.import_module(f"flickermine.{name}" if name else "flickermine")
    assert module.__all__, f"{module.__name__} has an empty __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{module.__name__}.__all__ names what it lacks: {missing}"
    assert _readme_rows().get(module.__name__) == list(module.__all__), f"README's Python API row for {module.__name__}"


def test_the_root_reexports_the_mining_api():
    for name in ("Miner", "MiningParams", "Detections", "get_backend"):
        assert name in flickermine.__all__


@pytest.mark.parametrize("name", ["", *SUBPACKAGES])
def test_every_public_name_of_an_init_is_listed(name):
    """The rule: what a package's ``__init__`` defines or imports without an underscore is public,
    so it is in ``__all__`` (submodules and ``from __future__`` features are not names of the API)."""
    import __future__
    import types

    module = importlib.import_module(f"flickermine.{name}" if name else "flickermine")
    unlisted = [
        n
        for n, value in vars(module).items()
        if not n.startswith("_")
        and n not in module.__all__
        and not isinstance(value, types.ModuleType)
        and not isinstance(value, __future__._Feature)
    ]
    assert not unlisted, f"{module.__name__} has public names missing from __all__ (list them or prefix _): {unlisted}"


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
