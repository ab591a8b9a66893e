"""CMake configuration of the extension modules (configure only; nothing is compiled)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT


def _configure(build_dir, *defines: str, cudaarchs: str | None = None) -> str:
    """The CUDA architectures the project's CMakeLists.txt picks, from its status line."""
    if shutil.which("cmake") is None or shutil.which("nvcc") is None:
        pytest.skip("needs cmake and a CUDA compiler (nvcc) on PATH")
    pybind11 = pytest.importorskip("pybind11")
    env = {k: v for k, v in os.environ.items() if k != "CUDAARCHS"}
    if cudaarchs is not None:
        env["CUDAARCHS"] = cudaarchs
    result = subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(build_dir), f"-DPython_EXECUTABLE={sys.executable}",
         f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", *defines],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"flickermine: building the CUDA backend for architectures (\S+)", result.stdout)
    assert found, result.stdout
    return found.group(1)


@pytest.mark.slow
def test_cuda_architectures_follow_cudaarchs_unless_given_on_the_command_line(tmp_path):
    assert _configure(tmp_path / "default") == "80-real;90"
    assert _configure(tmp_path / "env", cudaarchs="75") == "75"  # CMake's standard variable
    assert _configure(tmp_path / "both", "-DCMAKE_CUDA_ARCHITECTURES=86", cudaarchs="75") == "86"
