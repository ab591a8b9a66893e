"""bench/bench_pipeline.py end to end on a few frames (the figures come from the full run,
bench/results/pipeline.json), and how it makes denser detection files."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from .conftest import ROOT, shared_data


def bench_module():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec = importlib.util.spec_from_file_location("bench_pipeline", ROOT / "bench" / "bench_pipeline.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "bench"))


def test_densify_reaches_the_mean_of_candidates_exactly_inside_the_image_and_is_seeded():
    bench = bench_module()
    rng = np.random.default_rng(3)
    frames, width, height = 40, 320, 240
    rows = np.array([[f, -1, rng.uniform(0, 250), rng.uniform(0, 170), 30, 60, rng.uniform(0.5, 1)] for f in range(1, frames + 1) for _ in range(3)])
    dense = bench.densify(rows, 10.0, frames, width, height, seed=7)
    assert (dense[:, 6] >= 0.8).sum() == 10 * frames  # the mean counts candidates (score >= 0.8)
    assert (dense[:, 6] < 0.8).sum() == (rows[:, 6] < 0.8).sum()  # extra boxes are copies of candidates
    assert (np.diff(dense[:, 0]) >= 0).all() and dense[:, 0].min() >= 1 and dense[:, 0].max() <= frames
    assert (dense[:, 2] >= 0).all() and (dense[:, 2] + dense[:, 4] <= width + 1e-9).all()
    assert (dense[:, 3] >= 0).all() and (dense[:, 3] + dense[:, 5] <= height + 1e-9).all()
    assert set(np.round(dense[:, 6], 12)) <= set(np.round(rows[:, 6], 12))  # real scores only
    np.testing.assert_array_equal(dense, bench.densify(rows, 10.0, frames, width, height, seed=7))


@pytest.mark.real_data
def test_bench_runs_every_rule_in_pairs_with_the_authors_row(tmp_path):
    shared_data("pets09-s2l1")
    out = tmp_path / "pipeline.json"
    command = [sys.executable, str(ROOT / "bench" / "bench_pipeline.py"), "--frames", "12", "--pairs", "2",
               "--densities", "real,20", "--authors-frames", "8", "--loops", "0", "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT / "bench")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "authors' algorithm" in done.stdout and "mine/decode" in done.stdout
    result = json.loads(out.read_text())
    assert [(r["detections"], r["rule"]) for r in result["results"]] == [
        (d, rule) for d in ("real", "20") for rule in ("seed", "tracklet", "support")
    ]
    for row in result["results"]:
        assert row["frames"] == 12 and len(row["mine_over_decode"]["values"]) == 2
        assert row["mine_over_decode"]["min"] <= row["mine_over_decode"]["median"] <= row["mine_over_decode"]["max"]
    assert result["authors_algorithm"]["frames"] == 8 and len(result["authors_algorithm"]["flickermine_speedup"]["values"]) == 2
    assert len(result["load_average"]["start"]) == 3
    # the support rule alone at 1 and 2 rule threads, per density, and the decoder's cores
    assert [r["detections"] for r in result["rules_alone_by_threads"]] == ["real", "20"]
    for row in result["rules_alone_by_threads"]:
        assert set(row["ms_per_frame"]) == {"1", "2"} and all(len(t["values"]) == 2 for t in row["ms_per_frame"].values())
        assert all(t["median"] > 0 for t in row["ms_per_frame"].values())
    assert result["decode_only_cores_busy"]["median"] > 0 and result["rule_threads"] >= 1
