"""The HOG + linear SVM detector: training on a small synthetic set, its model file, its errors,
and the command line around it (train, evaluate, mine with --detector hog-svm)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from flickermine._boxes import iou_matrix
from flickermine.cli import main
from flickermine.detect._hog_svm import MODEL_FORMAT, HogParams, HogSvmDetector, HogSvmModel, detect_gray_shared, window_descriptors
from flickermine.detect._registry import make_detector
from flickermine.errors import InputError
from flickermine.io._ground_truth import LabelledImage
from flickermine.train._hog_svm import HogSvmFiles, HogSvmSettings, train_hog_svm, train_hog_svm_files

from .conftest import texture

WINDOW = (64, 128)  # object region 96 px high: the planted figures are 56-72 px, upsampled
SETTINGS = HogSvmSettings(window=WINDOW, background_windows=20, bootstrap_rounds=1, seed=0)


def draw_figure(image: np.ndarray, x: int, y: int, height: int) -> list[float]:
    """A dark upright figure (a body and a head) with its top-left at x, y; returns its box x1, y1, x2, y2."""
    width = int(round(height * 0.4))
    head = width // 2
    cv2.circle(image, (x + width // 2, y + head // 2 + 1), head // 2 + 1, 20, -1)
    cv2.rectangle(image, (x + 1, y + head + 2), (x + width - 2, y + height - 1), 30, -1)
    return [float(x), float(y), float(x + width), float(y + height)]


def scene(rng: np.random.Generator, figures: int, shape=(240, 360)) -> tuple[np.ndarray, np.ndarray]:
    """A textured image with ``figures`` non-overlapping figures; returns (image, boxes (N, 4))."""
    image = (texture(rng, *shape) // 2 + 100).astype(np.uint8)
    boxes: list[list[float]] = []
    while len(boxes) < figures:
        height = int(rng.integers(56, 73))
        x, y = int(rng.integers(0, shape[1] - height)), int(rng.integers(0, shape[0] - height))
        candidate = [x - 4, y - 4, x + height * 0.4 + 4, y + height + 4]
        if boxes and iou_matrix(np.array([candidate]), np.array(boxes)).max() > 0:
            continue
        boxes.append(draw_figure(image, x, y, height))
    return image, np.array(boxes)


def write_coco(folder: Path, name: str, scenes: list[tuple[np.ndarray, np.ndarray]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    coco: dict = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "figure"}]}
    for index, (image, boxes) in enumerate(scenes, start=1):
        file_name = f"{name}_{index:03d}.png"
        cv2.imwrite(str(folder / file_name), image)
        coco["images"].append({"id": index, "file_name": file_name, "width": image.shape[1], "height": image.shape[0]})
        for x1, y1, x2, y2 in boxes.tolist():
            coco["annotations"].append(
                {"id": len(coco["annotations"]) + 1, "image_id": index, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                 "area": (x2 - x1) * (y2 - y1), "iscrowd": 0}
            )
    path = folder / f"{name}.json"
    path.write_text(json.dumps(coco))
    return path


@pytest.fixture(scope="module")
def figures_data(tmp_path_factory) -> dict:
    rng = np.random.default_rng(7)
    folder = tmp_path_factory.mktemp("figures")
    train = write_coco(folder, "train", [scene(rng, 3) for _ in range(12)])
    val = write_coco(folder, "val", [scene(rng, 2) for _ in range(4)])
    test_image, test_boxes = scene(rng, 1)
    return {"folder": folder, "train": train, "val": val, "test": (test_image, test_boxes)}


@pytest.fixture(scope="module")
def trained(figures_data, tmp_path_factory) -> tuple[HogSvmModel, Path]:
    out = tmp_path_factory.mktemp("model") / "figure.json"
    files = HogSvmFiles(train=figures_data["train"], val=figures_data["val"], out=out)
    return train_hog_svm_files(files, SETTINGS, progress=False, log=lambda line: None), out


def test_trains_on_a_synthetic_set_and_finds_a_planted_figure(figures_data, trained):
    model, _ = trained
    image, boxes = figures_data["test"]
    found = HogSvmDetector(model)([cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)])[0]
    assert len(found) >= 1
    best = int(np.argmax(found.scores))
    assert iou_matrix(found.boxes[best : best + 1], boxes)[0, 0] >= 0.5
    assert found.scores[best] > 0.5  # calibrated: the best detection is likely right
    others = np.delete(found.scores, best)
    assert (others < found.scores[best]).all()
    record = model.training
    assert record["examples"]["object boxes and mirrors"] == 2 * 36
    assert record["examples"]["random background windows"] == 12 * 20
    assert len(record["bootstrap_added"]) == 1
    assert record["calibration"]["fitted"] is True
    assert record["validation"]["AP50"] > 0.9
    assert set(record["data"]) >= {"--train", "--val", "--negatives", "--hard-positives"}


def test_the_model_round_trips_through_its_file(trained, figures_data):
    model, path = trained
    loaded = HogSvmModel.load(path)
    assert loaded.params == model.params
    assert np.array_equal(loaded.weights, model.weights) and loaded.bias == model.bias
    assert loaded.calibration == model.calibration
    assert (loaded.min_object_height, loaded.max_object_height) == (model.min_object_height, model.max_object_height)
    assert loaded.training == json.loads(json.dumps(model.training))
    payload = json.loads(path.read_text())
    assert payload["format"] == MODEL_FORMAT and payload["hog"]["window_width"] == WINDOW[0]
    # the same detections from the file, from the model, and from a pickled detector (workers)
    image = cv2.cvtColor(figures_data["test"][0], cv2.COLOR_GRAY2BGR)
    from_file = make_detector("hog-svm", weights=str(path))([image])[0]
    from_model = HogSvmDetector(model)([image])[0]
    unpickled = pickle.loads(pickle.dumps(make_detector("hog-svm", weights=str(path))))([image])[0]
    for other in (from_model, unpickled):
        assert np.array_equal(from_file.boxes, other.boxes) and np.allclose(from_file.scores, other.scores)


def test_margins_are_the_svm_on_opencv_descriptors(trained, figures_data):
    """detectMultiScale's window scores are weights . descriptor + bias on the descriptor layout
    that training computes (resampling differs a little between the two)."""
    model, _ = trained
    gray = figures_data["test"][0]
    detector = HogSvmDetector(model, min_score=0.2)
    windows, margins = detector.window_margins(gray)
    assert len(windows)
    recomputed = model.margins(window_descriptors(gray, windows[:20], model.params))
    assert np.corrcoef(recomputed, margins[:20])[0, 1] > 0.9


def opencv_scan(detector: HogSvmDetector, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The scan as OpenCV's detectMultiScale does it: windows x1, y1, x2, y2 px and margins."""
    params, scale = detector.model.params, detector._first_scale
    image = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
    block = params.block_cells * params.cell
    hog = cv2.HOGDescriptor(
        (params.window_width, params.window_height), (block, block), (params.cell, params.cell), (params.cell, params.cell),
        params.bins, 1, -1.0, cv2.HOGDescriptor_L2Hys, 0.2, False, detector._levels, False,
    )
    hog.setSVMDetector(np.append(detector.model.weights, np.float32(detector.model.bias)).astype(np.float32))
    rects, margins = hog.detectMultiScale(
        image, hitThreshold=detector._hit_margin, winStride=(detector.stride, detector.stride),
        padding=(params.cell, params.cell), scale=detector.scale_step, groupThreshold=0,
    )
    rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4) / scale
    return np.column_stack([rects[:, :2], rects[:, :2] + rects[:, 2:]]), np.asarray(margins, dtype=np.float64).reshape(-1)


@pytest.mark.parametrize("stride", [8, 4, 12])
def test_the_scan_is_opencvs_detect_multi_scale(trained, figures_data, stride):
    """Every window OpenCV's scan keeps, the same rectangle to the bit (windows past the image's
    edge cut to it) and the same margin up to float rounding, at a stride of one cell, half a cell
    and one and a half (blocks on a finer grid than the cell)."""
    model, _ = trained
    image, boxes = figures_data["test"]
    left = int(boxes[0, 0] * 1.3) + 6  # the figure cut by the image's left edge
    gray = np.ascontiguousarray(cv2.resize(image, None, fx=1.3, fy=1.3)[:, left:])
    detector = HogSvmDetector(model, min_score=0.02, stride=stride)
    windows, margins = detector.window_margins(gray)
    expected_windows, expected_margins = opencv_scan(detector, gray)
    assert len(windows) > 50 and (windows[:, 0] == 0).any()  # windows cut at the left edge among them
    ours = {tuple(window): margin for window, margin in zip(windows.tolist(), margins)}
    theirs = {tuple(window): margin for window, margin in zip(expected_windows.tolist(), expected_margins)}
    assert ours.keys() == theirs.keys()
    assert max(abs(ours[key] - theirs[key]) for key in ours) < 1e-5
    assert (np.diff(margins) <= 0).all()  # best first


def test_several_models_share_one_scan(trained, figures_data):
    """detect_gray_shared gives each model what its own detector gives; detectors that scan
    different pyramids cannot share one."""
    model, _ = trained
    gray = figures_data["test"][0]
    rng = np.random.default_rng(3)
    models = [model, model.replace(weights=model.weights + rng.normal(0, 0.02, model.weights.shape).astype(np.float32), bias=model.bias - 0.3)]
    detectors = [HogSvmDetector(each, min_score=0.1) for each in models]
    shared = detect_gray_shared(detectors, gray)
    for detector, found in zip(detectors, shared):
        alone = detector.detect_gray(gray)
        assert len(alone) and np.array_equal(found.boxes, alone.boxes) and np.array_equal(found.scores, alone.scores)
    assert not np.array_equal(shared[0].boxes, shared[1].boxes)
    with pytest.raises(InputError, match="scans another pyramid"):
        detect_gray_shared([detectors[0], HogSvmDetector(model, min_score=0.1, stride=4)], gray)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"PK\x03\x04torch zip", "a torch checkpoint, not a HOG-SVM model"),
        (b"\x80\x02pickle", "a torch checkpoint, not a HOG-SVM model"),
        (b"not json at all", "not a HOG-SVM model written by `flickermine train --model hog-svm`"),
        (b'{"images": [], "annotations": []}', "not a HOG-SVM model (format None"),
        (b'{"format": "flickermine-hog-svm/1", "hog": {"window_width": 64}}', "a damaged HOG-SVM model"),
    ],
)
def test_foreign_or_corrupt_model_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "model.json"
    path.write_bytes(content)
    with pytest.raises(InputError, match=None) as error:
        HogSvmModel.load(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_weights_that_do_not_fit_the_window_are_an_error(trained, tmp_path):
    _, path = trained
    payload = json.loads(path.read_text())
    payload["svm"]["weights"] = payload["svm"]["weights"][:-9]
    bad = tmp_path / "short.json"
    bad.write_text(json.dumps(payload))
    with pytest.raises(InputError, match="weights have .* values but the 64x128 window's descriptor has"):
        HogSvmModel.load(bad)
    with pytest.raises(InputError, match="no such HOG-SVM model file"):
        HogSvmModel.load(tmp_path / "missing.json")


def test_an_empty_training_set_is_an_error():
    with pytest.raises(InputError, match="the training set is empty"):
        train_hog_svm([], SETTINGS)
    blank = LabelledImage("blank", lambda: np.zeros((100, 100), np.uint8), np.zeros((0, 4)))
    with pytest.raises(InputError, match="no object boxes to learn from"):
        train_hog_svm([blank], SETTINGS)


def test_boxes_smaller_than_the_window_are_an_error_and_left_out_when_some_fit(rng):
    tiny = LabelledImage("tiny", lambda: texture(rng, 100, 100), np.array([[10.0, 10.0, 20.0, 30.0]]))
    with pytest.raises(InputError, match="all 1 object boxes are smaller than 48 px high.*choose a smaller window"):
        train_hog_svm([tiny], SETTINGS)
    image, boxes = scene(rng, 2)
    with_tiny = LabelledImage("mixed", lambda: image, np.concatenate([boxes, [[200.0, 10.0, 205.0, 20.0]]]))
    lines: list[str] = []
    model, _ = train_hog_svm([with_tiny], HogSvmSettings(window=WINDOW, bootstrap_rounds=0), calibration_images=(), log=lines.append)
    assert model.training["small_boxes_left_out"] == 1 and model.training["examples"]["object boxes and mirrors"] == 4
    assert any("1 boxes too small" in line for line in lines)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"window": (30, 64)}, "not a multiple of the cell size"),
        ({"window": (8, 64)}, "does not fit the 8x64 window"),
        ({"bootstrap_rounds": -1}, "bootstrap_rounds must be an integer in"),
        ({"background_windows": 10**6}, "background_windows must be an integer in"),
        ({"c": 0.0}, "c must be a positive number"),
    ],
)
def test_settings_are_bounded(changes, message):
    with pytest.raises(InputError, match=message):
        HogSvmSettings(**changes)


def test_detector_options_are_bounded(trained):
    model, _ = trained
    for options, message in (({"min_score": 1.5}, "min_score"), ({"stride": 0}, "stride"), ({"scale_step": 1.0}, "scale_step")):
        with pytest.raises(InputError, match=message):
            HogSvmDetector(model, **options)
    with pytest.raises(ValueError, match="finds only figure"):
        HogSvmDetector(model, category="person")


def test_hog_params_window_and_box_are_inverse():
    params = HogParams(48, 96, object_height=0.75, object_aspect=0.4)
    boxes = np.array([[10.0, 20.0, 38.0, 90.0]])
    windows = params.windows_of_boxes(boxes)
    assert windows[0, 3] - windows[0, 1] == pytest.approx(70 / 0.75)
    assert (windows[0, 2] - windows[0, 0]) / (windows[0, 3] - windows[0, 1]) == pytest.approx(0.5)
    back = params.boxes_of_windows(windows)
    assert back[0, 3] - back[0, 1] == pytest.approx(70) and (back[0, 2] - back[0, 0]) == pytest.approx(28)
    assert back[:, [0, 2]].mean() == pytest.approx(boxes[:, [0, 2]].mean())


# --------------------------------------------------------------------------------------------------
# command line


@pytest.mark.slow
def test_cli_trains_evaluates_and_mines_with_the_model(figures_data, tmp_path, capsys):
    model_path = tmp_path / "figure.json"
    code = main([
        "train", "--model", "hog-svm", "--train", str(figures_data["train"]), "--val", str(figures_data["val"]),
        "--background-windows", "20", "--out", str(model_path), "--quiet",
    ])
    assert code == 0 and model_path.is_file()
    assert "HOG-SVM for 'figure', 64x128 window" in capsys.readouterr().out

    out, curves = tmp_path / "ap.json", tmp_path / "curves.png"
    code = main([
        "evaluate", "--coco", str(figures_data["val"]), "--detector", "hog-svm", "--weights", str(model_path),
        "--out", str(out), "--curves", str(curves), "--quiet",
    ])
    assert code == 0
    summary = json.loads(out.read_text())
    assert summary["AP50"] > 0.9 and 0 <= summary["lamr"] < 0.5
    assert summary["detector"]["name"] == "hog-svm" and summary["detector"]["weights"] == str(model_path)
    assert cv2.imread(str(curves)) is not None

    # a clip of the test scene with the figure walking: mine it with the model as detector
    image, boxes = figures_data["test"]
    clip = tmp_path / "clip"
    clip.mkdir()
    for index in range(12):
        frame = np.roll(image, 2 * index, axis=1)
        cv2.imwrite(str(clip / f"{index:04d}.png"), frame)
    code = main([
        "mine", str(clip), "--detector", "hog-svm", "--weights", str(model_path), "--out", str(tmp_path / "mined"),
        "--score-threshold", "0.3", "--min-area", "0", "--border", "0", "--quiet",
    ])
    assert code == 0
    report = json.loads((tmp_path / "mined" / "report.json").read_text())
    assert report["videos"][0]["detections"] >= 12


def test_val_images_default_to_the_val_files_folder(figures_data, tmp_path, capsys):
    """Train and val sets in folders of their own (what `coco from-mot` writes): without
    --images or --val-images, each file's images are found beside it."""
    rng = np.random.default_rng(11)
    val = write_coco(tmp_path / "val", "heldout", [scene(rng, 2) for _ in range(3)])
    model_path = tmp_path / "figure.json"
    code = main(["train", "--model", "hog-svm", "--train", str(figures_data["train"]), "--val", str(val),
                 "--out", str(model_path), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(model_path.read_text())["training"]["data"]["--val"]["path"] == str(val.resolve())


def test_cli_refuses_options_of_the_other_kind_of_model(figures_data, tmp_path, capsys):
    code = main(["train", "--model", "hog-svm", "--train", str(figures_data["train"]), "--iterations", "10", "--out", str(tmp_path / "m.json")])
    assert code == 2 and "--model hog-svm does not take --iterations" in capsys.readouterr().err
    code = main(["train", "--train", str(figures_data["train"]), "--bootstrap-rounds", "2", "--out", str(tmp_path / "run")])
    assert code == 2 and "--bootstrap-rounds: options of --model hog-svm" in capsys.readouterr().err
    code = main(["mine", str(figures_data["folder"]), "--detector", "hog-svm", "--out", str(tmp_path / "o")])
    assert code == 2 and "needs --weights MODEL" in capsys.readouterr().err
    code = main(["train", "--model", "hog-svm", "--train", str(figures_data["train"]), "--negatives", str(tmp_path / "none"), "--out", str(tmp_path / "m.json")])
    assert code == 2 and "--negatives" in capsys.readouterr().err and not (tmp_path / "m.json").exists()
