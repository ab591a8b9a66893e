"""The cpp backend spreads one frame's detections over threads: the verdicts and hard positives
do not depend on how many, errors come back, and concurrent callers and forked children work."""

from __future__ import annotations

import multiprocessing
import threading

import numpy as np
import pytest

import flickermine as fm
from flickermine.errors import InputError
from flickermine.mining import set_num_threads

from .conftest import AVAILABLE
from .test_parity import STRESS, random_window, support_window

pytestmark = pytest.mark.skipif("cpp" not in AVAILABLE, reason="the cpp backend is not built here")


@pytest.fixture
def threads():
    """set_num_threads for the test, the setting put back afterwards."""
    before = set_num_threads(0)
    set_num_threads(before)
    yield set_num_threads
    set_num_threads(before)


def _windows(count: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    made = []
    while len(made) < count:
        frames, boxes = random_window(rng, int(rng.integers(2, 8)))
        center = int(rng.integers(0, len(frames)))
        if len(boxes[center]) >= 2:  # at least two detections to spread
            made.append((frames, boxes, rng.uniform(0, 1, len(boxes[center])), center))
    return made


def _missed_windows(count: int, seed: int = 5):
    """Objects moving with the scene, detected around the center and most of them missed in it."""
    rng = np.random.default_rng(seed)
    made = []
    while len(made) < count:
        frames, boxes, center = support_window(rng)
        if len(frames) >= 3:
            boxes[center] = boxes[center][rng.random(len(boxes[center])) < 0.3]
            made.append((frames, boxes, rng.uniform(0, 1, len(boxes[center])), center))
    return made


def _results(windows, rule: str):
    out = []
    for frames, boxes, scores, center in windows:
        if rule == "hard_positives":
            out.append(fm.frame_hard_positives(frames, boxes, center, STRESS, "cpp").tolist())
        else:
            out.append(fm.frame_verdicts(frames, boxes, scores, center, STRESS, rule, "cpp").tolist())
    return out


@pytest.mark.parametrize("rule", ["seed", "tracklet", "support", "hard_positives"])
def test_results_do_not_depend_on_the_thread_count(threads, rule):
    windows = _missed_windows(250) if rule == "hard_positives" else _windows(60)
    threads(1)
    serial = _results(windows, rule)
    if rule == "hard_positives":
        expected = [fm.frame_hard_positives(f, b, c, STRESS, "numpy").tolist() for f, b, _, c in windows]
    else:
        expected = [fm.frame_verdicts(f, b, s, c, STRESS, rule, "numpy").tolist() for f, b, s, c in windows]
    assert serial == expected
    for count in (2, 3, 8):
        threads(count)
        assert _results(windows, rule) == serial, f"{count} threads"  # hard positives in the same order too
    assert sum(len(r) for r in serial) > (20 if rule == "hard_positives" else 50)
    assert sum(len(r) >= 2 for r in serial) >= 3  # several a window: their order is compared too


def test_items_are_spread_over_threads_and_each_runs_once(threads):
    from flickermine import _core

    threads(4)
    calls, used = _core._parallel_for_check(64, sleep_us=2000)
    assert calls == [1] * 64
    assert used > 1  # 64 items of 2 ms: the helpers take some even on a busy machine
    threads(1)
    assert _core._parallel_for_check(16, sleep_us=100) == ([1] * 16, 1)


def test_a_failing_item_raises_and_the_pool_goes_on(threads):
    from flickermine import _core

    threads(4)
    with pytest.raises(ValueError, match="item 10 failed"):
        _core._parallel_for_check(64, fail_at=10, sleep_us=500)
    calls, _ = _core._parallel_for_check(32)
    assert calls == [1] * 32


def test_concurrent_callers_each_get_their_own_verdicts(threads):
    """Callers from several Python threads (the GIL is released): one uses the pool at a time,
    the others run their items alone; all get the serial answers."""
    windows = _windows(20, seed=11)
    threads(1)
    expected = _results(windows, "support")
    threads(3)
    got: dict[int, list] = {}

    def work(k: int) -> None:
        got[k] = _results(windows, "support")

    workers = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert all(got.get(k) == expected for k in range(4))


def _child_verdicts(windows, queue) -> None:
    queue.put(_results(windows, "support"))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork() here")
def test_a_forked_child_makes_its_own_pool(threads):
    """fork() copies none of the pool's threads: a child that waited on them would hang."""
    windows = _windows(10, seed=3)
    threads(3)
    expected = _results(windows, "support")  # the parent's pool is running now
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_verdicts, args=(windows, queue))
    child.start()
    try:
        got = queue.get(timeout=120)
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    assert got == expected and child.exitcode == 0


@pytest.mark.parametrize("bad", [-1, 1025, 1.5, True, "2", None])
def test_set_num_threads_refuses_what_is_not_a_thread_count(threads, bad):
    with pytest.raises(InputError, match="threads must be an integer >= 0 and <= 1024"):
        set_num_threads(bad)


def test_the_core_takes_exactly_the_facades_bound(threads):
    """The facade's MAX_THREADS and the core's own bound are one limit."""
    from flickermine import _core
    from flickermine.mining._kernels import MAX_THREADS

    _core.set_num_threads(MAX_THREADS)
    assert _core.num_threads() == MAX_THREADS
    with pytest.raises(ValueError, match=f"<= {MAX_THREADS}"):
        _core.set_num_threads(MAX_THREADS + 1)


def test_set_num_threads_returns_the_setting_it_replaces(threads):
    from flickermine import _core

    threads(6)
    assert threads(2) == 6 and _core.num_threads() == 2
    threads(0)  # the default: one core left to decoding, at least one thread
    assert _core.num_threads() >= 1
