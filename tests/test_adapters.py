"""Detector adapters: torchvision's, Ultralytics' and supervision's results as Detections
(flickermine.detect._adapters), tested with objects of their shape (none of the three is a dependency)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from flickermine import Detections
from flickermine.detect import from_supervision, from_torchvision, from_ultralytics
from flickermine.errors import InputError

BOXES = np.array([[10.0, 20.0, 50.0, 80.0], [100.5, 5.0, 140.0, 60.25]], np.float32)
SCORES = np.array([0.9, 0.35], np.float32)


class FakeTensor:
    """A tensor on another device: only ``.cpu().numpy()`` gives its values (no __array__)."""

    def __init__(self, values, device="cuda:0"):
        self._values = np.asarray(values)
        self.device = device
        self.cpu_calls = 0

    def cpu(self):
        self.cpu_calls += 1
        return FakeTensor(self._values, "cpu")

    def numpy(self):
        if self.device != "cpu":
            raise TypeError("can't convert cuda:0 device type tensor to numpy; use .cpu() first")
        return self._values

    def __array__(self, *args, **kwargs):
        raise TypeError("no implicit conversion of a device tensor")


def _check(detections, labels):
    assert isinstance(detections, Detections)
    np.testing.assert_allclose(detections.boxes, BOXES)
    np.testing.assert_allclose(detections.scores, SCORES)
    assert detections.boxes.dtype == np.float64 and detections.scores.dtype == np.float64
    assert detections.labels.dtype == np.int64 and detections.labels.tolist() == labels


@pytest.mark.parametrize("wrap", [np.asarray, FakeTensor, lambda v: np.asarray(v).tolist()], ids=["numpy", "tensor", "list"])
def test_from_torchvision(wrap):
    output = {"boxes": wrap(BOXES), "scores": wrap(SCORES), "labels": wrap(np.array([1, 3]))}
    _check(from_torchvision(output), [1, 3])
    _check(Detections.from_torchvision([output]), [1, 3])  # the model's list, of one image
    _check(from_torchvision({"boxes": wrap(BOXES), "scores": wrap(SCORES)}), [1, 1])


def test_from_torchvision_with_torch_tensors():
    torch = pytest.importorskip("torch")
    output = {"boxes": torch.tensor(BOXES, requires_grad=True), "scores": torch.tensor(SCORES).half(), "labels": torch.tensor([1, 3])}
    detections = from_torchvision(output)
    np.testing.assert_allclose(detections.scores, SCORES, atol=1e-3)
    assert detections.labels.tolist() == [1, 3]


def _ultralytics_results(xyxy, conf, cls):
    return SimpleNamespace(boxes=SimpleNamespace(xyxy=xyxy, conf=conf, cls=cls), names={0: "person", 2: "car"}, obb=None)


def test_from_ultralytics():
    cls = np.array([0.0, 2.0], np.float32)  # Ultralytics' class indices are floats
    results = _ultralytics_results(FakeTensor(BOXES), FakeTensor(SCORES), FakeTensor(cls))
    _check(from_ultralytics(results), [0, 2])
    _check(Detections.from_ultralytics([results]), [0, 2])  # model(frame) returns a list of one
    _check(from_ultralytics(_ultralytics_results(BOXES, SCORES, cls)), [0, 2])
    assert results.boxes.xyxy.cpu_calls == 2


def test_from_ultralytics_no_detections():
    empty = _ultralytics_results(FakeTensor(np.zeros((0, 4), np.float32)), FakeTensor(np.zeros(0)), FakeTensor(np.zeros(0)))
    detections = from_ultralytics(empty)
    assert len(detections) == 0 and detections.boxes.shape == (0, 4)


def test_from_ultralytics_refuses_batches_and_other_results():
    results = _ultralytics_results(BOXES, SCORES, np.zeros(2))
    with pytest.raises(InputError, match="list of 2"):
        from_ultralytics([results, results])
    with pytest.raises(InputError, match="obb"):
        from_ultralytics(SimpleNamespace(boxes=None, obb=object()))


def _supervision_detections(**overrides):
    fields = {"xyxy": BOXES, "confidence": SCORES, "class_id": np.array([0, 5]), "tracker_id": None, "data": {}}
    return SimpleNamespace(**{**fields, **overrides})


def test_from_supervision():
    _check(from_supervision(_supervision_detections()), [0, 5])
    _check(Detections.from_supervision(_supervision_detections(class_id=None)), [1, 1])
    with pytest.raises(InputError, match="default_score"):
        from_supervision(_supervision_detections(confidence=None))
    detections = from_supervision(_supervision_detections(confidence=None), default_score=0.5)
    assert detections.scores.tolist() == [0.5, 0.5]


def test_from_supervision_with_supervision_installed():
    sv = pytest.importorskip("supervision")
    _check(from_supervision(sv.Detections(xyxy=BOXES, confidence=SCORES, class_id=np.array([0, 5]))), [0, 5])


def test_invalid_results_name_the_adapter():
    with pytest.raises(ValueError, match="from_torchvision"):
        from_torchvision({"boxes": BOXES, "scores": SCORES[:1]})
    with pytest.raises(InputError, match="'scores'"):
        from_torchvision({"boxes": BOXES})
    with pytest.raises(TypeError, match="from_supervision"):
        from_supervision(object())


def test_from_ultralytics_with_ultralytics_installed():
    pytest.importorskip("ultralytics")
    torch = pytest.importorskip("torch")
    from ultralytics.engine.results import Results

    frame = np.zeros((100, 200, 3), np.uint8)
    rows = torch.tensor([[*BOXES[0], SCORES[0], 0], [*BOXES[1], SCORES[1], 2]])  # x1 y1 x2 y2 conf cls
    results = Results(frame, path="frame.jpg", names={0: "person", 1: "bicycle", 2: "car"}, boxes=rows)
    _check(from_ultralytics([results]), [0, 2])
    empty = Results(frame, path="frame.jpg", names={0: "person"}, boxes=torch.zeros((0, 6)))
    assert len(from_ultralytics(empty)) == 0
