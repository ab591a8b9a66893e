"""Static typing: mypy passes on the package ([tool.mypy] in pyproject.toml), and the stubs of the
pybind11 modules (python/flickermine/_core.pyi, _core_cuda.pyi) match what the modules export."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from .conftest import ROOT

PACKAGE = ROOT / "python" / "flickermine"


def _need_mypy() -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install -e '.[test]'; it needs Python >= 3.10)")


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_stubs_sit_beside_the_modules_they_describe():
    # wheel.packages ships every file of python/flickermine, stubs and py.typed included.
    for name in ("_core.pyi", "_core_cuda.pyi", "py.typed"):
        assert (PACKAGE / name).is_file(), name


@pytest.mark.slow
def test_mypy_passes():
    _need_mypy()
    result = _run("-m", "mypy", "python/flickermine", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("module", ["flickermine._core", "flickermine._core_cuda"])
def test_stubs_match_the_extension_modules(module, tmp_path):
    _need_mypy()
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not built here")
    # pybind11 classes have pybind11's metaclass, which a stub does not spell out.
    allowlist = tmp_path / "allowlist.txt"
    allowlist.write_text(f"{module}.Params\n")
    result = _run(
        "-m", "mypy.stubtest", module, "--mypy-config-file", "pyproject.toml",
        "--allowlist", str(allowlist), "--ignore-unused-allowlist", timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
