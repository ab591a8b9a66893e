"""Friction a new user hit on the command line (issue 14): each point, one test."""

from __future__ import annotations

import json

import pytest

from flickermine.cli import build_parser, main
from flickermine.cli._main import join_negative_values

from .conftest import shared_data


def _tud(*parts: str):
    return shared_data("tud-campus", *parts)


# -- 1. a run that mines nothing says why -------------------------------------------------------


@pytest.mark.real_data
def test_verdicts_run_that_mines_nothing_says_why(tmp_path, capsys):
    video, dets = _tud("video.mp4"), _tud("det", "faster_rcnn.txt")
    # --rule seed: it mines nothing here (the default, support, mines 7)
    assert main(["mine", str(video), "--detections", str(dets), "--verdicts", str(tmp_path / "v.csv"), "--quiet", "--rule", "seed"]) == 0
    out = capsys.readouterr().out
    # faster_rcnn.txt on tud-campus, default settings: 277 candidates, 195 sure, 26 at the border, 56 partnered
    assert "nothing mined: 277 candidates" in out
    assert "195 exempt by sure_score" in out
    assert "0 small" in out
    assert "26 at the border" in out
    assert "56 had partners" in out
    assert "--min-area 0 --border 0" in out and "--rule support" in out and "--score-threshold" in out


@pytest.mark.real_data
def test_dataset_run_that_mines_nothing_says_why(tmp_path, capsys):
    video, dets = _tud("video.mp4"), _tud("det", "faster_rcnn.txt")
    assert main(["mine", str(video), "--detections", str(dets), "--out", str(tmp_path / "ds"), "--quiet", "--rule", "seed"]) == 0
    out = capsys.readouterr().out
    assert "nothing mined: 277 candidates" in out and "195 exempt by sure_score" in out and "56 had partners" in out
    report = json.loads((tmp_path / "ds" / "report.json").read_text())
    assert report["videos"][0]["reasons"] == {"border": 26, "partner": 56, "sure_score": 195}


@pytest.mark.real_data
def test_run_that_mines_something_gives_no_hint(tmp_path, capsys):
    video, dets = _tud("video.mp4"), _tud("det", "faster_rcnn.txt")
    args = ["mine", str(video), "--detections", str(dets), "--verdicts", str(tmp_path / "v.csv"), "--quiet"]
    assert main(args + ["--sure-score", "1e9", "--min-area", "0", "--border", "0", "--rule", "support"]) == 0
    out = capsys.readouterr().out
    assert "10 hard negatives" in out and "nothing mined" not in out


# -- 2. negative numbers parse -----------------------------------------------------------------


def test_negative_values_are_joined_to_their_option():
    parser = build_parser()
    argv = ["mine", "v.mp4", "--score-threshold", "-1e9", "--sure-score", "1e9", "--margin", "-3", "--quiet", "--", "-1"]
    joined = join_negative_values(parser, argv)
    assert joined == ["mine", "v.mp4", "--score-threshold=-1e9", "--sure-score", "1e9", "--margin=-3", "--quiet", "--", "-1"]
    audit = parser.parse_args(join_negative_values(parser, ["audit", "v.csv", "--scores", "-1,0.5", "--border", "-0"]))
    assert audit.scores == [-1.0, 0.5]
    assert join_negative_values(parser, ["mine", "v.mp4", "--out", "-x"]) == ["mine", "v.mp4", "--out", "-x"]
    for form in (["--score-threshold", "-1e9"], ["--score-threshold=-1e9"], ["--score-threshold", "-.5"]):
        args = parser.parse_args(join_negative_values(parser, ["mine", "v.mp4", *form]))
        assert args.score_threshold < 0


@pytest.mark.real_data
def test_haar_settings_parse_and_mine(tmp_path, capsys):
    video, dets = _tud("video.mp4"), _tud("det", "opencv_haar_fullbody.txt")
    out = tmp_path / "v.csv"
    args = ["mine", str(video), "--detections", str(dets), "--verdicts", str(out), "--quiet"]
    assert main(args + ["--score-threshold", "-1e9", "--sure-score", "1e9"]) == 0
    first = out.read_text()
    assert main(args + ["--score-threshold=-1e9", "--sure-score", "1e9"]) == 0
    assert out.read_text() == first
    assert "19 candidates" in capsys.readouterr().out  # every Haar box, whatever its score


# -- 4. drawing options are not mining settings ---------------------------------------------------


@pytest.mark.real_data
def test_rerun_without_visualize_resumes(tmp_path, capsys):
    video, dets = _tud("video.mp4"), _tud("det", "opencv_haar_fullbody.txt")
    out = tmp_path / "ds"
    args = ["mine", str(video), "--detections", str(dets), "--out", str(out), "--quiet", "--score-threshold=-1e9", "--sure-score", "1e9"]
    assert main(args + ["--visualize"]) == 0
    assert main(args) == 0  # no "different settings"
    assert "skipped (done before)" in capsys.readouterr().out
    assert main(args + ["--visualize"]) == 0
    capsys.readouterr()
    # a mining setting still refuses
    assert main(args + ["--window", "3"]) == 2
    assert "different settings" in capsys.readouterr().err


# -- 5. what a run prints ------------------------------------------------------------------------


@pytest.mark.real_data
def test_hard_positives_not_looked_for_print_a_dash(tmp_path, capsys):
    video, dets = _tud("video.mp4"), _tud("det", "opencv_haar_fullbody.txt")
    base = ["mine", str(video), "--detections", str(dets), "--quiet", "--score-threshold=-1e9", "--sure-score", "1e9"]
    assert main(base + ["--out", str(tmp_path / "hn")]) == 0
    table = capsys.readouterr().out.splitlines()
    header, row, total = table[0], table[2], table[4]
    column = header.index("hard pos.")
    assert row[column : column + len("hard pos.")].strip() == "-"
    assert total[column : column + len("hard pos.")].strip() == "-"
    assert main(base + ["--out", str(tmp_path / "hp"), "--mode", "hn+hp"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[2][column : column + len("hard pos.")].strip().isdigit()


def test_train_warns_on_the_console_and_records_amp_as_used(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from .test_training import make_squares, tiny_config
    from flickermine.train._torch import train

    train_json = make_squares(tmp_path / "data", count=2, negatives=0)
    train(tiny_config(train_json, tmp_path / "run", iterations=1, device="cpu", amp=True))
    assert "flickermine: warning: no --weights: training from random initialisation" in capsys.readouterr().err
    log = (tmp_path / "run" / "train.log").read_text()
    settings = json.loads(log.split(" settings ", 1)[1].splitlines()[0])
    assert settings["amp"] is False and settings["device"] == "cpu"


@pytest.mark.real_data
def test_unwritable_verdicts_path_is_named_as_given(tmp_path, capsys):
    video, dets = _tud("video.mp4"), _tud("det", "faster_rcnn.txt")
    assert main(["mine", str(video), "--detections", str(dets), "--verdicts", "/proc/x.csv", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--verdicts /proc/x.csv: cannot write a file there" in err
    assert ".partial" not in err and ".lock" not in err


def test_named_weights_missing_from_the_cache_are_one_clear_line(tmp_path, monkeypatch, capsys):
    """flickermine downloads nothing: --torchvision-weights missing from torch's cache is exit 2,
    one line naming the file to fetch, and nothing written."""
    pytest.importorskip("torchvision")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    out = tmp_path / "dets"
    code = main(["detect", "clip.mp4", "--detector", "fasterrcnn_mobilenet_v3_large_fpn", "--torchvision-weights", "DEFAULT",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "not in torch's cache" in err and "https://download.pytorch.org/" in err and "--weights PATH" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()

    # train: the same check, before --out is made
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((64, 64, 3), np.uint8))
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 64}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 30], "area": 600, "iscrowd": 0}],
            "categories": [{"id": 1, "name": "person"}]}
    (tmp_path / "train.json").write_text(json.dumps(coco))
    run = tmp_path / "run"
    code = main(["train", "--model", "fasterrcnn_mobilenet_v3_large_fpn", "--train", str(tmp_path / "train.json"),
                 "--backbone-weights", "DEFAULT", "--iterations", "1", "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "(its backbone) are not in torch's cache" in err and "mobilenet_v3_large-" in err and not run.exists()


# -- 6. --help -----------------------------------------------------------------------------------


def _commands(parser, path=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield path + (name,), sub
                yield from _commands(sub, path + (name,))


def _help_problems(coco: bool) -> list[str]:
    import argparse

    problems = []
    for path, sub in _commands(build_parser()):
        if (path[0] == "coco") != coco:
            continue
        name = " ".join(path)
        if not (sub.description or "").strip():
            problems.append(f"{name}: no description")
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            label = "/".join(action.option_strings) or action.dest
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                problems.append(f"{name} {label}: no help")
            if action.option_strings and action.type is float and action.metavar in ("N", None):
                problems.append(f"{name} {label}: a float option with metavar {action.metavar!r}")
    return problems


def test_every_command_has_a_description_and_every_option_help():
    problems = _help_problems(coco=False)
    assert not problems, "\n".join(problems)


def test_coco_commands_have_descriptions_and_help():
    problems = _help_problems(coco=True)
    assert not problems, "\n".join(problems)


def test_detections_help_names_every_format():
    import argparse

    seen = 0
    for path, sub in _commands(build_parser()):
        for action in sub._actions:
            if "--detections" in action.option_strings and path != ("evaluate",):  # evaluate's is an output
                seen += 1
                for name in ("MOT", "authors", "JSON Lines"):
                    assert name.lower() in action.help.lower(), (path, action.help)
    assert seen == 2  # mine, audit


# -- 7. categories agree -------------------------------------------------------------------------


@pytest.mark.real_data
def test_mine_negatives_category_agrees_with_its_info(tmp_path, capsys):
    frames = sorted(shared_data("otb-girl", "img").iterdir())[:3]
    out = tmp_path / "neg"
    assert main(["mine-negatives", *map(str, frames), "--detector", "opencv-haar-frontalface", "--min-score", "0",
                 "--out", str(out), "--quiet"]) == 0
    coco = json.loads((out / "annotations.json").read_text())
    assert [c["name"] for c in coco["categories"]] == [coco["info"]["detector"]["category"]]
    assert coco["categories"][0]["name"] != "object"


# -- 8. audit output -----------------------------------------------------------------------------


@pytest.mark.real_data
def test_audit_prints_a_legend_and_a_sweep_progress_bar(tmp_path, capsys):
    video, dets, gt = _tud("video.mp4"), _tud("det", "faster_rcnn.txt"), _tud("gt", "gt.txt")
    verdicts = tmp_path / "v.csv"
    assert main(["mine", str(video), "--detections", str(dets), "--verdicts", str(verdicts), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["audit", str(verdicts), "--gt", str(gt), "--by-threshold", "--video", str(video),
                 "--detections", str(dets), "--scores", "0.8", "--nccs", "0.5"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("video  cand."))
    legend = "\n".join(lines[header + 3 : header + 12])
    for term in ("cand.:", "FP rate:", "enrich.:", "base HN:", "base nonex HN:", "PP:", "HP:"):
        assert term in legend, term
    assert "re-mining 1 setting" in captured.err  # the --by-threshold progress bar
    assert main(["audit", str(verdicts), "--gt", str(gt), "--by-threshold", "--video", str(video),
                 "--detections", str(dets), "--scores", "0.8", "--nccs", "0.5", "--quiet"]) == 0
    assert "re-mining" not in capsys.readouterr().err


def _coco_pair(tmp_path):
    import cv2
    import numpy as np

    for folder in ("base", "mined"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    box = {"bbox": [1, 1, 4, 4], "area": 16, "iscrowd": 0}
    base = {"images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, **box}], "categories": [{"id": 1, "name": "person"}]}
    mined = {**base, "categories": [{"id": 1, "name": "object"}]}
    (tmp_path / "base" / "base.json").write_text(json.dumps(base))
    (tmp_path / "mined" / "annotations.json").write_text(json.dumps(mined))
    return [str(tmp_path / "base" / "base.json"), str(tmp_path / "mined" / "annotations.json")]


def test_coco_merge_refuses_a_second_category_or_maps_it(tmp_path, capsys):
    inputs = _coco_pair(tmp_path)
    out = tmp_path / "merged.json"
    assert main(["coco", "merge", *inputs, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "category 'object' is not one of" in err and "--category-map object=person" in err
    assert not out.exists()
    assert main(["coco", "merge", *inputs, "--out", str(out), "--category-map", "object=person"]) == 0
    merged = json.loads(out.read_text())
    assert merged["categories"] == [{"id": 1, "name": "person"}]
    assert [a["category_id"] for a in merged["annotations"]] == [1, 1]
    assert main(["coco", "merge", *inputs, "--out", str(out), "--category-map", "object=dog"]) == 2
    assert "has no category 'dog'" in capsys.readouterr().err
    assert main(["coco", "merge", *inputs, "--out", str(out), "--new-categories"]) == 0
    assert [c["name"] for c in json.loads(out.read_text())["categories"]] == ["person", "object"]


# -- 9. every combination the synopsis promises works ----------------------------------------------


@pytest.mark.real_data
@pytest.mark.slow
def test_detector_with_verdicts(tmp_path, capsys):
    video = _tud("video.mp4")  # opencv-hog on tud-campus's 71 frames: about 12 s on 2 cores
    out = tmp_path / "v.csv"
    assert main(["mine", str(video), "--detector", "opencv-hog", "--verdicts", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "71 frames, 218 detections" in printed and f"verdicts written to {out}" in printed
    rows = out.read_text().splitlines()
    assert rows[0] == "frame,x,y,w,h,score,verdict,reason" and len(rows) > 1


@pytest.mark.real_data
def test_list_file_of_one_video_with_verdicts(tmp_path, capsys):
    video, dets = _tud("video.mp4"), _tud("det", "faster_rcnn.txt")
    listed = tmp_path / "videos.txt"
    listed.write_text(f"# one video\n{video}\n")
    direct, via_list = tmp_path / "direct.csv", tmp_path / "list.csv"
    flags = ["--detections", str(dets), "--quiet", "--sure-score", "1e9", "--min-area", "0", "--border", "0"]
    assert main(["mine", str(video), "--verdicts", str(direct), *flags]) == 0
    assert main(["mine", str(listed), "--verdicts", str(via_list), *flags]) == 0
    assert via_list.read_text() == direct.read_text()
    # a detections folder works too: the video's file is found in it by name
    folder = tmp_path / "dets"
    folder.mkdir()
    (folder / "video.txt").write_text(dets.read_text())
    assert main(["mine", str(listed), "--detections", str(folder), "--verdicts", str(tmp_path / "f.csv"), *flags[2:]]) == 0
    assert (tmp_path / "f.csv").read_text() == direct.read_text()
    capsys.readouterr()
    two = tmp_path / "two.txt"
    two.write_text(f"{video}\n{tmp_path / 'other.mp4'}\n")
    assert main(["mine", str(two), "--verdicts", str(tmp_path / "x.csv"), *flags]) == 2
    assert "--verdicts takes exactly one video" in capsys.readouterr().err


# -- 10. audit --by-threshold decodes the video once ------------------------------------------------


@pytest.mark.real_data
def test_threshold_sweep_decodes_the_video_once(tmp_path, monkeypatch, capsys):
    # Every setting's Miner runs in the one decoding pass (evaluate._audit.mine_candidates).
    # tud-campus, 25 settings, 2 cores: 0.99 s in one pass against 2.96 s with a decode per
    # setting; pets09 (795 frames): 7.2 s against 35.5 s.
    from flickermine.video._source import VideoSource

    video, dets, gt = _tud("video.mp4"), _tud("det", "faster_rcnn.txt"), _tud("gt", "gt.txt")
    verdicts = tmp_path / "v.csv"
    assert main(["mine", str(video), "--detections", str(dets), "--verdicts", str(verdicts), "--quiet"]) == 0
    decoded = []
    frames = VideoSource.frames

    def counting(self, *args, **kwargs):
        decoded.append(self.name)
        yield from frames(self, *args, **kwargs)

    monkeypatch.setattr(VideoSource, "frames", counting)
    assert main(["audit", str(verdicts), "--gt", str(gt), "--by-threshold", "--video", str(video), "--detections",
                 str(dets), "--scores", "0.5,0.7,0.9", "--nccs", "0.3,0.5,0.7", "--quiet", "--json", str(tmp_path / "a.json")]) == 0
    assert len(decoded) == 1
    assert len(json.loads((tmp_path / "a.json").read_text())["sweep"]) == 9


# -- 11. detect: one summary line, the device named, one frames/s figure ---------------------------


@pytest.mark.real_data
def test_detect_prints_one_line_naming_the_device(tmp_path, capsys, monkeypatch):
    import re

    from flickermine.detect._detections import CallableDetector
    from flickermine.io._mot import DetectionFile
    from flickermine.runner._detect_job import detect_videos

    video, dets = _tud("video.mp4"), _tud("det", "faster_rcnn.txt")
    frames = DetectionFile(dets, frame_count=71).per_frame(71)

    def replay(frame):
        _, boxes, scores = next(frames)
        return boxes, scores

    import tqdm

    bars: list[dict] = []
    real_tqdm = tqdm.tqdm

    def recording(*args, **kwargs):
        bars.append(kwargs)
        return real_tqdm(*args, **kwargs)

    monkeypatch.setattr(tqdm, "tqdm", recording)
    logged: list[str] = []
    summaries = detect_videos([video], tmp_path / "out", CallableDetector(replay, name="replay"), progress=True, log=logged.append)
    assert len(logged) == 1, logged  # one summary line per video
    line = logged[0]
    assert line.startswith("video: ") and "71 frames" in line and "-> " in line
    assert "[device cpu, batch 1, cpu decode]" in line and "GPU" not in line and "AMP" not in line and "pinned" not in line
    figures = re.findall(r"([\d.]+) frames/s", line)
    assert figures == [f"{summaries[0].frames_per_second:.1f}"]  # one figure, the summary's
    assert summaries[0].seconds == summaries[0].pipeline.seconds
    # the progress bar shows the average rate (smoothing=0), the figure the line prints, not a moving one
    assert bars and bars[0]["smoothing"] == 0


# -- 12. drawings: a tag per box (kind, score), a legend; a contact sheet sized to its frames -----


def _drawn():
    import numpy as np

    from flickermine.dataset._writer import draw_frame
    from flickermine.mining._miner import FrameVerdicts
    from flickermine.mining._params import Reason

    frame = np.full((240, 320, 3), 128, np.uint8)
    verdicts = FrameVerdicts(
        frame_index=0, boxes=np.array([[100.0, 80, 160, 200], [200, 90, 260, 220]]), scores=np.array([0.62, 0.95]),
        reasons=np.array([Reason.ISOLATED, Reason.PARTNER], dtype=np.int64), hard_positives=np.array([[20.0, 150, 70, 230]]),
    )
    return frame, verdicts, draw_frame


def _is(pixels, bgr):
    import numpy as np

    return np.all(pixels == np.array(bgr, np.uint8), axis=-1)


def test_drawing_tags_each_box_and_has_a_legend():
    import numpy as np

    from flickermine.dataset._writer import HARD_NEGATIVE_BGR, HARD_POSITIVE_BGR, PSEUDO_POSITIVE_BGR

    frame, verdicts, draw_frame = _drawn()
    drawn = draw_frame(frame, verdicts)
    assert drawn.shape == frame.shape  # a copy: the frame itself is untouched
    assert (frame == 128).all()
    # boxes in their colours
    assert _is(drawn[80:200, 100], HARD_NEGATIVE_BGR).all() and _is(drawn[90:220, 200], PSEUDO_POSITIVE_BGR).all()
    assert _is(drawn[150:230, 20], HARD_POSITIVE_BGR).all()
    # a tag plate above each box, holding text (ink of another colour on the plate)
    for (x1, y1), bgr in (((100, 80), HARD_NEGATIVE_BGR), ((200, 90), PSEUDO_POSITIVE_BGR), ((20, 150), HARD_POSITIVE_BGR)):
        plate = drawn[y1 - 16 : y1, x1 : x1 + 40]
        assert _is(plate, bgr).mean() > 0.4, (x1, y1)
        assert (~_is(plate, bgr)).sum() > 20, (x1, y1)  # the text
    # the score is drawn: a wider tag for "HN 0.62" than for "HP" (no score: tracked)
    def plate_width(y, x, bgr):
        return int(_is(drawn[y, x : x + 120], bgr).sum())

    assert plate_width(70, 100, HARD_NEGATIVE_BGR) > plate_width(140, 20, HARD_POSITIVE_BGR) + 20
    # the legend: a darkened plate top left with a swatch of each colour
    legend = drawn[0:60, 0:140]
    for bgr in (HARD_NEGATIVE_BGR, PSEUDO_POSITIVE_BGR, HARD_POSITIVE_BGR):
        assert _is(legend, bgr).sum() >= 60, bgr
    assert (legend.max(axis=-1) < 60).mean() > 0.3  # dark plate
    assert not _is(draw_frame(frame, verdicts, legend=False)[0:60, 0:140], HARD_NEGATIVE_BGR).any()
    # a category name, where known, is part of the tag
    named = draw_frame(frame, verdicts, names={1: "person"})
    assert plate_width(70, 100, HARD_NEGATIVE_BGR) < int(_is(named[70, 100:220], HARD_NEGATIVE_BGR).sum())


def test_contact_sheet_of_one_frame_is_one_thumbnail_wide(tmp_path):
    import cv2
    import numpy as np

    from flickermine.dataset._writer import HARD_NEGATIVE_BGR, contact_sheet

    frame, verdicts, draw_frame = _drawn()
    (tmp_path / "visualize" / "v").mkdir(parents=True)
    images = []
    for i in range(6):
        cv2.imwrite(str(tmp_path / "visualize" / "v" / f"{i + 1:06d}.png"), draw_frame(frame, verdicts))
        images.append({"video": "v", "file_name": f"images/v/{i + 1:06d}.png", "frame_index": i})
    for count, width, rows in ((1, 320, 1), (3, 960, 1), (6, 1280, 2)):
        path = contact_sheet(tmp_path, {"images": images[:count]}, thumb_width=320)
        sheet = cv2.imread(str(path))
        assert sheet.shape[1] == width, count
        strip = sheet.shape[0] - rows * 240
        assert 20 <= strip <= 50, (count, sheet.shape)  # the legend strip under the grid
        black = (sheet.max(axis=-1) == 0).mean()
        if count in (1, 3):
            assert black < 0.1, (count, black)  # no black padding columns
        assert _is(sheet[-strip:], HARD_NEGATIVE_BGR).sum() >= 60  # the strip's legend swatches


# -- 13. the Python API: clear errors, one rule for boxes partly outside ----------------------------


def test_frame_verdicts_per_frame_scores_name_the_argument_and_frame():
    import numpy as np

    import flickermine as fm
    from flickermine.errors import InputError

    frames = [np.zeros((40, 40), np.uint8)] * 3
    boxes = [np.array([[1.0, 1, 9, 9]]), np.array([[1.0, 1, 9, 9], [20, 20, 30, 30]]), np.zeros((0, 4))]
    with pytest.raises(InputError, match=r"^scores must be one \(N,\) array of numbers, the scores of the 2 boxes of "
                       r"frame 1, but got a ragged sequence of 3 entries of lengths \[1, 2, 0\] \(one per frame\?\)$"):
        fm.frame_verdicts(frames, boxes, [np.array([0.9]), np.array([0.9, 0.8]), np.zeros(0)], center=1)
    with pytest.raises(InputError, match=r"scores must have shape \(2,\) to match the 2 boxes of frame 1, but got shape \(3,\)"):
        fm.frame_verdicts(frames, boxes, [0.9, 0.8, 0.7], center=1)
    assert len(fm.frame_verdicts(frames, boxes, [0.9, 0.8], center=1)) == 2


def test_ncc_search_clips_boxes_partly_outside_as_the_miner_does():
    import numpy as np

    import flickermine as fm
    from flickermine.errors import InputError

    rng = np.random.default_rng(0)
    image = (rng.random((50, 50)) * 255).astype(np.uint8)
    template = [[40, 40, 48, 48]]
    scores, top_left = fm.ncc_search_batch(image, template, image, [[30, 30, 70, 70]])  # partly outside: clipped
    clipped = fm.ncc_search_batch(image, template, image, [[30, 30, 50, 50]])
    assert scores.tolist() == clipped[0].tolist() and top_left.tolist() == clipped[1].tolist() == [[40, 40]]
    # a template partly outside: clipped to [45, 45, 50, 50], found where it is
    assert fm.ncc_search_batch(image, [[45, 45, 53, 53]], image, [[40, 40, 50, 50]])[1].tolist() == [[45, 45]]
    with pytest.raises(InputError, match=r"template_boxes\[0\] = \[50, 0, 58, 8\] lies entirely outside the 50x50 image"):
        fm.ncc_search_batch(image, [[50, 0, 58, 8]], image, [[0, 0, 50, 50]])
    with pytest.raises(TypeError, match="template_boxes must be integer pixel boxes"):
        fm.ncc_search_batch(image, np.array([[40.0, 40, 48, 48]]), image, [[30, 30, 50, 50]])


# -- 14. the default rule is the one that mines best on validation data -----------------------------


def test_default_rule_is_support_everywhere():
    import inspect

    import flickermine as fm
    from flickermine.dataset._writer import RunConfig
    from flickermine.mining._params import DEFAULT_RULE, Rule
    from flickermine.runner._pipeline import mine_video

    assert DEFAULT_RULE is Rule.SUPPORT
    assert fm.Miner(fm.MiningParams()).rule is Rule.SUPPORT
    assert inspect.signature(fm.frame_verdicts).parameters["rule"].default is Rule.SUPPORT
    assert inspect.signature(mine_video).parameters["rule"].default is Rule.SUPPORT
    assert RunConfig(params=fm.MiningParams()).rule == "support"
    assert build_parser().parse_args(["mine", "v.mp4", "--verdicts", "v.csv"]).rule == "support"


@pytest.mark.real_data
def test_flagship_example_mines_with_defaults(tmp_path, capsys):
    # bench/results/audit.json: pets09 + Faster R-CNN, defaults: seed 1 hard negative (a real
    # person), support 46 at 65% precision
    video, dets = shared_data("pets09-s2l1", "video.avi"), shared_data("pets09-s2l1", "det", "faster_rcnn.txt")
    assert main(["mine", str(video), "--detections", str(dets), "--verdicts", str(tmp_path / "v.csv"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "4150 candidates, 46 hard negatives" in out and "rule support" in out and "nothing mined" not in out
