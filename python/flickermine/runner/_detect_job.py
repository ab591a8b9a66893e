"""Running a detector over videos (``flickermine detect``) and over negative-only images
(``flickermine mine-negatives``, the classic HOG + linear SVM recipe of hard-negative mining)."""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from .. import __version__
from .._files import write_json_atomic
from .._images import read_image
from .._progress import progress_bar
from ..dataset._writer import HARD_NEGATIVES_KEY, xywh
from ..detect._detections import as_detector
from ..detect._registry import detector_info
from ..errors import InputError
from ..io._formats import DetectionFormat, open_writer
from ..video import IMAGE_EXTENSIONS, VideoError, open_video
from ._gpu_pipeline import DetectorPipeline, PipelineStats
from ._inputs import expand_inputs, video_keys


@dataclasses.dataclass
class DetectSummary:
    video: str
    frames: int
    detections: int
    seconds: float
    output: str
    pipeline: Optional[PipelineStats] = None  #: frames/s, GPU utilisation, batch and device

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def detect_videos(
    inputs: Sequence[str],
    out: str | Path,
    detector,
    output_format: DetectionFormat = "mot",
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[DetectSummary]:
    """Write one detections file per video into ``out`` (``<video>.txt`` MOT, or ``.jsonl`` /
    authors' text with ``output_format``). Frames are decoded once, in order, and fed to the
    detector in batches of ``detector.batch_size`` by a :class:`~flickermine.runner.DetectorPipeline`
    (decoding and batch assembly in threads, pinned memory and AMP on CUDA). Returns per-video
    summaries, each logged with its frames/s and GPU utilisation; a video that cannot be read is
    reported and skipped."""
    detector = as_detector(detector)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    videos = expand_inputs(inputs)
    summaries = []
    for key, path in zip(video_keys(videos), videos):
        try:
            source = open_video(path)
        except VideoError as error:
            log(f"failed: {error}")
            continue
        suffix = ".jsonl" if output_format == "jsonl" else ".txt"
        target = out / f"{key}{suffix}"
        start = time.perf_counter()
        count = 0
        pipeline = DetectorPipeline(source, detector, gray=False, log=log)
        # smoothing=0: the bar shows the average rate since it started, the figure the
        # summary line prints at the end (not a moving average that disagrees with it)
        with progress_bar(source.frame_count, key, enabled=progress, smoothing=0) as bar, \
                open_writer(target, output_format) as writer:
            for frame, result in pipeline:
                writer.write(frame.index, result.boxes, result.scores)
                count += len(result.boxes)
                bar.update(1)
        # One line, one frames/s figure: the pipeline's (from the first frame asked for to the last
        # written), which the summary's seconds are too.
        seconds = pipeline.stats.seconds if pipeline.stats.seconds > 0 else time.perf_counter() - start
        summary = DetectSummary(key, source.decoded_frames or 0, count, seconds, str(target), pipeline.stats)
        log(f"{key}: {count} detections -> {target}; {pipeline.stats.line()}")
        summaries.append(summary)
    return summaries


def _image_files(inputs: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        elif any(c in str(item) for c in "*?[") and not path.exists():
            import glob

            files += sorted(Path(p) for p in glob.glob(str(item), recursive=True) if Path(p).suffix.lower() in IMAGE_EXTENSIONS)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such image, folder or pattern")
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) in {', '.join(map(str, inputs))}")
    return list(dict.fromkeys(files))


def mine_negatives(
    inputs: Sequence[str],
    out: str | Path,
    detector,
    category: str | None = None,
    min_score: float = 0.5,
    top: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Every detection (score >= ``min_score``) on images known to hold no object of the category
    is a hard negative. Writes ``out/images/negatives/<name>``, ``out/annotations.json`` (COCO
    images with no annotations, each with its ``hard_negatives``, most confident first, and its
    ``source_path``) and ``out/report.json`` (counts, speed, unreadable images), as ``mine --out``
    lays a dataset out. ``top`` keeps only the ``top`` most confident hard negatives overall (and
    their images). An image that cannot be read is logged as ``failed: ...``, listed in the
    report and skipped; the others are mined. Returns the COCO dict.

    ``category`` names the dataset's category; None (or "object"): the detector's category (its
    ``info()["category"]``, e.g. ``person``), so that the categories and the info agree."""
    detector = as_detector(detector)
    about = detector_info(detector)
    if category in (None, "object") and isinstance(about.get("category"), str) and about["category"]:
        category = about["category"]
    category = category or "object"
    out = Path(out)
    files = _image_files(inputs)
    found: list[tuple[float, int, list[float]]] = []  # (score, file index, xyxy)
    sizes: dict[int, tuple[int, int]] = {}
    unreadable: list[dict] = []
    detections = 0
    start_time = time.perf_counter()
    with progress_bar(len(files), "images", "image", progress, leave=True) as bar:
        for start in range(0, len(files), detector.batch_size):
            indices, images = [], []
            for index in range(start, min(start + detector.batch_size, len(files))):
                try:
                    image = read_image(files[index])
                except (FileNotFoundError, InputError):  # logged and skipped: one bad file stops nothing
                    unreadable.append({"path": str(files[index]), "error": "cannot be read as an image"})
                    log(f"failed: {files[index]}: cannot be read as an image")
                    continue
                indices.append(index)
                images.append(image)
            for index, image, result in zip(indices, images, detector(images) if images else []):
                sizes[index] = (image.shape[1], image.shape[0])
                detections += len(result.boxes)
                for box, score in zip(result.boxes, result.scores):
                    if score >= min_score:
                        found.append((float(score), index, [float(v) for v in box]))
            bar.update(min(detector.batch_size, len(files) - start))
    found.sort(key=lambda item: (-item[0], item[1]))
    if top is not None:
        found = found[:top]
    per_image: dict[int, list] = {}
    for score, index, box in found:
        per_image.setdefault(index, []).append({"bbox": xywh(box), "score": round(score, 6)})
    (out / "images" / "negatives").mkdir(parents=True, exist_ok=True)
    names = _unique_names([files[i] for i in per_image])
    coco_images = []
    for image_id, (index, negatives) in enumerate(per_image.items(), start=1):
        target = out / "images" / "negatives" / names[files[index]]
        shutil.copyfile(files[index], target)
        width, height = sizes[index]
        coco_images.append(
            {
                "id": image_id,
                "file_name": f"images/negatives/{target.name}",
                "width": width,
                "height": height,
                "source_path": str(files[index]),
                HARD_NEGATIVES_KEY: negatives,
            }
        )
    coco = {
        "info": {
            "description": "hard negatives mined by flickermine from negative-only images",
            "version": __version__,
            "date_created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "mode": "negative-only images",
            "detector": about,
            "min_score": min_score,
            "top": top,
            "hard_negatives": f"images[].{HARD_NEGATIVES_KEY}: [{{bbox: [x, y, w, h], score}}] per image, most confident first",
        },
        "licenses": [],
        "images": coco_images,
        "annotations": [],
        "categories": [{"id": 1, "name": category, "supercategory": category}],
    }
    write_json_atomic(out / "annotations.json", coco)
    seconds = time.perf_counter() - start_time
    write_json_atomic(
        out / "report.json",
        {
            "images": len(files),
            "unreadable": unreadable,
            "detections": detections,
            "hard_negatives": len(found),
            "kept_images": len(coco_images),
            "seconds": round(seconds, 3),
            "images_per_second": round((len(files) - len(unreadable)) / seconds, 1) if seconds > 0 else None,
            "detector": about,
            "min_score": min_score,
            "top": top,
        },
    )
    log(f"{len(files)} images, {len(found)} hard negatives on {len(coco_images)} images written to {out / 'annotations.json'}")
    return coco


def _unique_names(paths: list[Path]) -> dict[Path, str]:
    names: dict[Path, str] = {}
    taken: set[str] = set()
    for path in paths:
        name = path.name
        n = 1
        while name in taken:
            name = f"{path.stem}_{n}{path.suffix}"
            n += 1
        taken.add(name)
        names[path] = name
    return names
