"""``flickermine review``: the self-contained review page, its marks, and ``coco merge --reject``."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from flickermine.cli import main
from flickermine.dataset._review import build_review, review_items
from flickermine.errors import InputError
from flickermine.io import _coco as coco_files

from .conftest import shared_data

FRAMES = 6


def _mined_folder(root: Path, *, with_video: bool = True) -> Path:
    """A small mined folder as `flickermine mine` writes it: frames 2 and 4 of a 6-frame clip kept.

    Image 1 (frame index 1) holds two hard negatives and a tracker label; image 2 (frame 3) one hard
    negative. The source "video" is an image folder, recorded in report.json.
    """
    rng = np.random.default_rng(0)
    video = root / "clip"
    video.mkdir(parents=True)
    frames = []
    for index in range(FRAMES):
        frame = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        cv2.imwrite(str(video / f"{index + 1:06d}.png"), frame)
        frames.append(frame)
    out = root / "mined"
    (out / "images" / "clip").mkdir(parents=True)
    images, annotations = [], []
    kept = {1: [([10.5, 12.25, 30.0, 40.0], 0.91), ([60.0, 20.0, 20.0, 30.0], 0.85)], 3: [([40.0, 30.0, 25.0, 35.0], 0.88)]}
    for image_id, (index, negatives) in enumerate(sorted(kept.items()), start=1):
        name = f"images/clip/{index + 1:06d}.jpg"
        cv2.imwrite(str(out / name), frames[index])
        images.append({
            "id": image_id, "file_name": name, "width": 128, "height": 96, "video": "clip", "frame_index": index,
            "hard_negatives": [{"bbox": box, "score": score} for box, score in negatives],
        })
        annotations.append({
            "id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "bbox": [90.0, 40.0, 20.0, 40.0],
            "area": 800.0, "iscrowd": 0, "score": 0.99, "source": "detector",
        })
    annotations.append({
        "id": len(annotations) + 1, "image_id": 1, "category_id": 1, "bbox": [5.0, 50.0, 22.0, 33.0],
        "area": 726.0, "iscrowd": 0, "score": None, "source": "tracker",
    })
    coco = {"info": {}, "images": images, "annotations": annotations, "categories": [{"id": 1, "name": "object"}]}
    (out / "annotations.json").write_text(json.dumps(coco))
    videos = [{"video": "clip", "path": str(video if with_video else root / "gone")}]
    (out / "report.json").write_text(json.dumps({"videos": videos}))
    return out


def _base(root: Path) -> Path:
    base = root / "base"
    base.mkdir()
    cv2.imwrite(str(base / "b.jpg"), np.zeros((20, 20, 3), np.uint8))
    coco = {
        "images": [{"id": 1, "file_name": "b.jpg", "width": 20, "height": 20}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "object"}],
    }
    (base / "base.json").write_text(json.dumps(coco))
    return base / "base.json"


def _count_items(page: str) -> int:
    return len(re.findall(r'<article class="item ', page))


def test_page_holds_every_item_and_no_url(tmp_path):
    mined = _mined_folder(tmp_path)
    summary = build_review(mined)
    page = (mined / "review.html").read_text()
    assert summary["items"] == 4 and summary["hard_negatives"] == 3 and summary["hard_positives"] == 1
    assert _count_items(page) == 4
    assert not re.search(r"https?://", page), "the page must load nothing from the network"
    assert "<link" not in page and "src=\"http" not in page
    # previous and next frames came from the source video (frames 0, 2, 4 are not in the dataset)
    assert summary["with_context"] == 4 and summary["videos_not_decoded"] == []
    frames = json.loads(re.search(r'<script type="application/json" id="frames">(.*?)</script>', page, re.S).group(1))
    assert set(frames) == {f"clip#{i}" for i in range(5)}
    # every item carries what the marks need
    boxes = [json.loads(html.unescape(b)) for b in re.findall(r'data-box="([^"]*)"', page)]
    assert [10.5, 12.25, 30.0, 40.0] in boxes and [5.0, 50.0, 22.0, 33.0] in boxes
    assert page.count('data-kind="hard_positive"') == 1


def test_without_the_video_the_current_frame_is_shown(tmp_path):
    mined = _mined_folder(tmp_path, with_video=False)
    summary = build_review(mined, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert _count_items(page) == 4 and summary["with_context"] == 0
    assert summary["videos_not_decoded"] == ["clip"]
    assert "previous frame" not in page and page.count('alt="current frame"') == 4


def test_cli_review(tmp_path, capsys):
    mined = _mined_folder(tmp_path)
    assert main(["review", str(mined), "--out", str(tmp_path / "page.html")]) == 0
    assert "4 items (3 hard negatives, 1 hard positives)" in capsys.readouterr().out
    assert (tmp_path / "page.html").is_file()
    with pytest.raises(SystemExit):
        main(["review", "--help"])


def test_review_of_a_folder_without_annotations(tmp_path):
    with pytest.raises(InputError, match="annotations.json"):
        build_review(tmp_path)


def _marks(mined: Path, *items: dict) -> dict:
    return {"dataset": str(mined.resolve()), "rejected": list(items)}


def test_merge_reject_drops_marked_items(tmp_path):
    mined = _mined_folder(tmp_path)
    base = _base(tmp_path)
    marks = _marks(
        mined,
        {"image_id": 1, "box": [5.0, 50.0, 22.0, 33.0], "kind": "hard_positive"},
        {"image_id": 2, "box": [40.0, 30.0, 25.0, 35.0], "kind": "hard_negative", "file_name": "images/clip/000004.jpg"},
    )
    (tmp_path / "marks.json").write_text(json.dumps(marks))
    out = tmp_path / "merged.json"
    assert main(["coco", "merge", str(base), str(mined / "annotations.json"), "--out", str(out),
                 "--reject", str(tmp_path / "marks.json")]) == 0
    merged = coco_files.load(out)
    names = [image["file_name"] for image in merged["images"]]
    assert len(names) == 2 and not any(name.endswith("000004.jpg") for name in names)  # image of the rejected HN
    assert not any(a.get("source") == "tracker" for a in merged["annotations"])  # the rejected HP label
    kept = next(image for image in merged["images"] if image["file_name"].endswith("000002.jpg"))
    assert len(kept["hard_negatives"]) == 2  # the unmarked hard negatives stay
    # without --reject everything is merged; the input is untouched
    coco_files.merge(base, mined / "annotations.json", out=tmp_path / "all.json")
    everything = coco_files.load(tmp_path / "all.json")
    assert len(everything["images"]) == 3 and sum(a.get("source") == "tracker" for a in everything["annotations"]) == 1


def test_merge_reject_refuses_marks_of_another_set(tmp_path):
    mined = _mined_folder(tmp_path)
    base = _base(tmp_path)
    marks = tmp_path / "marks.json"
    marks.write_text(json.dumps(_marks(mined, {"image_id": 1, "box": [1, 2, 3, 4], "kind": "hard_negative"})))
    with pytest.raises(InputError, match="no hard negative at"):
        coco_files.merge(base, mined / "annotations.json", out=tmp_path / "m.json", reject=[marks])
    marks.write_text(json.dumps({"rejected": [{"image_id": 1, "kind": "wrong"}]}))
    with pytest.raises(InputError, match="rejected\\[0\\]"):
        coco_files.merge(base, mined / "annotations.json", out=tmp_path / "m.json", reject=[marks])
    assert not (tmp_path / "m.json").exists()


def test_items_of_a_real_mined_set(tmp_path):
    video = shared_data("tud-campus", "video.mp4")
    detections = shared_data("tud-campus", "det", "faster_rcnn.txt")
    out = tmp_path / "m"
    assert main(["mine", str(video), "--detections", str(detections), "--rule", "support", "--mode", "hn+hp",
                 "--out", str(out)]) == 0
    coco = coco_files.load(out / "annotations.json")
    items = review_items(coco)
    expected = sum(len(i["hard_negatives"]) for i in coco["images"]) + sum(
        a["source"] == "tracker" for a in coco["annotations"])
    summary = build_review(out)
    assert summary["items"] == len(items) == expected > 0
    assert summary["with_context"] == expected  # neighbours decoded from the recorded video
    assert _count_items((out / "review.html").read_text()) == expected


# --------------------------------------------------------------------------------------------------
# a real browser: Debian's chromium, headless


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium here (apt-get install chromium): the review page's browser test needs a real browser")


def test_page_in_headless_chromium(tmp_path):
    browser = _chromium()
    mined = _mined_folder(tmp_path)
    build_review(mined)
    url = (mined / "review.html").resolve().as_uri() + "#selftest"
    run = subprocess.run(
        [browser, "--headless", "--disable-gpu", "--no-sandbox", "--virtual-time-budget=5000",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)},
    )
    found = re.search(r'<pre id="selftest">(.*?)</pre>', run.stdout, re.S)
    assert found, f"the page wrote no self-test result; chromium said: {run.stderr[-2000:]}"
    result = json.loads(html.unescape(found.group(1)))
    assert result["items"] == 4 and result["visible"] == 4
    assert result["images_loaded"] == 4 + 4 * 3  # crops, and previous/current/next of every item
    # 'j' moved to the second item, 'x' marked it
    assert result["focused"] == 1
    export = result["export"]
    assert export["dataset"] == str(mined.resolve())
    assert [(m["image_id"], m["kind"], m["box"]) for m in export["rejected"]] == [(1, "hard_negative", [60.0, 20.0, 20.0, 30.0])]
    assert result["button_export"] == export  # what "Export marks" downloads
    downloaded = tmp_path / "Downloads" / "marks.json"  # headless Chromium saves it under $HOME
    if downloaded.exists():
        assert json.loads(downloaded.read_text()) == export
    assert result["visible_at_max_score"] == 1  # only the hard positive (no score) passes min score 1
    # the export is what coco merge --reject reads
    marks = tmp_path / "marks.json"
    marks.write_text(json.dumps(export))
    merged = coco_files.merge(_base(tmp_path), mined / "annotations.json", out=tmp_path / "m.json", reject=[marks])
    assert len(merged["images"]) == 2 and not any(i["file_name"].endswith("000002.jpg") for i in merged["images"])


def test_label_flickers_and_classes(tmp_path):
    """Per-class mining's label flickers are items too (with their class), and --reject drops them."""
    mined = _mined_folder(tmp_path)
    coco = json.loads((mined / "annotations.json").read_text())
    coco["categories"].append({"id": 2, "name": "dog"})
    coco["images"][1]["label_flickers"] = [{"bbox": [70.0, 10.0, 20.0, 20.0], "score": 0.7, "category_id": 2}]
    (mined / "annotations.json").write_text(json.dumps(coco))
    build_review(mined)
    page = (mined / "review.html").read_text()
    assert _count_items(page) == 5 and page.count('data-kind="label_flicker"') == 1
    assert "class <b>dog</b>" in page and "1 label flickers" in page
    marks = tmp_path / "marks.json"
    marks.write_text(json.dumps(_marks(mined, {"image_id": 2, "box": [70, 10, 20, 20], "kind": "label_flicker"})))
    merged = coco_files.merge(_base(tmp_path), mined / "annotations.json", out=tmp_path / "m.json", reject=[marks])
    image = next(i for i in merged["images"] if i["file_name"].endswith("000004.jpg"))
    assert image["label_flickers"] == [] and len(image["hard_negatives"]) == 1
