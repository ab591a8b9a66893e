"""A synthetic clip with known flickers: the built-in default of ``flickermine demo``.

Textured objects move smoothly over a textured background; a simulated detector finds them
(with jitter and scores below ``sure_score``), misses some for one frame (future hard
positives) and fires one-frame false positives on the background (the flickers the miner
should find). Everything is made in memory from a seed: no files, no network.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import cv2
import numpy as np

from .._boxes import iou_matrix
from ..dataset._writer import RunConfig, ShardWriter, check_run_folder, contact_sheet, merge_shards, shard_summary, write_report
from ..errors import InputError
from ..mining._miner import FrameVerdicts, mine_frames
from ..mining._backends import BackendName
from ..mining._params import DEFAULT_RULE, MiningParams, Rule
from ..mining._rules import RuleName


@dataclasses.dataclass
class SyntheticClip:
    """Frames and detections of a synthetic clip, with the truth about them.

    ``gray[i]`` is ``(H, W)`` uint8; boxes are ``(N, 4)`` float64 x1, y1, x2, y2 pixels.
    """

    gray: list[np.ndarray]
    truth: list[np.ndarray]  #: true object boxes per frame
    detections: list[np.ndarray]  #: the simulated detector's boxes per frame
    scores: list[np.ndarray]
    false_positives: list[np.ndarray]  #: the injected one-frame false positives per frame
    misses: list[np.ndarray]  #: true boxes the detector skipped, per frame

    @property
    def num_frames(self) -> int:
        return len(self.gray)


def _texture(rng: np.random.Generator, height: int, width: int, blur: float) -> np.ndarray:
    noise = rng.random((height, width)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), blur)
    smooth = (smooth - smooth.min()) / max(float(smooth.max() - smooth.min()), 1e-6)
    return smooth * 255.0


def render_clip(
    seed: int = 0,
    num_frames: int = 150,
    height: int = 360,
    width: int = 480,
    num_objects: int = 4,
    false_positive_rate: float = 0.15,
    miss_rate: float = 0.03,
    params: MiningParams | None = None,
) -> SyntheticClip:
    """Render the clip. ``false_positive_rate``: expected injected false positives per frame;
    ``miss_rate``: chance that a true object is missed in a frame (never two frames running)."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise InputError(f"the demo clip needs at least 1 frame (--frames), got {num_frames!r}")
    params = params or MiningParams()
    rng = np.random.default_rng(seed)
    background = _texture(rng, height, width, 3.0) * 0.8 + 20.0
    lane_height = (height - 2 * params.border) / num_objects
    objects = []
    for k in range(num_objects):
        obj_h = int(min(lane_height - 4, rng.uniform(60, 90)))
        obj_w = int(rng.uniform(45, 70))
        texture = _texture(rng, obj_h, obj_w, 1.5)
        top = params.border + k * lane_height + (lane_height - obj_h) / 2
        x = rng.uniform(params.border + 5, width - params.border - obj_w - 5)
        speed = rng.uniform(1.0, 3.0) * rng.choice([-1.0, 1.0])
        objects.append([texture, float(top), x, speed])

    gray, truth, detections, scores, false_positives, misses = [], [], [], [], [], []
    missed_last = set()
    for _ in range(num_frames):
        frame = background.copy()
        truth_rows = []
        for k, obj in enumerate(objects):
            texture, top, x, speed = obj
            obj_h, obj_w = texture.shape
            lo, hi = params.border + 5, width - params.border - obj_w - 5
            if not lo <= x + speed <= hi:
                obj[3] = speed = -speed  # bounce inside the frame, away from the border exemption
            obj[2] = x = x + speed
            ix, iy = int(round(x)), int(round(top))
            frame[iy : iy + obj_h, ix : ix + obj_w] = texture
            truth_rows.append([ix, iy, ix + obj_w, iy + obj_h])
        frame += rng.normal(0.0, 2.0, frame.shape).astype(np.float32)  # sensor noise
        gray.append(np.clip(frame, 0, 255).astype(np.uint8))
        frame_truth = np.array(truth_rows, dtype=np.float64)
        truth.append(frame_truth)

        detected, frame_misses = [], []
        for k, box in enumerate(frame_truth):
            if k not in missed_last and rng.random() < miss_rate:
                frame_misses.append(box)
                missed_last.add(k)
                continue
            missed_last.discard(k)
            detected.append(box + rng.normal(0.0, 1.5, 4))
        misses.append(np.array(frame_misses, dtype=np.float64).reshape(-1, 4))
        frame_fps = []
        for _ in range(rng.poisson(false_positive_rate)):
            fp_w, fp_h = rng.uniform(45, 80), rng.uniform(45, 90)
            fx = rng.uniform(params.border + 1, width - params.border - fp_w - 1)
            fy = rng.uniform(params.border + 1, height - params.border - fp_h - 1)
            frame_fps.append([fx, fy, fx + fp_w, fy + fp_h])
        false_positives.append(np.array(frame_fps, dtype=np.float64).reshape(-1, 4))
        boxes = np.array(detected + frame_fps, dtype=np.float64).reshape(-1, 4)
        detections.append(boxes)
        scores.append(rng.uniform(params.score_threshold + 0.01, params.sure_score - 0.01, len(boxes)))

    # Keep only false positives on background: a box over a moving object within the window
    # would be a different (harder) case than this demo measures.
    for f in range(num_frames):
        fps = false_positives[f]
        if not len(fps):
            continue
        lo, hi = max(0, f - params.window), min(num_frames, f + params.window + 1)
        nearby = np.concatenate(truth[lo:hi])
        clear = (iou_matrix(fps, nearby) == 0).all(axis=1)
        removed = fps[~clear]
        false_positives[f] = fps[clear]
        if len(removed):
            keep = ~(iou_matrix(detections[f], removed) > 0.999).any(axis=1)
            detections[f], scores[f] = detections[f][keep], scores[f][keep]
    return SyntheticClip(gray, truth, detections, scores, false_positives, misses)


@dataclasses.dataclass
class DemoResult:
    frames: int
    detections: int
    injected_false_positives: int
    mined_hard_negatives: int
    found_false_positives: int  #: injected false positives mined as hard negatives (IoU >= 0.5)
    injected_misses: int
    hard_positives: int  #: hard positives found
    found_misses: int  #: injected misses recovered as hard positives (IoU >= 0.5)
    seconds: float
    verdicts: list[FrameVerdicts]

    @property
    def precision(self) -> float:
        """Share of mined hard negatives that are injected false positives."""
        return self.found_false_positives / self.mined_hard_negatives if self.mined_hard_negatives else float("nan")

    @property
    def recall(self) -> float:
        """Share of injected false positives that were mined."""
        return self.found_false_positives / self.injected_false_positives if self.injected_false_positives else float("nan")


def run_demo(
    seed: int = 0,
    num_frames: int = 150,
    params: MiningParams | None = None,
    rule: Rule | RuleName = DEFAULT_RULE,
    backend: BackendName = "auto",
) -> tuple[SyntheticClip, DemoResult]:
    """Render the clip and mine it; compare the hard negatives with the injected false positives."""
    params = params or MiningParams()
    clip = render_clip(seed=seed, num_frames=num_frames, params=params)
    start = time.perf_counter()
    verdicts = list(
        mine_frames(
            clip.gray, zip(clip.detections, clip.scores), params=params, rule=rule, backend=backend, hard_positives=True
        )
    )
    seconds = time.perf_counter() - start
    mined = found = hard_positives = found_misses = 0
    for v in verdicts:
        hard_positives += len(v.hard_positives)
        missed = clip.misses[v.frame_index]
        if len(v.hard_positives) and len(missed):
            found_misses += int((iou_matrix(missed, v.hard_positives) >= 0.5).any(axis=1).sum())
        hard = v.boxes[v.hard_negatives]
        mined += len(hard)
        injected = clip.false_positives[v.frame_index]
        if len(hard) and len(injected):
            found += int((iou_matrix(injected, hard) >= 0.5).any(axis=1).sum())
    result = DemoResult(
        frames=clip.num_frames,
        detections=sum(len(d) for d in clip.detections),
        injected_false_positives=sum(len(f) for f in clip.false_positives),
        mined_hard_negatives=mined,
        found_false_positives=found,
        injected_misses=sum(len(m) for m in clip.misses),
        hard_positives=hard_positives,
        found_misses=found_misses,
        seconds=seconds,
        verdicts=verdicts,
    )
    return clip, result


def write_demo_dataset(
    clip: SyntheticClip, result: DemoResult, out, params: MiningParams, rule: str, backend: str, seed: int = 0
) -> dict:
    """Write the demo's mined frames as a dataset, laid out exactly like ``flickermine mine --out``
    (mode ``hn+hp``: hard-negative frames and hard-positive frames, with their visualizations)."""
    out = Path(out)
    run_file = out / "run.json"
    if run_file.exists() and (json.loads(run_file.read_text()).get("detector") or {}).get("name") == "simulated":
        shutil.rmtree(out)  # an earlier demo: it is made anew each time
    elif out.exists() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not an earlier demo's output; pick another --out")
    config = RunConfig(params=params, rule=str(Rule(rule).value), mode="hn+hp", category="object",
                       detector={"name": "simulated", "seed": seed, "frames": result.frames}, visualize=True)
    out.mkdir(parents=True, exist_ok=True)
    check_run_folder(out, config)
    writer = ShardWriter(out, "demo", config)
    for verdicts in result.verdicts:
        writer.add(verdicts, cv2.cvtColor(clip.gray[verdicts.frame_index], cv2.COLOR_GRAY2BGR))
    shard = writer.finish({"path": "synthetic", "frames": result.frames, "detections": result.detections,
                           "seconds": round(result.seconds, 3), "backend": backend})
    coco = merge_shards(out, ["demo"], config, backend)
    row = shard_summary(shard)
    row.update(status="done", frames_per_second=round(result.frames / max(result.seconds, 1e-9), 1))
    write_report(out, [row], config, backend)
    contact_sheet(out, coco)
    return coco
