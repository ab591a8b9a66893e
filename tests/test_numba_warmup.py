"""The numba backend compiles its on-disk cache once, visibly (issue 16, item 6): the first search
of a process with a cold cache says so on stderr; a second process finds the cache warm and is
silent."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("numba")

from flickermine.mining._backends import numba_backend  # noqa: E402

SEARCH = r"""
import numpy as np
from flickermine import get_backend
rng = np.random.default_rng(1)
frame = (rng.random((120, 160)) * 255).astype(np.uint8)
scores, top_left = get_backend("numba").ncc_search_batch(frame, np.array([[40, 40, 72, 72]]), frame, np.array([[20, 20, 100, 100]]))
assert abs(scores[0] - 1.0) < 1e-9 and top_left.tolist() == [[40, 40]], (scores, top_left)
print("searched")
"""


def run(code: str, cache: os.PathLike) -> subprocess.CompletedProcess:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.slow
def test_first_search_with_a_cold_cache_says_it_compiles_and_the_next_process_does_not(tmp_path):
    first = run(SEARCH, tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "searched"
    assert numba_backend.COMPILE_MESSAGE in first.stderr
    assert "numba backend compiled in" in first.stderr
    second = run(SEARCH, tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "searched"
    assert "compiling" not in second.stderr, second.stderr
    # The CLI finds the cache warm too: --warmup has nothing to do.
    warm = run("import sys; from flickermine.cli import main; sys.exit(main(['--warmup']))", tmp_path)
    assert warm.returncode == 0, warm.stderr
    assert "already compiled" in warm.stdout and "compiling" not in warm.stderr


def test_an_empty_cache_folder_is_cold(tmp_path):
    code = "from flickermine.mining._backends import numba_backend as nb; print(nb.cache_is_cold())"
    result = run(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_non_contiguous_and_read_only_frames_use_the_compiled_form():
    import numpy as np

    rng = np.random.default_rng(2)
    wide = (rng.random((100, 260)) * 255).astype(np.uint8)
    view = wide[:, ::2]  # not C-contiguous
    frozen = np.array(view)
    frozen.flags.writeable = False
    assert numba_backend._compiled_form(view).flags.c_contiguous
    assert numba_backend._compiled_form(frozen).flags.writeable
    box, region = np.array([[40, 30, 70, 60]]), np.array([[20, 10, 90, 80]])
    expected = numba_backend.ncc_search_batch(np.array(view), box, np.array(view), region)
    for got in (numba_backend.ncc_search_batch(view, box, view, region), numba_backend.ncc_search_batch(frozen, box, frozen, region)):
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
