"""COCO detection files: load and validate, write atomically, merge, one-category subsets.

The files are plain COCO detection JSON: ``images`` (``id``, ``file_name``, ``width``, ``height``),
``annotations`` (``id``, ``image_id``, ``category_id``, ``bbox`` as ``[x, y, w, h]`` in pixels,
``area``, ``iscrowd``) and ``categories`` (``id``, ``name``), with optional ``info`` and
``licenses``. Any other key of an image or an annotation is carried through unchanged; in particular
the miner's per-image ``hard_negatives`` (a list of ``{"bbox": [x, y, w, h], "score": s}``), and
``video``, ``frame_index``, ``score`` and ``source``.

An image's ``file_name`` is relative to an *image root*: the folder a trainer is pointed at with
``--images``. For the files that ``flickermine mine`` writes, that root is the folder of the JSON
file itself. An image with no annotations is a real negative and is always kept.

Nothing here modifies an input file: results are new dictionaries, written with :func:`write`
(a temporary file in the target folder, then :func:`os.replace`).
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import shutil
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

from .._files import replaced_atomically
from ..errors import InputError

PathLike = Union[str, "os.PathLike[str]"]

#: keys that every COCO detection file has; ``info`` and ``licenses`` are optional
REQUIRED_KEYS = ("images", "annotations", "categories")
SPLIT_NAMES = ("train", "val", "test")


class CocoFormatError(InputError):
    """A COCO file that cannot be used as it is; the message names the file and the fault."""


# --------------------------------------------------------------------------------------------------
# load, validate, write


def load(path: PathLike) -> dict:
    """Read and validate a COCO detection file; raises FileNotFoundError or CocoFormatError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such COCO file")
    try:
        with open(path, encoding="utf-8") as stream:
            coco = json.load(stream)
    except json.JSONDecodeError as error:
        raise CocoFormatError(f"{path}: not valid JSON ({error})") from None
    validate(coco, source=str(path))
    return coco


def validate(coco: Any, source: str = "<COCO dict>") -> None:
    """Check the structure a detector trainer and pycocotools rely on.

    Refuses: missing ``images``/``annotations``/``categories``; image, annotation or category ids
    that are missing or repeated; an image without ``file_name``, or two images with the same one;
    a category without ``name`` or two with the same one; an annotation whose ``image_id`` or
    ``category_id`` is unknown, or whose ``bbox`` is not four numbers with ``w, h >= 0``.
    """
    if not isinstance(coco, dict):
        raise CocoFormatError(f"{source}: expected a JSON object at the top level, got {type(coco).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in coco]
    if missing:
        raise CocoFormatError(f"{source}: missing top-level key(s) {', '.join(missing)}")
    for key in REQUIRED_KEYS:
        if not isinstance(coco[key], list):
            raise CocoFormatError(f"{source}: {key!r} must be a list, got {type(coco[key]).__name__}")

    category_ids: set = set()
    category_names: set = set()
    for index, category in enumerate(coco["categories"]):
        if not isinstance(category, dict) or "id" not in category or "name" not in category:
            raise CocoFormatError(f"{source}: categories[{index}] needs 'id' and 'name', got {category!r}")
        if category["id"] in category_ids:
            raise CocoFormatError(f"{source}: category id {category['id']!r} appears twice")
        if category["name"] in category_names:
            raise CocoFormatError(f"{source}: category name {category['name']!r} appears twice")
        category_ids.add(category["id"])
        category_names.add(category["name"])

    image_ids: set = set()
    file_names: dict = {}
    for index, image in enumerate(coco["images"]):
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise CocoFormatError(f"{source}: images[{index}] needs 'id' and 'file_name', got {_short(image)}")
        if image["id"] in image_ids:
            raise CocoFormatError(f"{source}: image id {image['id']!r} appears twice")
        if image["file_name"] in file_names:
            raise CocoFormatError(
                f"{source}: file_name {image['file_name']!r} appears twice "
                f"(image ids {file_names[image['file_name']]!r} and {image['id']!r})"
            )
        image_ids.add(image["id"])
        file_names[image["file_name"]] = image["id"]

    annotation_ids: set = set()
    for index, annotation in enumerate(coco["annotations"]):
        where = f"{source}: annotations[{index}]"
        if not isinstance(annotation, dict):
            raise CocoFormatError(f"{where} must be an object, got {_short(annotation)}")
        for key in ("id", "image_id", "category_id", "bbox"):
            if key not in annotation:
                raise CocoFormatError(f"{where} has no {key!r}: {_short(annotation)}")
        if annotation["id"] in annotation_ids:
            raise CocoFormatError(f"{source}: annotation id {annotation['id']!r} appears twice")
        annotation_ids.add(annotation["id"])
        if annotation["image_id"] not in image_ids:
            raise CocoFormatError(f"{where} refers to image_id {annotation['image_id']!r}, which is not in 'images'")
        if annotation["category_id"] not in category_ids:
            raise CocoFormatError(
                f"{where} refers to category_id {annotation['category_id']!r}, which is not in 'categories'"
            )
        bbox = annotation["bbox"]
        if (
            not isinstance(bbox, (list, tuple))
            or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)
            or bbox[2] < 0
            or bbox[3] < 0
        ):
            raise CocoFormatError(f"{where} bbox must be [x, y, w, h] with w, h >= 0, got {bbox!r}")


def write(coco: dict, path: PathLike) -> Path:
    """Write ``coco`` as JSON to ``path`` atomically: readers see the old file or the new one, never half."""
    path = Path(path)
    with replaced_atomically(path) as temporary, open(temporary, "w", encoding="utf-8") as stream:
        json.dump(coco, stream)
        stream.write("\n")
    return path


def missing_images(coco: dict, image_root: PathLike) -> list[Path]:
    """The image files of ``coco`` that are not readable files under ``image_root``, in file order.

    A trainer reads an image only when it draws it; checking them all first turns a run that would
    stop hours in (or at its first validation) into an error before it starts.
    """
    root = Path(image_root)
    paths = (root / image["file_name"] for image in coco["images"])  # an absolute file_name stays as it is
    return [path for path in paths if not (path.is_file() and os.access(path, os.R_OK))]


def require_images(coco: dict, image_root: PathLike, source: PathLike, option: str) -> None:
    """FileNotFoundError naming the first :func:`missing_images` of ``source`` (found under the
    folder that command-line ``option`` names), or nothing when every image is there."""
    missing = missing_images(coco, image_root)
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} image(s) of {source} not found under {option} {image_root}:{_first_few(missing)}"
        )


def _first_few(items: Sequence[Any], limit: int = 5) -> str:
    """Up to ``limit`` items, one an indented line, and how many more there are."""
    shown = "".join(f"\n  {item}" for item in items[:limit])
    return shown + (f"\n  ... and {len(items) - limit} more" if len(items) > limit else "")


def category_by_name(coco: dict, name: str, source: str = "<COCO dict>") -> dict:
    """The category called ``name``; the error lists the names there are."""
    for category in coco["categories"]:
        if category["name"] == name:
            return category
    names = ", ".join(repr(c["name"]) for c in coco["categories"]) or "none"
    raise CocoFormatError(f"{source}: no category named {name!r} (categories: {names})")


# --------------------------------------------------------------------------------------------------
# merge


def merge(
    base: PathLike,
    *mined: PathLike,
    out: PathLike,
    image_root: PathLike | None = None,
    copy_images: bool = False,
) -> dict:
    """Merge a base COCO file with mined ones into a new file ``out``; returns the merged dict.

    Images come in input order (base first) and are numbered from 1; annotations likewise.
    Categories are matched by name: the base's keep their ids, a name new to the merge gets the
    next free id. ``info`` is the base's (else the first input's that has one); ``licenses`` are
    pooled, identical ones once, and images' ``license`` ids follow. Images with no annotations
    (negative frames) are kept. Extra keys (``hard_negatives``, ``video``, ...) are kept.

    Image paths: the base file's ``file_name``s are relative to ``image_root`` (default: the base
    file's folder); each mined file's are relative to its own folder, as ``flickermine mine``
    writes them. Every image must exist there. In ``out`` each ``file_name`` is relative to
    ``out``'s folder, so train with ``--images`` set to that folder. With ``copy_images`` the
    images are hard-linked (copied where links are impossible) to ``<out folder>/images/<k>/...``,
    ``k`` being the input's position, so the new folder stands alone; where dropping ``..`` parts
    or a leading ``/`` gives two images one name, the later ones get ``_2``, ``_3``... before the
    extension.

    Refused, before anything is written: an ``out`` that is one of the inputs, and the same image
    file twice (within one input or across inputs).
    """
    inputs = [Path(base), *(Path(p) for p in mined)]
    out = Path(out)
    out_resolved = out.resolve()
    for path in inputs:
        if path.resolve() == out_resolved:
            raise InputError(f"--out {out} is one of the inputs; merge never overwrites its inputs")
    if image_root is not None and not Path(image_root).is_dir():
        raise FileNotFoundError(f"image root {image_root}: no such folder")
    out_dir = out_resolved.parent

    sources = [load(path) for path in inputs]
    roots = [Path(image_root) if image_root is not None else inputs[0].parent] + [p.parent for p in inputs[1:]]

    categories: list[dict] = []
    category_id_of_name: dict = {}
    for coco in sources:
        for category in coco["categories"]:
            if category["name"] not in category_id_of_name:
                taken = {c["id"] for c in categories}
                new_id = category["id"] if category["id"] not in taken and coco is sources[0] else _next_id(taken)
                category_id_of_name[category["name"]] = new_id
                categories.append({**category, "id": new_id})

    licenses: list[dict] = []
    license_id_of_content: dict = {}

    info = next((coco["info"] for coco in sources if "info" in coco), None)
    merged: dict = {}
    if info is not None:
        merged["info"] = copy.deepcopy(info)
    merged["images"] = []
    merged["annotations"] = []
    merged["categories"] = categories

    # resolved source file -> (input path, file_name), to name both sides of a duplicate
    seen_files: dict = {}
    links: list[tuple[Path, Path]] = []
    copied_names: set[str] = set()  # casefolded: on a case-insensitive disk A.jpg is a.jpg
    missing: list[str] = []
    next_annotation_id = 1
    for position, (path, coco, root) in enumerate(zip(inputs, sources, roots)):
        license_map = {}
        for license_ in coco.get("licenses", []):
            content = json.dumps({k: v for k, v in license_.items() if k != "id"}, sort_keys=True)
            if content not in license_id_of_content:
                taken = {entry["id"] for entry in licenses if "id" in entry}
                own_id = license_.get("id")
                new_id = own_id if own_id is not None and own_id not in taken else _next_id(taken)
                license_id_of_content[content] = new_id
                licenses.append({**license_, "id": new_id})
            if "id" in license_:
                license_map[license_["id"]] = license_id_of_content[content]

        category_map = {c["id"]: category_id_of_name[c["name"]] for c in coco["categories"]}
        image_map = {}
        for image in coco["images"]:
            source_file = Path(image["file_name"])
            if not source_file.is_absolute():
                source_file = root / source_file
            if not source_file.is_file():
                missing.append(f"{source_file} (image {image['file_name']!r} of {path})")
                continue
            key = source_file.resolve()
            if key in seen_files:
                first_path, first_name = seen_files[key]
                raise InputError(
                    f"duplicate image {key}: {image['file_name']!r} in {path} and {first_name!r} in {first_path}; "
                    "merge each image once"
                )
            seen_files[key] = (path, image["file_name"])
            if copy_images:
                relative = _unused_name(Path("images") / str(position) / _inside_name(image["file_name"]), copied_names)
                links.append((source_file, out_dir / relative))
                file_name = relative.as_posix()
            else:
                file_name = Path(os.path.relpath(source_file.resolve(), out_dir)).as_posix()
            new_image = copy.deepcopy(image)
            new_image["id"] = len(merged["images"]) + 1
            new_image["file_name"] = file_name
            if "license" in new_image and new_image["license"] in license_map:
                new_image["license"] = license_map[new_image["license"]]
            image_map[image["id"]] = new_image["id"]
            merged["images"].append(new_image)
        for annotation in coco["annotations"]:
            if annotation["image_id"] not in image_map:
                continue  # its image is missing; reported below
            new_annotation = copy.deepcopy(annotation)
            new_annotation["id"] = next_annotation_id
            next_annotation_id += 1
            new_annotation["image_id"] = image_map[annotation["image_id"]]
            new_annotation["category_id"] = category_map[annotation["category_id"]]
            _complete_annotation(new_annotation)
            merged["annotations"].append(new_annotation)

    if missing:
        hint = "" if image_root is not None else " (the base file's images are looked for beside it unless --image-root says where)"
        raise FileNotFoundError(f"{len(missing)} image(s) not found{hint}:{_first_few(missing)}")
    if licenses:
        merged["licenses"] = licenses
    merged["flickermine"] = {"merged_from": [str(p) for p in inputs], "copy_images": copy_images}

    for source_file, target in links:
        _link_or_copy(source_file, target)
    write(merged, out)
    return merged


def _next_id(taken: Iterable) -> int:
    numbers = [value for value in taken if isinstance(value, int)]
    return max(numbers, default=0) + 1


def _inside_name(file_name: str) -> Path:
    """``file_name`` as a path that stays inside its folder (absolute and ``..`` parts dropped)."""
    parts = [part for part in Path(file_name).parts if part not in ("..", ".") and not Path(part).anchor]
    return Path(*parts)


def _unused_name(name: Path, taken: set[str]) -> Path:
    """``name``, or ``<stem>_2<suffix>``, ``_3``... when it is in ``taken``; the result joins ``taken``.

    :func:`_inside_name` maps two different files (``imgs/a.jpg`` and ``../imgs/a.jpg``) to one
    name; without this the second copy would replace the first and the file name appear twice.
    """
    candidate, number = name, 1
    while candidate.as_posix().casefold() in taken:
        number += 1
        candidate = name.with_name(f"{name.stem}_{number}{name.suffix}")
    taken.add(candidate.as_posix().casefold())
    return candidate


def _complete_annotation(annotation: dict) -> None:
    """pycocotools needs ``area`` and ``iscrowd``; fill them only when absent (area = w * h)."""
    if "area" not in annotation:
        annotation["area"] = float(annotation["bbox"][2]) * float(annotation["bbox"][3])
    annotation.setdefault("iscrowd", 0)


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError:  # another filesystem, or links not allowed: a plain copy
        shutil.copy2(source, temporary)
    os.replace(temporary, target)


# --------------------------------------------------------------------------------------------------
# subset


def parse_split(text: str) -> tuple[float, float, float]:
    """``"3041/177/1521"`` (image counts) or ``"0.8/0.1/0.1"`` (fractions) as train, val, test."""
    parts = text.replace(",", "/").split("/")
    if len(parts) != 3:
        raise InputError(f"--split needs train/val/test, e.g. 3041/177/1521 or 0.8/0.1/0.1; got {text!r}")
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        raise InputError(f"--split parts must be numbers, got {text!r}") from None
    return values  # type: ignore[return-value]


def split_counts(split: Sequence[float], total: int) -> tuple[int, int, int]:
    """Image counts of the train, val and test parts among ``total`` images.

    Fractions (every part <= 1, summing to at most 1) are rounded down; when they sum to 1 the images
    left over by rounding go to train. Otherwise the parts must be whole numbers: counts, taken as
    given (a sum below ``total`` leaves the rest out; above it is refused).
    """
    if len(split) != 3 or any((not math.isfinite(v)) or v < 0 for v in split):
        raise InputError(f"split must be three non-negative numbers (train, val, test), got {tuple(split)!r}")
    if all(v <= 1 for v in split) and sum(split) <= 1 + 1e-9:
        counts = [int(math.floor(v * total + 1e-9)) for v in split]
        if abs(sum(split) - 1) < 1e-9:
            counts[0] += total - sum(counts)
        return counts[0], counts[1], counts[2]
    if not all(float(v).is_integer() for v in split):
        raise InputError(
            f"split {tuple(split)!r}: give image counts (whole numbers) or fractions that sum to at most 1"
        )
    counts = [int(v) for v in split]
    if sum(counts) > total:
        raise InputError(f"split {'/'.join(map(str, counts))} needs {sum(counts)} images, the subset has {total}")
    return counts[0], counts[1], counts[2]


def subset(
    coco: dict,
    category: str,
    split: Sequence[float] | None = None,
    seed: int = 0,
    keep_empty: bool = True,
    source: str = "<COCO dict>",
) -> dict[str, dict]:
    """One category against background: what the authors' Caffe fork did with ``CAT_IDS``.

    Keeps the images with at least one annotation of ``category`` (found by name), with only those
    annotations, and (with ``keep_empty``) the images that have no annotations at all: explicit
    negatives such as mined negative frames. Images whose annotations are all of other categories
    are left out. Ids, ``file_name``s (so the image root does not change), ``info``, ``licenses``
    and extra keys are kept.

    ``split``: ``None`` for one part called ``"all"``, else train/val/test counts or fractions (see
    :func:`split_counts`). Images are ordered by ``file_name`` and shuffled with ``random.Random(seed)``,
    so a split depends only on the image names, the category and the seed. Empty parts are omitted.
    Returns ``{part name: COCO dict}``.
    """
    validate(coco, source)
    wanted = category_by_name(coco, category, source)
    annotations_of_image: dict = {}
    images_with_any: set = set()
    for annotation in coco["annotations"]:
        images_with_any.add(annotation["image_id"])
        if annotation["category_id"] == wanted["id"]:
            annotations_of_image.setdefault(annotation["image_id"], []).append(annotation)
    kept = [
        image
        for image in coco["images"]
        if image["id"] in annotations_of_image or (keep_empty and image["id"] not in images_with_any)
    ]
    kept.sort(key=lambda image: image["file_name"])
    if split is None:
        parts = {"all": kept}
    else:
        counts = split_counts(split, len(kept))
        order = list(kept)
        random.Random(seed).shuffle(order)
        parts, start = {}, 0
        for name, count in zip(SPLIT_NAMES, counts):
            parts[name] = sorted(order[start : start + count], key=lambda image: image["id"])
            start += count
    result = {}
    for name, images in parts.items():
        if not images:
            continue
        part: dict = {}
        for key in ("info", "licenses"):
            if key in coco:
                part[key] = copy.deepcopy(coco[key])
        part["images"] = copy.deepcopy(images)
        part["annotations"] = [
            _completed(annotation) for image in images for annotation in annotations_of_image.get(image["id"], [])
        ]
        part["categories"] = [copy.deepcopy(wanted)]
        part["flickermine"] = {"subset_of": source, "category": category, "part": name, "seed": seed}
        result[name] = part
    return result


def _completed(annotation: dict) -> dict:
    annotation = copy.deepcopy(annotation)
    _complete_annotation(annotation)
    return annotation


def write_subset(
    coco_path: PathLike,
    category: str,
    out_dir: PathLike,
    split: Sequence[float] | None = None,
    seed: int = 0,
    keep_empty: bool = True,
) -> dict[str, Path]:
    """:func:`subset` of a file, each part written to ``out_dir/<part>.json``; returns their paths."""
    coco_path = Path(coco_path)
    out_dir = Path(out_dir)
    parts = subset(load(coco_path), category, split=split, seed=seed, keep_empty=keep_empty, source=str(coco_path))
    if not parts:
        raise InputError(f"{coco_path}: no image has a {category!r} annotation; nothing to write")
    written = {}
    for name, part in parts.items():
        target = out_dir / f"{name}.json"
        if target.resolve() == coco_path.resolve():
            raise InputError(f"{target} is the input file; subset never overwrites its input")
        written[name] = write(part, target)
    return written


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
