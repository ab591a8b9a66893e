"""A self-contained review page of a mined dataset (``flickermine review DIR``).

:func:`build_review` writes one HTML file, ``review.html``, that opens from disk in any browser:
no server, no network (images are base64 JPEGs inside the page, the script and style inline).
Every hard negative (an image's ``hard_negatives`` records) and every hard positive (annotations
with ``source: "tracker"``) is one item: its crop beside the frame context, the previous, current
and next frames of its video with the box drawn on each. Context frames come from the dataset's
own images when the neighbouring frame was mined too, else they are decoded from the source video
recorded in ``report.json`` (``videos[].path``); when that is gone, the item shows its own frame
only.

On the page: filters by video, reason and minimum score; ``j``/``k`` (or the arrow keys) move
the focus, ``x`` marks the focused item "wrong" (again: unmarks); "Export marks" downloads
``marks.json``::

    {"dataset": "/abs/DIR", "rejected": [{"image_id": 3, "box": [x, y, w, h],
                                          "kind": "hard_negative", ...}, ...]}

which ``flickermine coco merge ... --reject marks.json`` honours (see
:func:`flickermine.io._coco.reject_marked`).

Opened as ``review.html#selftest`` the page checks itself: it counts its items, moves with ``j``,
marks with ``x``, builds the export and writes the result as JSON into ``<pre id="selftest">``
(what the headless-browser test reads).
"""

from __future__ import annotations

import base64
import functools
import html
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import cv2
import numpy as np

from ..errors import InputError
from ..io import _coco as coco_files
from ._writer import HARD_NEGATIVES_KEY, TRACKER_SOURCE

PathLike = str | os.PathLike

HARD_NEGATIVE = "hard_negative"
HARD_POSITIVE = "hard_positive"
#: per-class mining: a box consistent over time whose label flips (an image's ``label_flickers``)
LABEL_FLICKER = "label_flicker"
LABEL_FLICKERS_KEY = "label_flickers"
#: what a hard negative is when its record names no reason (the miner's isolated detections)
DEFAULT_NEGATIVE_REASON = "isolated"
#: the reason shown for the tracker's hard positives
HARD_POSITIVE_REASON = "tracked"

THUMB_WIDTH = 240
CROP_HEIGHT = 180
CROP_MAX_WIDTH = 220
JPEG_QUALITY = 80


def _category_name(record: dict, names: dict) -> str:
    """A record's category: its ``category_id`` named by the file's categories (else its ``label``), or ''."""
    if record.get("category_id") in names:
        return str(names[record["category_id"]])
    return str(record["category"]) if record.get("category") is not None else ""


def review_items(coco: dict) -> list[dict]:
    """The page's items of a mined COCO dict, per image in order: hard negatives, label flickers
    (per-class mining's ``label_flickers`` records), then hard positives. ``category`` is the
    record's class name where the file has several categories."""
    items: list[dict] = []
    names = {c.get("id"): c.get("name") for c in coco.get("categories", []) if isinstance(c, dict)}
    if len(names) < 2:  # one category: no class to show
        names = {}
    tracked: dict[Any, list[dict]] = {}
    for annotation in coco.get("annotations", []):
        if annotation.get("source") == TRACKER_SOURCE:
            tracked.setdefault(annotation["image_id"], []).append(annotation)
    for image in coco["images"]:
        common = {
            "image_id": image["id"], "file_name": image["file_name"], "video": str(image.get("video", "")),
            "frame_index": image.get("frame_index"), "width": image.get("width"), "height": image.get("height"),
        }
        records = [(HARD_NEGATIVE, r, DEFAULT_NEGATIVE_REASON) for r in image.get(HARD_NEGATIVES_KEY) or []]
        records += [(LABEL_FLICKER, r, LABEL_FLICKER) for r in image.get(LABEL_FLICKERS_KEY) or []]
        records += [(HARD_POSITIVE, a, HARD_POSITIVE_REASON) for a in tracked.get(image["id"], [])]
        for kind, record, reason in records:
            items.append({
                **common, "kind": kind, "box": [float(v) for v in record["bbox"]],
                "score": None if record.get("score") is None else float(record["score"]),
                "reason": str(record.get("reason", reason)), "category": _category_name(record, names),
            })
    for number, item in enumerate(items):
        item["n"] = number
    return items


def _video_paths(folder: Path) -> dict[str, Path]:
    """video key -> source video path, from report.json (else the shards)."""
    paths: dict[str, Path] = {}
    records: list[dict] = []
    report = folder / "report.json"
    if report.is_file():
        try:
            records = list(json.loads(report.read_text()).get("videos", []))
        except (ValueError, AttributeError, OSError):
            records = []
    if not records and (folder / "shards").is_dir():
        for shard in sorted((folder / "shards").glob("*.json")):
            try:
                records.append(json.loads(shard.read_text()))
            except (ValueError, OSError):
                continue
    for record in records:
        if isinstance(record, dict) and record.get("video") is not None and record.get("path"):
            path = Path(record["path"])
            if not path.is_absolute():
                path = folder / path
            paths[str(record["video"])] = path
    return paths


def _jpeg_b64(image: np.ndarray) -> str:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise InputError("could not encode a JPEG for the review page")
    return base64.b64encode(data.tobytes()).decode("ascii")


def _thumbnail(frame: np.ndarray) -> str:
    height, width = frame.shape[:2]
    scale = THUMB_WIDTH / max(width, 1)
    small = cv2.resize(frame, (THUMB_WIDTH, max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    return _jpeg_b64(small)


def _crop(frame: np.ndarray, box: list[float]) -> str:
    x, y, w, h = box
    pad_x, pad_y = 0.2 * w + 4, 0.2 * h + 4
    height, width = frame.shape[:2]
    x0, y0 = max(0, int(np.floor(x - pad_x))), max(0, int(np.floor(y - pad_y)))
    x1, y1 = min(width, int(np.ceil(x + w + pad_x))), min(height, int(np.ceil(y + h + pad_y)))
    if x1 <= x0 or y1 <= y0:  # a box outside its frame: show the whole frame
        x0, y0, x1, y1 = 0, 0, width, height
    crop = frame[y0:y1, x0:x1]
    scale = min(CROP_HEIGHT / crop.shape[0], CROP_MAX_WIDTH / crop.shape[1])
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return _jpeg_b64(crop)


def _decode_frames(path: Path, wanted: set[int], visit: Callable[[int, np.ndarray], None]) -> int:
    """Hand the ``wanted`` frames (0-based) of a video to ``visit``, decoded front to back; how many were found.

    A missing, moved or unreadable video finds none (or those before the fault): the page shows
    what it has.
    """
    from ..video import open_video

    found = 0
    if not wanted:
        return found
    last = max(wanted)
    try:
        source = open_video(path)
        frames = source.frames(gray=False, color=True)
        try:
            for frame in frames:
                if frame.index in wanted and frame.color is not None:
                    visit(frame.index, frame.color)
                    found += 1
                if frame.index >= last:
                    break
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()
    except Exception:  # noqa: BLE001 - whatever the decoder raises, the page is still written
        return found
    return found


def _take_decoded(take: Callable[[str, np.ndarray], None], video: str, index: int, frame: np.ndarray) -> None:
    take(f"{video}#{index}", frame)


def _collect_frames(
    folder: Path, coco: dict, items: list[dict], decode: bool, visit: Callable[[str, np.ndarray], None]
) -> tuple[set[str], list[str]]:
    """Hand every frame the page needs to ``visit`` (key ``"<video>#<frame index>"``, BGR image), one at a time.

    Returns the keys found and the videos whose source could not be decoded. Frames come from the
    dataset's images where the frame was mined, else from the source video; none is kept here, so
    memory holds one frame at a time whatever the length of the video.
    """
    found: set[str] = set()

    def take(key: str, frame: np.ndarray) -> None:
        found.add(key)
        visit(key, frame)

    dataset_file: dict[tuple[str, int], str] = {}
    for image in coco["images"]:
        if image.get("frame_index") is not None:
            dataset_file[(str(image.get("video", "")), int(image["frame_index"]))] = image["file_name"]
    wanted: dict[str, set[int]] = {}
    for item in items:
        if item["frame_index"] is None:
            continue
        index = int(item["frame_index"])
        for neighbour in (index - 1, index, index + 1):
            if neighbour >= 0:
                wanted.setdefault(item["video"], set()).add(neighbour)
    undecoded: dict[str, set[int]] = {}
    for video, indices in sorted(wanted.items()):
        for index in sorted(indices):
            file_name = dataset_file.get((video, index))
            image = cv2.imread(str(folder / file_name)) if file_name else None
            if image is not None:
                take(f"{video}#{index}", image)
            else:
                undecoded.setdefault(video, set()).add(index)
    for item in items:  # items whose image has no frame index: their own image only
        key = f"file#{item['file_name']}"
        if item["frame_index"] is None and key not in found:
            image = cv2.imread(str(folder / item["file_name"]))
            if image is not None:
                take(key, image)
    missing_videos: list[str] = []
    if decode and undecoded:
        paths = _video_paths(folder)
        for video, indices in sorted(undecoded.items()):
            path = paths.get(video)
            decoded = _decode_frames(path, indices, functools.partial(_take_decoded, take, video)) if path else 0
            if not decoded:
                missing_videos.append(video)
    return found, missing_videos


def _context_keys(item: dict, available: Iterable[str]) -> list[Optional[str]]:
    """[previous, current, next] frame keys of an item (None where the frame is not available)."""
    have = set(available)
    if item["frame_index"] is None:
        key = f"file#{item['file_name']}"
        return [None, key if key in have else None, None]
    index = int(item["frame_index"])
    keys = [f"{item['video']}#{i}" for i in (index - 1, index, index + 1)]
    return [key if key in have else None for key in keys]


def build_review(folder: PathLike, out: Optional[PathLike] = None, *, decode_video: bool = True) -> dict:
    """Write the review page of the mined dataset ``folder``; returns a summary.

    ``out`` defaults to ``folder/review.html``. With ``decode_video=False`` neighbouring frames are
    taken from the dataset only (no video is opened). The summary: ``out`` (Path), ``items``,
    ``hard_negatives``, ``hard_positives``, ``with_context`` (items with a previous or next frame),
    ``videos_not_decoded`` (videos whose source could not be read).
    """
    folder = Path(folder)
    annotations = folder / "annotations.json"
    if not annotations.is_file():
        raise InputError(f"{folder}: no annotations.json here; give the folder `flickermine mine --out` wrote")
    coco = coco_files.load(annotations)
    items = review_items(coco)
    by_current: dict[str, list[dict]] = {}
    for item in items:
        key = f"file#{item['file_name']}" if item["frame_index"] is None else f"{item['video']}#{int(item['frame_index'])}"
        by_current.setdefault(key, []).append(item)
        item["crop"] = None
    thumbs: dict[str, str] = {}

    def visit(key: str, frame: np.ndarray) -> None:
        thumbs[key] = _thumbnail(frame)
        for item in by_current.get(key, []):
            item["crop"] = _crop(frame, item["box"])
            item["height"], item["width"] = frame.shape[:2]

    found, missing_videos = _collect_frames(folder, coco, items, decode_video, visit)
    for item in items:
        item["context"] = _context_keys(item, found)
    thumbs = {key: thumbs[key] for key in sorted(thumbs)}

    out_path = Path(out) if out is not None else folder / "review.html"
    page = _render_page(items, thumbs, dataset=str(folder.resolve()), title=f"flickermine review: {folder.resolve().name}")
    from .._files import replaced_atomically

    with replaced_atomically(out_path) as temporary:
        Path(temporary).write_text(page, encoding="utf-8")
    return {
        "out": out_path,
        "items": len(items),
        "hard_negatives": sum(1 for i in items if i["kind"] == HARD_NEGATIVE),
        "hard_positives": sum(1 for i in items if i["kind"] == HARD_POSITIVE),
        "with_context": sum(1 for i in items if i["context"][0] or i["context"][2]),
        "videos_not_decoded": missing_videos,
    }


def _fmt_score(score: Optional[float]) -> str:
    return "—" if score is None else f"{score:.3f}"


def _item_html(item: dict) -> str:
    e = html.escape
    x, y, w, h = item["box"]
    kind_label = {HARD_NEGATIVE: "hard negative", HARD_POSITIVE: "hard positive", LABEL_FLICKER: "label flicker"}.get(
        item["kind"], item["kind"])
    width, height = item.get("width") or 1, item.get("height") or 1
    box_style = (
        f"left:{100 * x / width:.3f}%;top:{100 * y / height:.3f}%;"
        f"width:{100 * w / width:.3f}%;height:{100 * h / height:.3f}%"
    )
    frames = []
    for label, key in zip(("previous", "current", "next"), item["context"]):
        if key is None:
            if label == "current":
                frames.append('<figure class="frame missing"><div>frame not available</div><figcaption>current</figcaption></figure>')
            continue
        frames.append(
            f'<figure class="frame {label}"><div class="pic"><img data-frame="{e(key)}" alt="{label} frame">'
            f'<span class="box" style="{box_style}"></span></div><figcaption>{label}</figcaption></figure>'
        )
    crop = (
        f'<img class="crop" src="data:image/jpeg;base64,{item["crop"]}" alt="crop">' if item["crop"]
        else '<div class="crop missing">image not found</div>'
    )
    frame_text = "" if item["frame_index"] is None else f" · frame {int(item['frame_index']) + 1}"
    score_attr = "" if item["score"] is None else f'{item["score"]:.6f}'
    box_text = ", ".join(f"{v:g}" for v in item["box"])
    return (
        f'<article class="item {item["kind"]}" tabindex="-1" data-n="{item["n"]}" data-image-id="{e(str(item["image_id"]))}" '
        f'data-kind="{item["kind"]}" data-video="{e(item["video"])}" data-reason="{e(item["reason"])}" '
        f'data-score="{score_attr}" data-box="{e(json.dumps(item["box"]))}" data-file="{e(item["file_name"])}">'
        f'<div class="cropcell">{crop}</div>'
        f'<div class="context">{"".join(frames)}</div>'
        f'<div class="meta"><div class="kind">{kind_label}</div>'
        f'<div>score <b>{_fmt_score(item["score"])}</b></div>'
        f'<div>reason <b>{e(item["reason"])}</b></div>'
        + (f'<div>class <b>{e(item["category"])}</b></div>' if item.get("category") else "")
        + f'<div>video <b>{e(item["video"])}</b>{frame_text}</div>'
        f'<div class="small">image {e(str(item["image_id"]))} · box [{box_text}]</div>'
        f'<button class="mark" type="button">wrong (x)</button></div></article>'
    )


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f4f4;color:#222}
header{position:sticky;top:0;z-index:5;background:#263238;color:#fff;padding:8px 14px;display:flex;flex-wrap:wrap;gap:14px;align-items:center}
header h1{font-size:16px;margin:0 10px 0 0}
header label{display:flex;gap:6px;align-items:center}
header select,header button{font:inherit}
#count{opacity:.85}
main{padding:10px 14px}
.help{color:#555;margin:4px 0 10px}
.item{display:flex;gap:14px;align-items:flex-start;background:#fff;border:2px solid #ddd;border-radius:6px;padding:8px;margin:0 0 10px;outline:none}
.item.hard_negative{border-left:8px solid #d32f2f}
.item.hard_positive{border-left:8px solid #388e3c}
.item.label_flicker{border-left:8px solid #f57c00}
.item.focused{border-color:#1976d2;box-shadow:0 0 0 3px #90caf9}
.item.rejected{background:#ffebee;opacity:.75}
.item.rejected .kind::after{content:" — marked wrong";color:#b71c1c;font-weight:bold}
.item.hidden{display:none}
.cropcell{width:220px;min-height:120px;display:flex;justify-content:center;align-items:center;background:#111}
.crop{max-width:220px;max-height:180px;display:block}
.context{display:flex;gap:6px}
.frame{margin:0;text-align:center;font-size:12px;color:#666}
.frame .pic{position:relative;width:240px;line-height:0}
.frame img{width:240px;display:block}
.frame .box{position:absolute;border:2px solid #ffeb3b;box-sizing:border-box;pointer-events:none}
.frame.current .box{border-color:#ff1744}
.frame.missing div{width:240px;height:120px;display:flex;align-items:center;justify-content:center;background:#eee}
.meta{min-width:200px}
.meta .kind{font-weight:bold;margin-bottom:4px}
.small{font-size:11px;color:#777}
.mark{margin-top:6px}
"""

_SCRIPT = r"""
(function(){
  var FRAMES = JSON.parse(document.getElementById('frames').textContent);
  var DATASET = JSON.parse(document.getElementById('dataset').textContent);
  var items = Array.prototype.slice.call(document.querySelectorAll('article.item'));
  document.querySelectorAll('img[data-frame]').forEach(function(img){
    var data = FRAMES[img.getAttribute('data-frame')];
    if (data) img.src = 'data:image/jpeg;base64,' + data;
  });
  var videoSel = document.getElementById('video'), reasonSel = document.getElementById('reason');
  var minScore = document.getElementById('minscore'), minScoreText = document.getElementById('minscoretext');
  var count = document.getElementById('count');
  function options(sel, attr){
    var seen = {};
    items.forEach(function(it){ seen[it.getAttribute(attr)] = true; });
    Object.keys(seen).sort().forEach(function(v){
      var o = document.createElement('option'); o.value = v; o.textContent = v || '(none)'; sel.appendChild(o);
    });
  }
  options(videoSel, 'data-video'); options(reasonSel, 'data-reason');
  var focus = -1;
  function visible(){ return items.filter(function(it){ return !it.classList.contains('hidden'); }); }
  function marked(){ return items.filter(function(it){ return it.classList.contains('rejected'); }); }
  function update(){
    var v = videoSel.value, r = reasonSel.value, s = parseFloat(minScore.value);
    minScoreText.textContent = s.toFixed(2);
    items.forEach(function(it){
      var sc = it.getAttribute('data-score');
      var ok = (!v || it.getAttribute('data-video') === v) && (!r || it.getAttribute('data-reason') === r)
               && (sc === '' || parseFloat(sc) >= s);
      it.classList.toggle('hidden', !ok);
    });
    var vis = visible();
    count.textContent = vis.length + ' of ' + items.length + ' shown · ' + marked().length + ' marked wrong';
    if (focus >= 0 && items[focus].classList.contains('hidden')) setFocus(vis.length ? items.indexOf(vis[0]) : -1);
  }
  function setFocus(n){
    if (focus >= 0) items[focus].classList.remove('focused');
    focus = n;
    if (n >= 0) { items[n].classList.add('focused'); if (items[n].scrollIntoView) items[n].scrollIntoView({block: 'nearest'}); }
  }
  function move(step){
    var vis = visible(); if (!vis.length) return;
    var at = vis.indexOf(items[focus]);
    var next = at < 0 ? (step > 0 ? 0 : vis.length - 1) : Math.min(vis.length - 1, Math.max(0, at + step));
    setFocus(items.indexOf(vis[next]));
  }
  function toggle(n){ if (n >= 0) { items[n].classList.toggle('rejected'); update(); } }
  function exportData(){
    return {dataset: DATASET, rejected: marked().map(function(it){
      var id = it.getAttribute('data-image-id');
      return {image_id: /^-?\d+$/.test(id) ? parseInt(id, 10) : id, box: JSON.parse(it.getAttribute('data-box')),
              kind: it.getAttribute('data-kind'), file_name: it.getAttribute('data-file'),
              video: it.getAttribute('data-video'), reason: it.getAttribute('data-reason')};
    })};
  }
  var lastExport = null;
  function download(){
    lastExport = JSON.stringify(exportData(), null, 1);
    var blob = new Blob([lastExport], {type: 'application/json'});
    var a = document.createElement('a'); a.href = URL.createObjectURL(blob); a.download = 'marks.json';
    document.body.appendChild(a); a.click(); a.remove();
  }
  document.addEventListener('keydown', function(ev){
    if (ev.target && /^(INPUT|SELECT|TEXTAREA)$/.test(ev.target.tagName) && ev.key !== 'Escape') return;
    if (ev.key === 'j' || ev.key === 'ArrowDown' || ev.key === 'ArrowRight') { move(1); ev.preventDefault(); }
    else if (ev.key === 'k' || ev.key === 'ArrowUp' || ev.key === 'ArrowLeft') { move(-1); ev.preventDefault(); }
    else if (ev.key === 'x') { toggle(focus); ev.preventDefault(); }
  });
  items.forEach(function(it, n){
    it.addEventListener('click', function(){ setFocus(n); });
    it.querySelector('button.mark').addEventListener('click', function(ev){ ev.stopPropagation(); setFocus(n); toggle(n); });
  });
  [videoSel, reasonSel].forEach(function(el){ el.addEventListener('change', update); });
  minScore.addEventListener('input', update);
  document.getElementById('export').addEventListener('click', download);
  update();
  if (items.length) setFocus(0);
  window.flickermineReview = {items: items, exportData: exportData, update: update};
  if (location.hash === '#selftest') {
    var key = function(k){ document.dispatchEvent(new KeyboardEvent('keydown', {key: k, bubbles: true})); };
    var result = {items: items.length, visible: visible().length,
                  images_loaded: document.querySelectorAll('img[src^="data:image/jpeg;base64,"]').length};
    key('j'); key('x');  // the second item (the first when there is one) marked by keyboard
    result.focused = focus;
    result.export = exportData();
    document.getElementById('export').click();  // the button's download holds the same marks
    result.button_export = lastExport === null ? null : JSON.parse(lastExport);
    minScore.value = minScore.max; update();
    result.visible_at_max_score = visible().length;
    minScore.value = minScore.min; update();
    var pre = document.createElement('pre'); pre.id = 'selftest'; pre.textContent = JSON.stringify(result);
    document.body.appendChild(pre);
  }
})();
"""


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


def _render_page(items: list[dict], thumbs: dict[str, str], *, dataset: str, title: str) -> str:
    """The review page's HTML (items as :func:`build_review` prepares them)."""
    e = html.escape
    negatives = sum(1 for i in items if i["kind"] == HARD_NEGATIVE)
    positives = sum(1 for i in items if i["kind"] == HARD_POSITIVE)
    flickers = len(items) - negatives - positives
    body = "\n".join(_item_html(item) for item in items) or '<p class="empty">This dataset holds no hard negative and no hard positive.</p>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{e(title)}</title>
<style>{_STYLE}</style></head>
<body>
<header><h1>{e(title)}</h1>
<label>video <select id="video"><option value="">all</option></select></label>
<label>reason <select id="reason"><option value="">all</option></select></label>
<label>min score <input id="minscore" type="range" min="0" max="1" step="0.01" value="0"> <span id="minscoretext">0.00</span></label>
<button id="export" type="button">Export marks</button>
<span id="count"></span></header>
<main>
<p class="help">{negatives} hard negatives (red), {positives} hard positives (green){f", {flickers} label flickers (orange)" if flickers else ""}, each beside its previous /
current / next frame. Keys: <b>j</b>/<b>k</b> or arrows move, <b>x</b> marks the focused item wrong (again: unmarks).
"Export marks" downloads marks.json for <code>flickermine coco merge … --reject marks.json</code>.</p>
{body}
</main>
<script type="application/json" id="frames">{_script_json(thumbs)}</script>
<script type="application/json" id="dataset">{_script_json(dataset)}</script>
<script>{_SCRIPT}</script>
</body></html>
"""
