"""bench/bench_retrain.py, the closed loop (train, mine the pool, retrain per arm, score), end to
end on a few real frames: every arm is scored on every seed and the JSON says how it was run.
The figures themselves come from the full run (bench/results/retrain.json), not from here."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import numpy as np
import pytest

from flickermine import Detections
from flickermine.io import LabelledImage

from .conftest import ROOT, shared_data

ARMS = {"baseline", "flicker_seed", "flicker_tracklet", "flicker_support", "random", "oracle_equal", "oracle_all", "hard_positives"}
RECIPE_ARM = "hard_negatives_and_positives"  # with --recipe-arm


def run_bench(tmp_path, *options: str) -> dict:
    pets = shared_data("pets09-s2l1")
    out = tmp_path / "retrain.json"
    command = [
        sys.executable, str(ROOT / "bench" / "bench_retrain.py"), f"pets={pets / 'video.avi'},{pets / 'gt' / 'gt.txt'}",
        "--json", str(out), *options,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "AP50" in done.stdout and "LAMR" in done.stdout  # the table
    assert out.with_suffix(".png").stat().st_size > 10_000
    return json.loads(out.read_text())


def check_result(result: dict, seeds: int, model: str, recipe_arm: bool = False) -> None:
    assert set(result["arms"]) == ARMS | ({RECIPE_ARM} if recipe_arm else set())
    for name, arm in result["arms"].items():
        assert len(arm["seeds"]) == seeds, name
        for key in ("ap", "lamr", "coco_ap"):
            assert 0.0 <= arm[f"{key}_mean"] <= 1.0, (name, key)
            assert arm[f"{key}_sd"] >= 0.0
    assert result["arms"]["baseline"]["count"] == 0
    # the oracle arm of equal size adds as many verified false positives as the best rule mined
    best = result["setting"]["mining"]["best_rule"]
    assert result["arms"]["oracle_equal"]["count"] <= result["arms"][f"flicker_{best}"]["count"]
    assert result["arms"]["oracle_all"]["count"] >= result["arms"]["oracle_equal"]["count"]
    if recipe_arm:
        both = result["arms"][RECIPE_ARM]["count"]
        assert both == pytest.approx(result["arms"][f"flicker_{best}"]["count"] + result["arms"]["hard_positives"]["count"])
        assert set(result["criterion"][f"{RECIPE_ARM}_vs_baseline"]) == {"ap_gain", "ap_2sd", "lamr_drop", "lamr_2sd"}
    assert result["setting"]["model"] == model
    assert set(result["setting"]["mining"]["chosen_on_val"]) == {"seed", "tracklet", "support"}
    assert isinstance(result["criterion"]["holds"], bool)
    for name, arm in result["arms"].items():
        shares = [arm[f"{kind}_mean"] for kind in ("fp_background", "fp_duplicate", "fp_mislocalised")]
        assert shares == [None] * 3 or sum(shares) == pytest.approx(1.0), name


def test_false_positive_kinds_on_hand_built_frames(monkeypatch):
    """Three frames, so the cut at 1 false positive per image keeps the three best-scored false
    positives: a second box on a person already found, a box on background and a box half on a
    person nobody found; the fourth (lowest score) falls below the cut."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    bench = importlib.import_module("bench_retrain")
    person, other = [100, 100, 140, 200], [300, 100, 340, 200]
    images = [
        LabelledImage("a", lambda: np.zeros((8, 8), np.uint8), np.array([person, other], np.float64)),
        LabelledImage("b", lambda: np.zeros((8, 8), np.uint8), np.zeros((0, 4))),
        LabelledImage("c", lambda: np.zeros((8, 8), np.uint8), np.zeros((0, 4))),
    ]
    found = [
        Detections(
            boxes=np.array([person, [115, 100, 155, 200], [500, 300, 540, 400], [320, 100, 360, 200], [0, 0, 10, 10]], np.float64),
            scores=np.array([0.9, 0.8, 0.7, 0.6, 0.5]),
        ),
        Detections(boxes=np.zeros((0, 4)), scores=np.zeros(0)),
        Detections(boxes=np.zeros((0, 4)), scores=np.zeros(0)),
    ]
    kinds = bench.false_positive_kinds(images, found)
    assert kinds == pytest.approx({"fp_background": 1 / 3, "fp_duplicate": 1 / 3, "fp_mislocalised": 1 / 3})
    # no false positive at all: no shares
    assert bench.false_positive_kinds(images[:1], [Detections(boxes=np.array([person], np.float64), scores=np.array([0.9]))]) == {
        "fp_background": None, "fp_duplicate": None, "fp_mislocalised": None}


@pytest.mark.real_data
@pytest.mark.slow
def test_hog_svm_loop_scores_every_arm_on_every_seed(tmp_path):
    result = run_bench(
        tmp_path, "--train", "pets:1-90/3", "--val", "pets:241-250", "--pool", "pets:301-340",
        "--test", "pets:601-615", "--seeds", "2", "--workers", "2", "--recipe-arm",
    )
    check_result(result, seeds=2, model="hog-svm", recipe_arm=True)
    # a trained HOG-SVM finds people on this footage: the baseline is far from chance
    assert result["arms"]["baseline"]["ap_mean"] > 0.3
    # random pool detections are mostly real people (this detector is precise): learning them
    # as negatives may not raise AP50
    assert result["arms"]["random"]["count"] == result["arms"][f"flicker_{result['setting']['mining']['best_rule']}"]["count"]


@pytest.mark.real_data
@pytest.mark.slow
def test_faster_rcnn_loop_runs_on_cpu(tmp_path):
    """The Faster R-CNN path (whole frames as JPEG, fine-tuning per arm) runs end to end; four
    iterations from scratch learn nothing, so only the plumbing is checked."""
    pytest.importorskip("torchvision")
    result = run_bench(
        tmp_path, "--model", "fasterrcnn_mobilenet_v3_large_fpn", "--train", "pets:1-6", "--val", "pets:7-9",
        "--pool", "pets:301-320", "--test", "pets:601-604", "--seeds", "1", "--iterations", "4",
        "--finetune-iterations", "2", "--min-size", "256", "--max-size", "352", "--device", "cpu",
    )
    check_result(result, seeds=1, model="fasterrcnn_mobilenet_v3_large_fpn")
    assert result["setting"]["faster_rcnn"]["finetune_iterations"] == 2


@pytest.mark.parametrize("option, value", [("--bootstrap-rounds", "-1"), ("--window", "48xq")])
def test_bad_hog_svm_setting_is_a_one_line_error(tmp_path, option, value):
    out = tmp_path / "retrain.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_retrain.py"), "pets=video.avi,gt.txt", "--train", "pets:1-3", "--val", "pets:4-5",
         "--pool", "pets:6-9", "--test", "pets:10-11", option, value, "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert f"{option} {value}" in done.stderr.strip().splitlines()[-1] and "Traceback" not in done.stderr
    assert not out.exists()
