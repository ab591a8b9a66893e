"""The command line: mine on real data, demo, version, and bad input with clear errors."""

from __future__ import annotations

import csv
from pathlib import Path
import subprocess
import sys

import pytest

from flickermine.cli import main

from .conftest import shared_data


def read_rows(path) -> list[dict]:
    return list(csv.DictReader(path.read_text().splitlines()))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flickermine.cli", *args], capture_output=True, text=True, timeout=600)


def test_version_lists_backends():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("flickermine 0.1.0\nbackends available: ")
    assert "numpy" in result.stdout


@pytest.mark.real_data
def test_mine_writes_one_row_per_candidate(tmp_path, capsys):
    video = shared_data("tud-campus", "video.mp4")
    dets = shared_data("tud-campus", "det", "faster_rcnn.txt")
    out = tmp_path / "sub" / "verdicts.csv"
    assert main(["mine", str(video), "--detections", str(dets), "--verdicts", str(out), "--quiet"]) == 0
    rows = read_rows(out)
    # faster_rcnn.txt on tud-campus: 321 boxes, 277 of them with score >= 0.8.
    assert len(rows) == 277
    assert set(rows[0]) == {"frame", "x", "y", "w", "h", "score", "verdict", "reason"}
    assert all(float(r["score"]) >= 0.8 for r in rows)
    assert {r["verdict"] for r in rows} <= {"hard_negative", "pseudo_positive"}
    assert all((r["verdict"] == "hard_negative") == (r["reason"] == "isolated") for r in rows)
    assert [int(r["frame"]) for r in rows] == sorted(int(r["frame"]) for r in rows)
    summary = capsys.readouterr().out
    assert "71 frames, 321 detections, 277 candidates" in summary and "frames/s" in summary
    assert not (tmp_path / "sub" / "verdicts.csv.partial").exists()


@pytest.mark.real_data
def test_mine_parameters_change_the_result(tmp_path):
    video = shared_data("tud-campus", "video.mp4")
    dets = shared_data("tud-campus", "det", "faster_rcnn.txt")
    out = tmp_path / "v.csv"
    args = ["mine", str(video), "--detections", str(dets), "--verdicts", str(out), "--quiet"]
    assert main(args + ["--score-threshold", "0.99", "--rule", "tracklet", "--backend", "numpy"]) == 0
    rows = read_rows(out)
    assert 0 < len(rows) < 277 and all(float(r["score"]) >= 0.99 for r in rows)
    assert main(args + ["--sure-score", "2", "--min-area", "0", "--border", "0", "--window", "1"]) == 0
    reasons = {r["reason"] for r in read_rows(out)}
    assert not reasons & {"sure_score", "small", "border"}


@pytest.mark.slow
def test_demo_prints_precision_and_writes_a_dataset(tmp_path):
    out = tmp_path / "demo"
    for _ in range(2):  # a second run replaces the first demo's output
        result = run_cli("demo", "--frames", "60", "--out", str(out))
        assert result.returncode == 0, result.stderr
    assert "injected one-frame false positives" in result.stdout
    assert "precision of the hard negatives" in result.stdout
    from pycocotools.coco import COCO

    coco = COCO(str(out / "annotations.json"))
    assert len(coco.getImgIds()) > 0 and (out / "contact_sheet.png").is_file()
    assert any(a["source"] == "tracker" for a in coco.dataset["annotations"])
    import json

    report = json.loads((out / "report.json").read_text())  # laid out as `mine --out` lays it out
    assert report["videos"][0]["status"] == "done" and report["totals"]["frames"] == 60
    assert report["totals"]["kept_frames"] == len(coco.getImgIds())
    assert coco.dataset["info"]["detector"]["seed"] == 0
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    result = run_cli("demo", "--frames", "20", "--out", str(tmp_path / "other"))
    assert result.returncode == 2 and "not an earlier demo" in result.stderr


@pytest.mark.real_data
def test_bad_inputs_exit_2_with_a_clear_message(tmp_path, capsys):
    video = shared_data("tud-campus", "video.mp4")
    dets = shared_data("tud-campus", "det", "faster_rcnn.txt")
    out = tmp_path / "v.csv"
    out.write_text("an earlier result\n")

    def fails(args, *expected):
        assert main(args) == 2
        err = capsys.readouterr().err
        for text in expected:
            assert text in err, err
        assert out.read_text() == "an earlier result\n"  # nothing already written is lost

    fails(["mine", str(tmp_path / "nope.mp4"), "--detections", str(dets), "--verdicts", str(out)], "nope.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00not a video" * 1000)
    fails(["mine", str(corrupt), "--detections", str(dets), "--verdicts", str(out)], "corrupt.mp4")
    cases = {
        "short line": ("1,-1,10,20,30\n", "line 1"),
        "not a number": ("1,-1,10,abc,30,40,0.9\n", "line 1"),
        "NaN": ("1,-1,10,20,30,40,0.9\n2,-1,nan,20,30,40,0.9\n", "line 2"),
        "negative size": ("1,-1,10,20,-30,40,0.9\n", "line 1"),
        "zero size": ("1,-1,10,20,30,0,0.9\n", "line 1"),
        "frame zero": ("0,-1,10,20,30,40,0.9\n", "line 1"),
        "beyond the video": ("1,-1,10,20,30,40,0.9\n72,-1,10,20,30,40,0.9\n", "line 2"),
    }
    for name, (text, where) in cases.items():
        bad = tmp_path / f"{name.replace(' ', '_')}.txt"
        bad.write_text(text)
        fails(["mine", str(video), "--detections", str(bad), "--verdicts", str(out)], bad.name, where)
    fails(["mine", str(video), "--detections", str(tmp_path / "missing.txt"), "--verdicts", str(out)], "missing.txt")


@pytest.mark.real_data
def test_unwritable_outputs_exit_2_with_a_clear_message(tmp_path, capsys):
    """An output that cannot be written is named in one line, never a traceback."""
    video = shared_data("tud-campus", "video.mp4")
    dets = shared_data("tud-campus", "det", "faster_rcnn.txt")
    folder = tmp_path / "a_folder"
    folder.mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("keep")
    for target, expected in [(folder, "is a folder"), (a_file / "v.csv", "a_file")]:
        assert main(["mine", str(video), "--detections", str(dets), "--verdicts", str(target), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("flickermine: error: ") and expected in err and "Traceback" not in err, err
    assert a_file.read_text() == "keep" and not list(folder.iterdir())


def test_demo_needs_at_least_one_frame(tmp_path, capsys):
    assert main(["demo", "--frames", "0", "--out", str(tmp_path / "d")]) == 2
    assert "at least 1 frame (--frames), got 0" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


@pytest.mark.real_data
def test_truncated_video_keeps_the_rows_already_decided(tmp_path, capsys):
    """A video that stops decoding early: the frames decided so far stay in the .partial file."""
    video = shared_data("pets09-s2l1", "video.avi")
    dets = shared_data("pets09-s2l1", "det", "faster_rcnn.txt")
    truncated = tmp_path / "truncated.avi"
    data = video.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    out = tmp_path / "v.csv"
    code = main(["mine", str(truncated), "--detections", str(dets), "--verdicts", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "faster_rcnn.txt line" in err  # the first detection beyond the decoded frames
    partial = tmp_path / "v.csv.partial"
    rows = read_rows(partial)
    assert len(rows) > 100 and not out.exists()


def _readme_section(title: str) -> str:
    from .conftest import ROOT

    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n{title}\n")
    end = text.find("\n#", start + len(title) + 2)
    return text[start:end]


def _commands_in(section: str) -> list[list[str]]:
    """The ``flickermine ...`` lines of a section's bash blocks, continuation lines joined, as words."""
    import shlex

    lines = section.replace("\\\n", " ").splitlines()
    return [shlex.split(line)[1:] for line in lines if line.startswith("flickermine ")]


def _subparser(parser, words: list[str]):
    """The parser of the (sub)command that ``words`` start with, e.g. ``coco subset``."""
    import argparse

    while True:
        choices = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if not choices or not words or words[0] not in choices:
            return parser
        parser, words = choices[words[0]], words[1:]


def test_readme_worked_example_parses_and_its_subset_holds_only_dog_images(tmp_path, monkeypatch, capsys):
    import json
    import re

    from flickermine.io import _coco as coco
    from flickermine.cli import build_parser

    section = _readme_section("### Training on what was mined")
    parser = build_parser()
    parsed = [parser.parse_args(words) for words in _commands_in(section)]  # an unknown flag exits
    assert [a.command for a in parsed] == ["detect", "mine", "coco", "coco", "train", "evaluate"]
    # every option the section names is one of the loop commands'
    loop_options = set()
    for command in (["coco", "merge"], ["coco", "subset"], ["train"], ["evaluate"]):
        loop_options |= {o for action in _subparser(parser, command)._actions for o in action.option_strings}
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", section.split("```", 2)[2]))  # the prose after the block
    assert named <= loop_options, named - loop_options

    # the subset line, run on a COCO file with dog images, cat-only images and images without annotations
    subset_args = next(a for a in parsed if a.command == "coco" and a.coco_command == "subset")
    counts = [int(n) for n in subset_args.split.split("/")]
    dogs, cats, empty = sum(counts), 50, 60
    source = {"images": [], "annotations": [], "categories": [{"id": 17, "name": "cat"}, {"id": 18, "name": "dog"}]}
    for index in range(dogs + cats + empty):
        source["images"].append({"id": index + 1, "file_name": f"{index:06d}.jpg", "width": 64, "height": 48})
        if index < dogs + cats:
            category = 18 if index < dogs else 17
            source["annotations"].append({"id": index + 1, "image_id": index + 1, "category_id": category, "bbox": [1, 1, 9, 9]})
    monkeypatch.chdir(tmp_path)
    (tmp_path / subset_args.coco_json).write_text(json.dumps(source))
    assert subset_args.handler(subset_args) == 0
    capsys.readouterr()
    parts = {name: coco.load(Path(subset_args.out) / f"{name}.json") for name in ("train", "val", "test")}
    assert [len(parts[name]["images"]) for name in ("train", "val", "test")] == counts
    for part in parts.values():  # the paper's split: dog images only, each with its dog boxes
        annotated = {a["image_id"] for a in part["annotations"]}
        assert all(image["id"] in annotated for image in part["images"])
