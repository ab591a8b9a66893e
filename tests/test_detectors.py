"""Detectors behind one protocol: the result type, the callable wrapper, OpenCV's built-ins on real
frames (checked against the detection files in ../shared/data) and torchvision's Faster R-CNN
(random weights, tiny inputs: plumbing, not quality)."""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from flickermine.detect._detections import CallableDetector, Detections, Detector
from flickermine.detect._opencv import OpenCVHaarDetector, OpenCVHOGPeopleDetector, raw_to_score, score_to_raw
from flickermine.detect._registry import DETECTOR_NAMES, detector_info, make_detector
from flickermine.detect._torchvision import COCO_CATEGORIES, resolve_coco_category
from flickermine.errors import MissingExtraError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PETS = SHARED_DATA / "pets09-s2l1"


def random_frames(count: int = 2, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = [(120, 160, 3), (100, 90, 3), (64, 64, 3)]
    return [rng.integers(0, 256, shapes[i % len(shapes)], dtype=np.uint8) for i in range(count)]


# ---------------------------------------------------------------------------------------------
# Detections and the protocol


def test_detections_converts_and_defaults_labels():
    result = Detections([[1, 2, 3, 4], [0, 0, 10, 20]], [0.5, 1], None)
    assert result.boxes.dtype == np.float64 and result.boxes.shape == (2, 4)
    assert result.scores.dtype == np.float64 and result.labels.dtype == np.int64
    assert result.labels.tolist() == [1, 1] and len(result) == 2
    assert not result.boxes.flags.writeable
    empty = Detections([], [])
    assert empty.boxes.shape == (0, 4) and empty.scores.shape == (0,) and empty.labels.shape == (0,)
    assert len(Detections.empty()) == 0


@pytest.mark.parametrize(
    ("boxes", "scores", "labels", "message"),
    [
        ([1.0, 2.0, 3.0], [0.5], None, r"boxes must have shape \(N, 4\).*got shape \(3,\)"),
        ([[1, 2, 3, 4]], [0.5, 0.6], None, r"scores must have shape \(1,\).*got shape \(2,\)"),
        ([[1, 2, np.nan, 4]], [0.5], None, r"boxes\[0\].*NaN"),
        ([[5, 2, 3, 4]], [0.5], None, r"boxes\[0\].*inverted"),
        ([[1, 2, 3, 4]], [np.inf], None, r"scores\[0\].*not finite"),
        ([[1, 2, 3, 4]], [0.5], [1, 2], r"labels must have shape \(1,\)"),
        ([[1, 2, 3, 4]], [0.5], [1.5], r"labels must be integer"),
    ],
)
def test_detections_validation(boxes, scores, labels, message):
    with pytest.raises(ValueError, match=message):
        Detections(np.asarray(boxes), np.asarray(scores), None if labels is None else np.asarray(labels))


def test_score_mapping_is_the_standard_logistic():
    raw = np.array([-800.0, -2.0, 0.0, np.log(4.0), 3.0, 800.0])
    score = raw_to_score(raw)
    assert np.allclose(score, [0.0, 1 / (1 + np.exp(2.0)), 0.5, 0.8, 1 / (1 + np.exp(-3.0)), 1.0])
    assert np.allclose(score_to_raw(score[1:-1]), raw[1:-1])


# ---------------------------------------------------------------------------------------------
# any callable


def test_callable_detector_per_frame_and_batched():
    def per_frame(frame):
        h, w = frame.shape[:2]
        return np.array([[0, 0, w / 2, h / 2]]), np.array([0.9]), np.array([3])

    detector = CallableDetector(per_frame, name="halves", batch_size=2, category_names={3: "thing"})
    assert isinstance(detector, Detector)
    frames = random_frames(3)
    results = detector(frames)
    assert [r.boxes.tolist() for r in results] == [[[0, 0, 80, 60]], [[0, 0, 45, 50]], [[0, 0, 32, 32]]]
    assert all(r.labels.tolist() == [3] for r in results)

    batched = CallableDetector(
        lambda fs: [{"boxes": [[1, 1, 5, 5]], "scores": [0.7]} for _ in fs], name="dicts", batched=True
    )
    assert [len(r) for r in batched(frames)] == [1, 1, 1]
    assert batched([]) == []
    info = detector_info(detector)
    assert info["name"] == "halves" and info["model"] == "callable" and "per_frame" in info["function"]
    json.dumps(info)


@pytest.mark.parametrize(
    ("output", "error", "message"),
    [
        ((np.zeros(4), np.zeros(1)), ValueError, r"shape \(N, 4\)"),
        ((np.array([[0, 0, np.nan, 1]]), np.ones(1)), ValueError, "NaN"),
        ((np.array([[10, 0, 5, 8]]), np.ones(1)), ValueError, "inverted"),
        ((np.array([[0, 0, 5, 8]]), np.ones(2)), ValueError, r"scores must have shape \(1,\)"),
        ((np.array([[0, 0, 5, 8]]),), TypeError, "expected \\(boxes, scores\\)"),
        ("boxes", TypeError, "expected \\(boxes, scores\\)"),
    ],
)
def test_callable_detector_errors_name_detector_and_frame(output, error, message):
    frames = random_frames(3)

    def sometimes_bad(frame):
        if frame is frames[1]:
            return output
        return np.array([[0, 0, 5, 8]]), np.array([0.4])

    detector = CallableDetector(sometimes_bad, name="flaky")
    with pytest.raises(error, match=message) as info:
        detector(frames)
    assert "detector 'flaky', frame 1 of a batch of 3" in str(info.value)


def test_callable_detector_batched_count_and_frame_checks():
    detector = CallableDetector(lambda fs: [(np.zeros((0, 4)), np.zeros(0))], name="short", batched=True)
    with pytest.raises(ValueError, match="'short' returned 1 results for a batch of 2"):
        detector(random_frames(2))
    with pytest.raises(ValueError, match=r"frame 0: expected an \(H, W, 3\) BGR image, got shape \(10, 10\)"):
        detector([np.zeros((10, 10), np.uint8)])
    with pytest.raises(TypeError, match="takes a list of frames"):
        detector(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(TypeError, match="needs a callable"):
        CallableDetector(42)
    with pytest.raises(ValueError, match="batch_size"):
        CallableDetector(len, batch_size=0)


# ---------------------------------------------------------------------------------------------
# OpenCV built-ins on real frames


@pytest.fixture(scope="module")
def pets_frame() -> np.ndarray:
    """Frame 1 (index 0) of pets09-s2l1, decoded like the pipeline does: in order, BGR."""
    import cv2

    path = PETS / "video.avi"
    if not path.exists():
        pytest.skip(f"real data not found at {path} (../shared/data is absent outside the project workspace)")
    capture = cv2.VideoCapture(str(path))
    ok, frame = capture.read()
    capture.release()
    assert ok, f"cannot decode {path}"
    return frame


def file_boxes(name: str, frame: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """x1,y1,x2,y2 boxes and raw scores of ``frame`` in a MOT det file of pets09-s2l1."""
    rows = np.loadtxt(PETS / "det" / name, delimiter=",", ndmin=2)
    rows = rows[rows[:, 0] == frame]
    boxes = np.column_stack([rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]])
    return boxes, rows[:, 6]


def sorted_rows(boxes: np.ndarray, raw: np.ndarray) -> np.ndarray:
    rows = np.column_stack([boxes, raw])
    return rows[np.lexsort(rows[:, :4].T[::-1])]


@pytest.mark.parametrize(("scale", "det_file", "digits"), [(1.0, "opencv_hog.txt", 0), (1.5, "opencv_hog_x1.5.txt", 1)])
def test_hog_reproduces_the_detection_files(pets_frame, scale, det_file, digits):
    detector = OpenCVHOGPeopleDetector(scale=scale)
    (result,) = detector([pets_frame])
    assert len(result) >= 2
    assert ((result.scores >= 0) & (result.scores <= 1)).all()
    assert (result.labels == 1).all() and detector.category_names == {1: "person"}
    expected = sorted_rows(*file_boxes(det_file))
    got = sorted_rows(result.boxes, score_to_raw(result.scores))
    # same settings at the same size give the same boxes (the files keep 1 decimal) and SVM margins
    assert got.shape == expected.shape
    tolerance = 2 * 0.5 * 10.0**-digits + 1e-6 if digits else 1e-6  # x2 = x + w: two roundings
    assert np.allclose(got[:, :4], expected[:, :4], atol=tolerance), (got, expected)
    assert np.allclose(got[:, 4], expected[:, 4], atol=1e-4)


@pytest.mark.parametrize("cascade", ["fullbody", "upperbody"])
def test_haar_reproduces_the_detection_files(pets_frame, cascade):
    detector = make_detector(f"opencv-haar-{cascade}")
    assert isinstance(detector, OpenCVHaarDetector) and isinstance(detector, Detector)
    (result,) = detector([pets_frame])
    assert len(result) >= 1
    assert ((result.scores >= 0) & (result.scores <= 1)).all()
    expected = sorted_rows(*file_boxes(f"opencv_haar_{cascade}.txt"))
    got = sorted_rows(result.boxes, score_to_raw(result.scores))
    assert got.shape == expected.shape
    assert np.allclose(got[:, :4], expected[:, :4])
    assert np.allclose(got[:, 4], expected[:, 4], atol=1e-4)


def test_opencv_detectors_batches_pickling_and_info(pets_frame):
    small = pets_frame[::2, ::2].copy()
    for name in ("opencv-hog", "opencv-haar-fullbody"):
        detector = make_detector(name, batch_size=2, category="person")
        assert detector.batch_size == 2
        clone = pickle.loads(pickle.dumps(detector))  # worker processes get detectors by pickle
        results = clone([small, pets_frame[:40, :40].copy()])
        assert len(results) == 2
        for frame, result in zip([small, pets_frame[:40, :40]], results):
            height, width = frame.shape[:2]
            assert (result.boxes[:, [0, 1]] >= 0).all() and (result.boxes[:, 2] <= width).all()
            assert (result.boxes[:, 3] <= height).all()
        info = detector_info(detector)
        assert info["name"] == name and info["weights"] is None and info["category"] == "person"
        assert "1 / (1 + exp(-raw))" in info["score"]
        json.dumps(info)


def test_make_detector_names_and_errors():
    for name in DETECTOR_NAMES:
        if name.startswith("opencv-"):
            assert make_detector(name).category_names[1] in ("person", "face", "cat face")
    assert make_detector("opencv-haar-frontalface").category_names == {1: "face"}
    with pytest.raises(ValueError, match=r"unknown detector 'opencv-hgo' \(did you mean opencv-hog.*choose one of"):
        make_detector("opencv-hgo")
    with pytest.raises(ValueError, match="fasterrcnn_resnet50_fpn"):
        make_detector("yolo")
    with pytest.raises(ValueError, match="takes no weights"):
        make_detector("opencv-hog", weights="model.pth")
    with pytest.raises(ValueError, match="CPU only"):
        make_detector("opencv-hog", device="cuda")
    with pytest.raises(ValueError, match="finds only person; it cannot keep category 'dog'"):
        make_detector("opencv-haar-fullbody", category="dog")
    with pytest.raises(ValueError, match="unknown Haar cascade 'fulbody'"):
        OpenCVHaarDetector("fulbody")


def test_coco_categories_resolve_without_torch():
    assert len(COCO_CATEGORIES) == 80
    assert resolve_coco_category("person") == 1
    assert resolve_coco_category("Dog") == 18
    assert resolve_coco_category("train") == 7
    assert resolve_coco_category("traffic_light") == 10
    assert resolve_coco_category(18) == 18 and resolve_coco_category("18") == 18
    with pytest.raises(ValueError, match=r"unknown COCO category 'persn'; did you mean 'person'"):
        resolve_coco_category("persn")
    with pytest.raises(ValueError, match="not a COCO category id"):
        resolve_coco_category(12)  # an unused id


def test_missing_torch_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'flickermine\[torch\]'") as info:
        make_detector("fasterrcnn_mobilenet_v3_large_fpn")
    assert isinstance(info.value, ImportError)


# ---------------------------------------------------------------------------------------------
# torchvision Faster R-CNN: random weights, tiny inputs (plumbing, not quality)

TINY = {"min_size": 64, "max_size": 96, "weights_backbone": None, "device": "cpu"}
MOBILENET = "fasterrcnn_mobilenet_v3_large_fpn"


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    return torch


def check_results(results, frames, category_names):
    assert len(results) == len(frames)
    for frame, result in zip(frames, results):
        assert isinstance(result, Detections)
        assert result.boxes.dtype == np.float64 and result.boxes.shape == (len(result), 4)
        assert result.scores.dtype == np.float64 and result.labels.dtype == np.int64
        height, width = frame.shape[:2]
        assert (result.boxes[:, :2] >= 0).all() and (result.boxes[:, 2] <= width).all() and (result.boxes[:, 3] <= height).all()
        assert ((result.scores >= 0) & (result.scores <= 1)).all()
        assert set(result.labels.tolist()) <= set(category_names)


@pytest.mark.slow
def test_fasterrcnn_resnet50_plumbing(torch):
    detector = make_detector(
        "fasterrcnn_resnet50_fpn", weights=None, batch_size=2, score_threshold=0.0,
        model_options={"rpn_post_nms_top_n_test": 100, "detections_per_img": 20}, **TINY,
    )
    assert isinstance(detector, Detector) and detector.batch_size == 2
    frames = random_frames(2)
    results = detector(frames)
    check_results(results, frames, COCO_CATEGORIES)
    assert sum(len(r) for r in results) > 0  # threshold 0 keeps something even from random weights
    info = detector_info(detector)
    assert info["model"].endswith("fasterrcnn_resnet50_fpn") and info["weights"] is None and info["category"] is None
    json.dumps(info)


@pytest.mark.slow
def test_category_keeps_only_that_class(torch):
    frames = random_frames(2, seed=1)
    torch.manual_seed(0)
    everything = make_detector(MOBILENET, score_threshold=0.0, **TINY)(frames)
    labels = Counter(int(label) for result in everything for label in result.labels)
    assert labels, "random weights at threshold 0 gave no boxes at all"
    common = labels.most_common(1)[0][0]
    for category in (COCO_CATEGORIES[common], "person"):
        torch.manual_seed(0)  # the same random weights
        detector = make_detector(MOBILENET, score_threshold=0.0, category=category, **TINY)
        kept = detector(frames)
        wanted = resolve_coco_category(category)
        for all_boxes, result in zip(everything, kept):
            mask = all_boxes.labels == wanted
            assert (result.labels == wanted).all()
            assert np.allclose(result.boxes, all_boxes.boxes[mask]) and np.allclose(result.scores, all_boxes.scores[mask])
    assert detector.category == "person" and detector_info(detector)["category"] == "person"


def test_unknown_category_is_a_clear_error(torch):
    with pytest.raises(ValueError, match=r"unknown COCO category 'pedestrain'.*\(the 80 COCO names"):
        make_detector(MOBILENET, category="pedestrain", **TINY)
    with pytest.raises(ValueError, match="did you mean 'dog'"):
        make_detector(MOBILENET, category="dgo", **TINY)


@pytest.fixture(scope="module")
def two_class_model(torch):
    """A random fasterrcnn_mobilenet_v3_large_fpn with 2 classes (one category + background)."""
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

    torch.manual_seed(1)
    return fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=2, box_score_thresh=0.0, min_size=64, max_size=96
    ).eval()


@pytest.mark.parametrize("layout", ["state_dict", pytest.param("checkpoint-model", marks=pytest.mark.slow)])
def test_two_class_state_dict_loads(torch, tmp_path, two_class_model, layout):
    state = two_class_model.state_dict()
    saved = {
        "state_dict": state,
        # what torchvision's references/detection/train.py saves
        "checkpoint-model": {"model": state, "optimizer": {}, "epoch": 3, "args": argparse.Namespace(lr=0.02)},
    }[layout]
    path = tmp_path / "dog.pth"
    torch.save(saved, path)
    detector = make_detector(MOBILENET, weights=str(path), category="dog", score_threshold=0.0, batch_size=2, **TINY)
    assert detector.category_names == {1: "dog"} and detector.num_classes == 2
    frames = random_frames(2, seed=2)
    results = detector(frames)
    check_results(results, frames, {1: "dog"})
    # the wrapper feeds the network RGB floats in [0, 1]: same outputs as calling it directly
    with torch.inference_mode():
        direct = two_class_model([torch.from_numpy(f[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255 for f in frames])
    for result, expected in zip(results, direct):
        assert np.allclose(result.boxes, expected["boxes"].numpy(), atol=1e-3)
        assert np.allclose(result.scores, expected["scores"].numpy(), atol=1e-5)
    info = detector_info(detector)
    assert info["weights"] == str(path) and info["category"] == "dog" and info["labels"] == {"1": "dog"}


def test_checkpoint_layouts(torch, tmp_path):
    from flickermine.detect._torchvision import load_state_dict

    tensor = torch.arange(3.0)
    for saved in ({"state_dict": {"module.a": tensor}}, {"model": {"a": tensor}, "epoch": 1}, {"a": tensor}):
        torch.save(saved, tmp_path / "w.pth")
        loaded = load_state_dict(tmp_path / "w.pth")
        assert list(loaded) == ["a"] and torch.equal(loaded["a"], tensor)  # DDP's "module." prefix removed
    torch.save(torch.nn.Linear(2, 2), tmp_path / "pickled_module.pth")
    with pytest.raises(ValueError, match="save model.state_dict"):
        load_state_dict(tmp_path / "pickled_module.pth")


def test_weights_that_do_not_fit_are_clear_errors(torch, tmp_path, two_class_model):
    # only the box predictor matters for the class count: the check comes before the model is built
    five = tmp_path / "five.pth"
    torch.save(
        {
            "roi_heads.box_predictor.cls_score.weight": torch.zeros(5, 1024),
            "roi_heads.box_predictor.bbox_pred.weight": torch.zeros(20, 1024),
            "backbone.body.0.0.weight": torch.zeros(1),
        },
        five,
    )
    with pytest.raises(ValueError, match=r"five.pth: the weights have 5 classes.*category 'dog' needs 91 .* or 2"):
        make_detector(MOBILENET, weights=str(five), category="dog", **TINY)

    mobilenet = tmp_path / "mobilenet.pth"
    torch.save(two_class_model.state_dict(), mobilenet)
    with pytest.raises(ValueError, match="weights are for fasterrcnn_mobilenet_v3_large_fpn, not fasterrcnn_resnet50_fpn"):
        make_detector("fasterrcnn_resnet50_fpn", weights=str(mobilenet), category="dog", **TINY)

    not_weights = tmp_path / "junk.pth"
    torch.save({"roi_heads": [1, 2]}, not_weights)
    with pytest.raises(ValueError, match="not a torchvision Faster R-CNN state dict"):
        make_detector(MOBILENET, weights=str(not_weights), **TINY)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        make_detector(MOBILENET, weights=str(tmp_path / "missing.pth"), **TINY)
    with pytest.raises(ValueError, match="either weights=PATH or named_weights=True"):
        make_detector(MOBILENET, weights=str(mobilenet), named_weights=True)


def _no_download(monkeypatch):
    """torchvision's downloader, made to fail the test if anything calls it for a missing file."""
    import torch.hub

    real = torch.hub.load_state_dict_from_url

    def cache_only(url, model_dir=None, *args, **kwargs):
        cached = Path(model_dir or Path(torch.hub.get_dir()) / "checkpoints") / Path(url).name
        assert cached.is_file(), f"flickermine asked torchvision to download {url}"
        return real(url, model_dir, *args, **kwargs)

    import torchvision.models._api as api

    monkeypatch.setattr(api, "load_state_dict_from_url", cache_only)


def test_named_weights_come_from_torchs_cache_never_downloaded(torch, tmp_path, monkeypatch):
    """``named_weights`` / ``--torchvision-weights`` read torchvision's file from torch's hub cache
    (TORCH_HOME); a file missing there is an InputError naming the file and the URL, before
    torchvision is asked to download anything."""
    from torchvision.models import get_model_weights
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

    from flickermine.errors import InputError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    _no_download(monkeypatch)
    url = get_model_weights(MOBILENET).verify("DEFAULT").url
    cached = tmp_path / "torch-home" / "hub" / "checkpoints" / Path(url).name
    with pytest.raises(InputError, match="not in torch's cache") as missing:
        make_detector(MOBILENET, named_weights=True, **TINY)
    message = str(missing.value)
    assert str(cached) in message and url in message and "--weights PATH" in message and "\n" not in message
    with pytest.raises(InputError, match=r"no torchvision weights named 'COCO_V9'.*known: DEFAULT, COCO_V1"):
        make_detector(MOBILENET, named_weights="COCO_V9", **TINY)
    with pytest.raises(InputError, match=r"\(its backbone\) are not in torch's cache.*mobilenet_v3_large-"):
        make_detector(MOBILENET, **{**TINY, "weights_backbone": "DEFAULT"})

    # The file in the cache (here: random weights standing in for torchvision's): loaded as it is.
    torch.manual_seed(3)
    stand_in = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None).state_dict()
    cached.parent.mkdir(parents=True)
    torch.save(stand_in, cached)
    detector = make_detector(MOBILENET, named_weights="COCO_V1", **TINY)
    loaded = detector._net.state_dict()
    key = "roi_heads.box_predictor.cls_score.weight"
    assert loaded[key].shape == (91, 1024) and torch.equal(loaded[key], stand_in[key])
    assert detector_info(detector)["weights"] == "torchvision COCO_V1"


def test_cli_never_runs_untrained_weights_unasked(tmp_path, capsys):
    """`--detector fasterrcnn_*` needs --weights, --torchvision-weights or --random-weights;
    the check comes before any model is built or frame read (torch is not needed for it)."""
    from flickermine.cli._options import _detector_factory
    from flickermine.cli import build_parser, main

    images = tmp_path / "frames"
    images.mkdir()
    out = tmp_path / "dets"
    assert main(["detect", str(images), "--detector", MOBILENET, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "needs its weights: --weights PATH" in err and "--random-weights" in err
    assert not out.exists()
    assert main(["detect", str(images), "--detector", "opencv-hog", "--random-weights", "--out", str(out)]) == 2
    assert "apply to torchvision detectors only" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: the three are mutually exclusive
        build_parser().parse_args(["detect", "v", "--detector", MOBILENET, "--weights", "w.pt", "--random-weights", "--out", "o"])
    capsys.readouterr()

    def factory(*extra):
        return _detector_factory(build_parser().parse_args(["detect", "v", "--detector", MOBILENET, "--out", "o", *extra]))

    assert factory("--torchvision-weights", "COCO_V1").keywords["named_weights"] == "COCO_V1"
    assert "named_weights" not in factory("--random-weights").keywords
    assert factory("--weights", "w.pt").keywords["weights"] == "w.pt"


@pytest.mark.real_data
def test_a_coco_detector_mines_every_category(torch, tmp_path):
    """Mining is per class: a COCO detector needs no --category; the COCO output lists every
    category of the detector when its detections carry several labels (one category else)."""
    import functools

    from flickermine.dataset._writer import RunConfig
    from flickermine.detect._torchvision import COCO_CATEGORIES
    from flickermine.mining._params import MiningParams
    from flickermine.runner._mine_job import check_one_category
    from flickermine.runner._mine_run import run_mining

    from .conftest import shared_data

    factory = functools.partial(make_detector, MOBILENET, **TINY)
    out = tmp_path / "out"
    config = RunConfig(params=MiningParams(score_threshold=0.0))
    result = run_mining([shared_data("tud-campus", "video.mp4")], out, config, detector_factory=factory, progress=False)
    assert result.exit_code == 0
    coco = json.loads((out / "annotations.json").read_text())
    names = [c["name"] for c in coco["categories"]]
    assert names == ["object"] or sorted(names) == sorted(COCO_CATEGORIES.values())
    check_one_category(factory(category="person"))  # still callable: refuses nothing


def test_opencv_hog_on_frames_smaller_than_its_window_finds_nothing_and_does_not_crash():
    """OpenCV's detectMultiScale can segfault on an image smaller than the 64x128 window; run in
    a child process so a crash fails this test instead of ending the session."""
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from flickermine.detect._registry import make_detector\n"
        "d = make_detector('opencv-hog')\n"
        "rng = np.random.default_rng(0)\n"
        "for shape in [(64, 64, 3), (127, 200, 3), (300, 63, 3)]:\n"
        "    assert len(d([rng.integers(0, 255, shape, dtype=np.uint8)])[0].boxes) == 0\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
