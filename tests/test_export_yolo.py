"""``flickermine export DIR --to yolo``: a mined dataset in Ultralytics' layout (flickermine.io._yolo)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flickermine.cli import main
from flickermine.errors import InputError
from flickermine.io._yolo import data_yaml, export_yolo, yolo_line

from .conftest import shared_data


def _mine(out: Path, detections: str, *extra: str) -> Path:
    video = shared_data("tud-campus", "video.mp4")
    dets = shared_data("tud-campus", "det", detections)
    code = main(["mine", str(video), "--detections", str(dets), "--rule", "support", "--out", str(out), "--quiet", *extra])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def mined(tmp_path_factory) -> Path:
    """The README's tud-campus run: every kept frame has labels."""
    return _mine(tmp_path_factory.mktemp("mined") / "DIR", "faster_rcnn.txt")


@pytest.fixture(scope="module")
def mined_with_backgrounds(tmp_path_factory) -> Path:
    """--mode negatives on the frontal-face cascade: frames kept for their hard negatives alone."""
    return _mine(
        tmp_path_factory.mktemp("mined_bg") / "DIR", "opencv_haar_frontalface_default.txt",
        "--mode", "negatives", "--score-threshold=-1e9", "--sure-score", "1e9",
    )


def _parse_yaml(text: str) -> dict:
    """PyYAML where installed; else a reader of the subset data_yaml writes (``key: value`` lines,
    values plain words, integers or double-quoted strings, and the indented ``names`` mapping)."""
    try:
        import yaml
    except ImportError:
        return _parse_yaml_subset(text)
    return yaml.safe_load(text)


def _parse_yaml_subset(text: str) -> dict:
    data: dict = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, rest = line.strip().partition(":")
        rest = rest.strip()
        if rest.startswith('"'):
            value, _ = json.JSONDecoder().raw_decode(rest)
        else:
            word = rest.split(" #")[0].strip()
            value = int(word) if word.isdigit() else (word or {})
        if line.startswith("  "):
            data["names"][int(key)] = value
        else:
            data[key] = value
    return data


def _check_round_trip(dataset: Path, out: Path) -> tuple[int, int]:
    result = export_yolo(dataset, out)
    coco = json.loads((dataset / "annotations.json").read_text())
    images = {i["id"]: i for i in coco["images"]}
    per_image = {i: 0 for i in images}
    for annotation in coco["annotations"]:
        per_image[annotation["image_id"]] += 1

    label_files = sorted((out / "labels").glob("*.txt"))
    image_files = sorted((out / "images").iterdir())
    assert len(label_files) == len(image_files) == len(images) == result.images
    assert {p.stem for p in label_files} == {p.stem for p in image_files}

    counts: dict[str, int] = {}
    for path in label_files:
        lines = path.read_text().splitlines()
        counts[path.stem] = len(lines)
        for line in lines:
            fields = line.split()
            assert len(fields) == 5, line
            assert int(fields[0]) == 0
            values = [float(v) for v in fields[1:]]
            assert all(0.0 <= v <= 1.0 for v in values), line
            assert values[2] > 0 and values[3] > 0
    # counts match annotations.json, image by image
    for image_id, image in images.items():
        stem = Path(image["file_name"].replace("images/", "", 1).replace("/", "_")).stem
        assert counts[stem] == per_image[image_id]
        assert (out / "images" / f"{stem}.jpg").read_bytes() == (dataset / image["file_name"]).read_bytes()
    assert sum(counts.values()) == len(coco["annotations"]) == result.boxes
    backgrounds = [stem for stem, n in counts.items() if n == 0]
    assert len(backgrounds) == result.backgrounds
    for stem in backgrounds:
        assert (out / "labels" / f"{stem}.txt").read_bytes() == b""

    data = _parse_yaml((out / "data.yaml").read_text())
    assert Path(data["path"]) == out.resolve()
    assert data["train"] == data["val"] == "images"
    assert data["names"] == {0: coco["categories"][0]["name"]}
    assert data["nc"] == 1
    return result.boxes, result.backgrounds


def test_round_trip_of_a_mined_folder(mined, tmp_path):
    boxes, backgrounds = _check_round_trip(mined, tmp_path / "yolo")
    assert boxes > 0 and backgrounds == 0


def test_background_images_keep_empty_label_files(mined_with_backgrounds, tmp_path):
    boxes, backgrounds = _check_round_trip(mined_with_backgrounds, tmp_path / "yolo")
    assert backgrounds > 0 and boxes > 0


def test_a_label_line_matches_its_coco_box(mined, tmp_path):
    export_yolo(mined, tmp_path / "yolo")
    coco = json.loads((mined / "annotations.json").read_text())
    image = coco["images"][0]
    boxes = [a["bbox"] for a in coco["annotations"] if a["image_id"] == image["id"]]
    stem = Path(image["file_name"]).parent.name + "_" + Path(image["file_name"]).stem
    lines = (tmp_path / "yolo" / "labels" / f"{stem}.txt").read_text().splitlines()
    for (x, y, w, h), line in zip(boxes, lines):
        _, xc, yc, bw, bh = (float(v) for v in line.split())
        assert xc * image["width"] == pytest.approx(x + w / 2, abs=1e-3)
        assert yc * image["height"] == pytest.approx(y + h / 2, abs=1e-3)
        assert bw * image["width"] == pytest.approx(w, abs=1e-3)
        assert bh * image["height"] == pytest.approx(h, abs=1e-3)


def test_the_cli_refuses_a_non_empty_out_and_overwrites_nothing(mined, tmp_path, capsys):
    out = tmp_path / "yolo"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["export", str(mined), "--to", "yolo", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    # an empty folder is fine; no temporary folder is left beside it
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", str(mined), "--to", "yolo", "--out", str(empty)]) == 0
    assert "written to" in capsys.readouterr().out
    assert (empty / "data.yaml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "yolo"]


def test_the_cli_refuses_a_folder_without_annotations(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--to", "yolo", "--out", str(tmp_path / "y")]) == 2
    assert "annotations.json" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_boxes_are_clipped_and_normalised():
    assert yolo_line(2, [10, 20, 30, 40], 100, 200) == "2 0.250000 0.200000 0.300000 0.200000"
    assert yolo_line(0, [-10, -10, 20, 20], 100, 100) == "0 0.050000 0.050000 0.100000 0.100000"
    assert yolo_line(0, [120, 0, 10, 10], 100, 100) is None


def test_data_yaml_quotes_names(tmp_path):
    text = data_yaml(tmp_path, {0: "person", 1: 'a: "b" # c'})
    for data in (_parse_yaml(text), _parse_yaml_subset(text)):
        assert data["names"] == {0: "person", 1: 'a: "b" # c'}
        assert data["path"] == str(tmp_path) and data["nc"] == 2 and data["val"] == "images"


def test_many_categories_crowd_and_boxes_outside(tmp_path):
    """Classes in order of category id from 0; crowd labels skipped; a box outside its image
    dropped, one partly outside clipped; colliding flat names kept apart."""
    import cv2
    import numpy as np

    dataset = tmp_path / "DIR"
    for name in ("images/a/x.jpg", "images/a_x.jpg", "images/b/y.png"):
        (dataset / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dataset / name), np.zeros((50, 100, 3), np.uint8))
    images = [
        {"id": 1, "file_name": "images/a/x.jpg", "width": 100, "height": 50},
        {"id": 2, "file_name": "images/a_x.jpg", "width": 100, "height": 50},
        {"id": 3, "file_name": "images/b/y.png", "width": 100, "height": 50},
    ]
    box = {"area": 1, "iscrowd": 0}
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 10, 20, 20], **box},
        {"id": 2, "image_id": 1, "category_id": 3, "bbox": [90, 40, 20, 20], **box},  # clipped
        {"id": 3, "image_id": 2, "category_id": 3, "bbox": [200, 10, 5, 5], **box},  # outside: dropped
        {"id": 4, "image_id": 3, "category_id": 7, "bbox": [0, 0, 10, 10], "area": 1, "iscrowd": 1},
    ]
    categories = [{"id": 7, "name": "car"}, {"id": 3, "name": "person"}]
    (dataset / "annotations.json").write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))

    result = export_yolo(dataset, tmp_path / "yolo")
    assert result.names == {0: "person", 1: "car"}
    assert (result.images, result.boxes, result.backgrounds, result.dropped, result.crowd) == (3, 2, 2, 1, 1)
    labels = {p.name: p.read_text() for p in (tmp_path / "yolo" / "labels").iterdir()}
    assert sorted(labels) == ["a_x.txt", "a_x_2.txt", "b_y.txt"]
    assert labels["a_x.txt"] == "1 0.200000 0.400000 0.200000 0.400000\n0 0.950000 0.900000 0.100000 0.200000\n"
    assert labels["a_x_2.txt"] == labels["b_y.txt"] == ""
    assert sorted(p.name for p in (tmp_path / "yolo" / "images").iterdir()) == ["a_x.jpg", "a_x_2.jpg", "b_y.png"]
    assert _parse_yaml((tmp_path / "yolo" / "data.yaml").read_text())["names"] == {0: "person", 1: "car"}
    assert "1 boxes outside their image dropped" in result.line()


def test_a_missing_image_fails_before_anything_is_written(mined, tmp_path):
    import shutil

    copy = tmp_path / "DIR"
    shutil.copytree(mined, copy)
    first = json.loads((copy / "annotations.json").read_text())["images"][0]["file_name"]
    (copy / first).unlink()
    with pytest.raises(InputError, match="missing"):
        export_yolo(copy, tmp_path / "yolo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DIR"]
