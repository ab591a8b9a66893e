"""Run a detector on the images of a COCO file and score it (``flickermine evaluate``).

Any :class:`~flickermine.detect.Detector` (a HOG-SVM model, OpenCV's built-ins, a torchvision
detector, a Python function), or a checkpoint written by ``flickermine train`` (it knows its
architecture, input size and category names). The figures are COCO AP, AP50, AP75 and the
log-average miss rate (:mod:`._scoring`); the curves can be drawn as a PNG. Detections are COCO
results: ``bbox`` ``[x, y, w, h]`` pixels.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence, Union

from .._files import write_json_atomic
from .._images import read_image
from .._progress import progress_bar
from ..detect._detections import as_detector
from ..detect._registry import detector_info
from ..detect._torchvision import _infer_batch, load_detector, resolve_device
from ..errors import InputError
from ..io import _coco as coco_files
from ._curves import plot_curves
from ._scoring import score_results

PathLike = Union[str, Path]


def detect_coco_images(
    model: Any,
    coco: dict,
    images_dir: PathLike,
    category_id_of_label: dict[int, int],
    device: Any,
    batch_size: int = 2,
    progress: bool = False,
) -> list[dict]:
    """Run a torchvision detector on every image of ``coco``; COCO results (bbox xywh pixels).

    ``category_id_of_label`` maps the model's labels to the file's category ids; detections of
    other labels are dropped. The model is put in eval mode and left there. The inference is
    :func:`flickermine.detect._torchvision._infer_batch` (float32, no autocast), on the images
    read as BGR like a video's frames.
    """
    images_dir = Path(images_dir)
    model.eval()
    results: list[dict] = []
    images = coco["images"]
    with progress_bar(len(images), "evaluate", "image", progress, leave=True) as bar:
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            frames = [read_image(images_dir / image["file_name"]) for image in batch]
            for image, (boxes, scores, labels) in zip(batch, _infer_batch(model, frames, device)):
                results += _results(image["id"], boxes, scores, labels, category_id_of_label)
            bar.update(len(batch))
    return results


def _detect_coco_images_with(detector: Any, coco: dict, images_dir: PathLike, category_id_of_label: dict[int, int], progress: bool = False) -> list[dict]:
    """Run any :class:`~flickermine.detect.Detector` on every image of ``coco`` (read as BGR,
    ``detector.batch_size`` at a time); COCO results of the labels in ``category_id_of_label``."""
    images_dir = Path(images_dir)
    images = coco["images"]
    results: list[dict] = []
    with progress_bar(len(images), "evaluate", "image", progress, leave=True) as bar:
        for start in range(0, len(images), detector.batch_size):
            batch = images[start : start + detector.batch_size]
            frames = [read_image(images_dir / image["file_name"]) for image in batch]
            for image, found in zip(batch, detector(frames)):
                results += _results(image["id"], found.boxes, found.scores, found.labels, category_id_of_label)
            bar.update(len(batch))
    return results


def _results(image_id: int, boxes, scores, labels, category_id_of_label: dict[int, int]) -> list[dict]:
    results = []
    for (x1, y1, x2, y2), score, label in zip(boxes, scores, labels):
        category_id = category_id_of_label.get(int(label))
        if category_id is not None:
            box = [round(float(x1), 2), round(float(y1), 2), round(float(x2 - x1), 2), round(float(y2 - y1), 2)]
            results.append({"image_id": image_id, "category_id": category_id, "bbox": box, "score": round(float(score), 5)})
    return results


def evaluate(
    coco_json: PathLike,
    images_dir: PathLike | None,
    weights: PathLike | None = None,
    out: PathLike | None = None,
    device: str | None = None,
    batch_size: int = 2,
    categories: Sequence[str] | None = None,
    model_name: str | None = None,
    detections_out: PathLike | None = None,
    progress: bool = True,
    detector: Any = None,
    curves_out: PathLike | None = None,
) -> dict:
    """Run a detector on the images of ``coco_json`` and score it (see :func:`._scoring.score_results`).

    The detector is ``detector`` (any :class:`~flickermine.detect.Detector`; its
    ``category_names`` are matched to the file's categories by name), or else the checkpoint
    ``weights`` written by ``flickermine train`` (or a plain torchvision state dict, with
    ``model_name`` naming the architecture; on ``device`` in batches of ``batch_size``).
    ``categories`` restricts the evaluation to some of them, each of which must be both a
    category of the file and one the detector finds (ValueError otherwise). ``images_dir``
    defaults to the folder of ``coco_json``. The summary (plus timing and the detector) is
    written as JSON to ``out`` when given, the detections to ``detections_out``, the curves
    to the PNG ``curves_out``; all atomically. Returns the summary.
    """
    coco_json = Path(coco_json)
    gt = coco_files.load(coco_json)
    for name in categories or []:  # before the model loads: name the file, not a dict
        coco_files.category_by_name(gt, name, str(coco_json))
    images_dir = Path(images_dir) if images_dir is not None else coco_json.parent
    if not images_dir.is_dir():
        raise FileNotFoundError(f"--images {images_dir}: no such folder")
    coco_files.require_images(gt, images_dir, coco_json, "--images")
    if detector is not None:
        detector = as_detector(detector)
        detected_names = dict(detector.category_names)
        described = detector_info(detector)
        label = described.get("weights") or detector.name
    elif weights is not None:
        torch_device = resolve_device(device)
        model, model_categories = load_detector(weights, torch_device, model_name=model_name, coco_categories=gt["categories"])
        detected_names = {index: category["name"] for index, category in enumerate(model_categories, start=1)}
        described = {"weights": str(weights), "device": str(torch_device)}
        label = str(weights)
    else:
        raise InputError("evaluate needs a detector: --detector NAME (with its --weights), or --weights CHECKPOINT of `flickermine train`")

    gt_id_of_name = {c["name"]: c["id"] for c in gt["categories"]}
    category_id_of_label = {label_id: gt_id_of_name[name] for label_id, name in detected_names.items() if name in gt_id_of_name}
    if categories is not None:
        # a category the detector has no label for would be scored AP 0 without a word
        detected = list(detected_names.values())
        absent = [name for name in categories if name not in detected]
        if absent:
            shown = ", ".join(map(repr, detected[:10])) + (f", ... ({len(detected)} in all)" if len(detected) > 10 else "")
            raise InputError(
                f"--category {', '.join(map(repr, absent))}: {label} does not detect "
                f"{'it' if len(absent) == 1 else 'them'} (its categories: {shown})"
            )
    evaluated = list(categories) if categories is not None else [name for name in detected_names.values() if name in gt_id_of_name]
    if not evaluated:
        raise InputError(
            f"{label}: the detector's categories ({', '.join(detected_names.values())}) "
            f"share no name with those of {coco_json} ({', '.join(gt_id_of_name)})"
        )
    started = time.perf_counter()
    if detector is not None:
        detections = _detect_coco_images_with(detector, gt, images_dir, category_id_of_label, progress)
    else:
        detections = detect_coco_images(model, gt, images_dir, category_id_of_label, torch_device, batch_size, progress)
    seconds = time.perf_counter() - started
    summary, curves = score_results(gt, detections, categories=evaluated, source=str(coco_json))
    summary.update({"detector": described, "coco": str(coco_json), "seconds": round(seconds, 3)})
    if detector is None:  # the checkpoint's figures keep their flat keys
        summary.update({"weights": str(weights), "device": str(torch_device)})
    if detections_out is not None:
        coco_files.write(detections, detections_out)  # type: ignore[arg-type]
    if curves_out is not None:
        plot_curves(curves, curves_out, title=f"{label} on {coco_json.name}")
        summary["curves"] = str(curves_out)
    if out is not None:
        write_json_atomic(Path(out), summary)
    return summary
