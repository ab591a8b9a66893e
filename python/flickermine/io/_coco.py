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
(a temporary file in the target folder, flushed, then renamed over the target).
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Union

from .._files import commit_replacement, replaced_atomically
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
    except UnicodeDecodeError as error:
        raise CocoFormatError(
            f"{path}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start})"
        ) from None
    except RecursionError:
        raise CocoFormatError(f"{path}: JSON nested too deeply to read (an array or object inside thousands of others)") from None
    except ValueError as error:  # e.g. an integer of more than 4300 digits
        raise CocoFormatError(f"{path}: not usable JSON ({error})") from None
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

    if "licenses" in coco:
        if not isinstance(coco["licenses"], list):
            raise CocoFormatError(f"{source}: 'licenses' must be a list, got {type(coco['licenses']).__name__}")
        for index, license_ in enumerate(coco["licenses"]):
            if not isinstance(license_, dict):
                raise CocoFormatError(f"{source}: licenses[{index}] must be an object, got {_short(license_)}")
            if "id" in license_:
                _check_id(license_["id"], f"{source}: licenses[{index}]", "id")

    category_ids: set = set()
    category_names: set = set()
    for index, category in enumerate(coco["categories"]):
        if not isinstance(category, dict) or "id" not in category or "name" not in category:
            raise CocoFormatError(f"{source}: categories[{index}] needs 'id' and 'name', got {_short(category)}")
        _check_id(category["id"], f"{source}: categories[{index}]", "id")
        if not isinstance(category["name"], str):
            raise CocoFormatError(f"{source}: categories[{index}] 'name' must be a string, got {_short(category['name'])}")
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
        _check_id(image["id"], f"{source}: images[{index}]", "id")
        file_name = image["file_name"]
        if not isinstance(file_name, str) or not file_name.strip() or "\0" in file_name:
            raise CocoFormatError(
                f"{source}: images[{index}] 'file_name' must be a non-empty path string, got {_short(file_name)}"
            )
        if "license" in image and image["license"] is not None:
            _check_id(image["license"], f"{source}: images[{index}]", "license")
        for key in ("width", "height"):
            if key in image and not (_is_number(image[key]) and image[key] > 0):
                raise CocoFormatError(
                    f"{source}: images[{index}] {key!r} must be a positive number of pixels, got {_short(image[key])}"
                )
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
        for key in ("id", "image_id", "category_id"):
            _check_id(annotation[key], where, key)
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
            or not all(_is_number(v) for v in bbox)
            or bbox[2] < 0
            or bbox[3] < 0
        ):
            raise CocoFormatError(f"{where} bbox must be [x, y, w, h] with w, h >= 0, got {_short(bbox)}")
        if "area" in annotation and not (_is_number(annotation["area"]) and annotation["area"] >= 0):
            raise CocoFormatError(f"{where} 'area' must be a number >= 0, got {_short(annotation['area'])}")


def _is_number(value: Any) -> bool:
    """A finite int or float; ``True``/``False`` are not numbers here."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _check_id(value: Any, where: str, key: str) -> None:
    """An id is an integer (or a string, as some converters write); never a list, null, bool or float."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise CocoFormatError(f"{where} {key!r} must be an integer id, got {_short(value)}")


def write(coco: dict, path: PathLike) -> Path:
    """Write ``coco`` as JSON to ``path`` atomically: readers see the old file or the new one, never half."""
    path = Path(path)
    with replaced_atomically(path) as temporary, open(temporary, "w", encoding="utf-8") as stream:
        json.dump(coco, stream)
        stream.write("\n")
    return path


def _missing_images(coco: dict, image_root: PathLike) -> list[Path]:
    """The image files of ``coco`` that are not readable files under ``image_root``, in file order.

    A trainer reads an image only when it draws it; checking them all first turns a run that would
    stop hours in (or at its first validation) into an error before it starts.
    """
    root = Path(image_root)
    paths = (root / image["file_name"] for image in coco["images"])  # an absolute file_name stays as it is
    return [path for path in paths if not (path.is_file() and os.access(path, os.R_OK))]


def require_images(coco: dict, image_root: PathLike, source: PathLike, option: str) -> None:
    """FileNotFoundError naming the first :func:`_missing_images` of ``source`` (found under the
    folder that command-line ``option`` names), or nothing when every image is there."""
    missing = _missing_images(coco, image_root)
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
    link_images: bool = False,
    rename_categories: Mapping[str, str] | None = None,
    new_categories: bool = True,
    reject: Sequence[PathLike] = (),
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
    images are copied (a reflink where the filesystem can, else bytes) to
    ``<out folder>/images/<k>/<file_name>``, ``k`` being the input's position, so the new folder
    stands alone; with ``link_images`` (which implies ``copy_images``) they are hard-linked instead
    (copied where links are impossible): no space used, but the two folders then share the files,
    so editing an image in one edits it in the other. Files whose name differs only in case get
    ``_2``, ``_3``... before the extension.

    Copying reads only images inside each input's image root: a ``file_name`` that is absolute or
    has a ``..`` part, or a file that is not an image (by extension and first bytes), is refused.

    Refused, before anything is written: an ``out`` that is one of the inputs, and the same image
    file twice (within one input or across inputs).

    ``rename_categories`` (``{mined name: base name}``, ``--category-map mined=base``) renames the
    mined files' categories first (e.g. ``object`` -> ``person``). With ``new_categories=False``
    a mined category whose name the base lacks (when the base has any) is refused when annotations
    use it, and left out when none do, rather than silently becoming a second category.

    ``reject`` (``--reject marks.json``, the "Export marks" file of ``flickermine review``) takes
    the items a reviewer marked wrong out of the mined files first; see :func:`reject_marked`.
    """
    copy_images = copy_images or link_images
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
    for marks_path in reject:
        marks = _load_marks(marks_path)
        marked = 1 + _marked_input(marks, inputs[1:], marks_path)
        reject_marked(sources[marked], marks, f"--reject {marks_path}", inputs[marked])

    renames = dict(rename_categories or {})
    base_names = [c["name"] for c in sources[0]["categories"]]
    mined_names = {c["name"] for coco in sources[1:] for c in coco["categories"]}
    for old, new in renames.items():
        if old not in mined_names:
            raise InputError(
                f"--category-map {old}={new}: no mined file has a category {old!r} "
                f"(theirs: {', '.join(repr(n) for n in sorted(mined_names)) or 'none'})"
            )
        if new not in base_names:
            raise InputError(
                f"--category-map {old}={new}: {inputs[0]} has no category {new!r} "
                f"(its categories: {', '.join(repr(n) for n in base_names) or 'none'})"
            )
    for coco in sources[1:]:  # renamed in (private copies of) the mined files
        coco["categories"] = [{**c, "name": renames.get(c["name"], c["name"])} for c in coco["categories"]]
    if not new_categories and base_names:
        for path, coco in zip(inputs[1:], sources[1:]):
            used = {a["category_id"] for a in coco["annotations"]}
            strangers = [c["name"] for c in coco["categories"] if c["name"] not in base_names and c["id"] in used]
            if strangers:
                names = ", ".join(repr(n) for n in strangers)
                raise InputError(
                    f"{path}: category {names} is not one of {inputs[0]}'s ({', '.join(repr(n) for n in base_names)}): "
                    f"merged, it would be a second category; map it with --category-map {strangers[0]}={base_names[0]}, "
                    "or keep it as a new category with --new-categories"
                )
            coco["categories"] = [c for c in coco["categories"] if c["name"] in base_names]

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

    info_from = next(((path, coco["info"]) for path, coco in zip(inputs, sources) if "info" in coco), None)
    merged: dict = {}
    if info_from is not None:
        merged["info"] = _deepcopy(info_from[1], f"{info_from[0]}: 'info'")
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
            try:
                content = json.dumps({k: v for k, v in license_.items() if k != "id"}, sort_keys=True)
            except RecursionError:
                raise CocoFormatError(f"{path}: a license is nested too deeply") from None
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
        for index, image in enumerate(coco["images"]):
            source_file = Path(image["file_name"])
            if copy_images:
                _require_inside(image["file_name"], root, path)
            if not source_file.is_absolute():
                source_file = root / source_file
            if not source_file.is_file():
                missing.append(f"{source_file} (image {image['file_name']!r} of {path})")
                continue
            if copy_images:
                _require_image_file(source_file, image["file_name"], path)
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
            new_image = _deepcopy(image, f"{path}: images[{index}]")
            new_image["id"] = len(merged["images"]) + 1
            new_image["file_name"] = file_name
            if "license" in new_image and new_image["license"] in license_map:
                new_image["license"] = license_map[new_image["license"]]
            image_map[image["id"]] = new_image["id"]
            merged["images"].append(new_image)
        for index, annotation in enumerate(coco["annotations"]):
            if annotation["image_id"] not in image_map:
                continue  # its image is missing; reported below
            new_annotation = _deepcopy(annotation, f"{path}: annotations[{index}]")
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
    merged["flickermine"] = {
        "merged_from": [str(p) for p in inputs], "copy_images": copy_images, "link_images": link_images,
    }

    for source_file, target in links:
        if link_images:
            _link_or_copy(source_file, target)
        else:
            _copy(source_file, target)
    write(merged, out)
    return merged


# --------------------------------------------------------------------------------------------------
# review marks (flickermine review's "Export marks")

#: kinds of a marked item: a record of an image's ``hard_negatives`` or ``label_flickers``, or a tracker label
MARK_KINDS = ("hard_negative", "hard_positive", "label_flicker")
_BOX_TOLERANCE = 0.01  # pixels: boxes are written rounded to 1/1000


def _load_marks(path: PathLike) -> dict:
    """A marks file of ``flickermine review``: ``{"dataset": DIR, "rejected": [{"image_id", "box", "kind"}...]}``."""
    path = Path(path)
    try:
        marks = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"--reject {path}: no such file") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise InputError(f"--reject {path}: not a JSON file ({error})") from None
    if not isinstance(marks, dict) or not isinstance(marks.get("rejected"), list):
        raise InputError(f"--reject {path}: expected {{\"dataset\": ..., \"rejected\": [...]}} (review.html's Export marks)")
    for index, item in enumerate(marks["rejected"]):
        box = item.get("box") if isinstance(item, dict) else None
        if (
            not isinstance(item, dict) or item.get("kind") not in MARK_KINDS or "image_id" not in item
            or not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box)
        ):
            raise InputError(
                f"--reject {path}: rejected[{index}] must be {{\"image_id\": id, \"box\": [x, y, w, h], "
                f"\"kind\": \"hard_negative\" | \"hard_positive\" | \"label_flicker\"}}, got {_short(item)}"
            )
    return marks


def _marked_input(marks: dict, mined: Sequence[Path], marks_path: PathLike) -> int:
    """Which mined file (position in ``mined``) a marks file is about: its ``dataset`` folder (or file)."""
    dataset = marks.get("dataset")
    if isinstance(dataset, str) and dataset:
        wanted = Path(dataset).resolve()
        for position, path in enumerate(mined):
            if wanted in (path.resolve(), path.resolve().parent):
                return position
    if len(mined) == 1:  # a moved folder: the marks are checked item by item against it
        return 0
    raise InputError(
        f"--reject {marks_path}: its dataset {dataset!r} is none of the mined files "
        f"({', '.join(str(p) for p in mined)}); review and mark each mined folder separately"
    )


def _same_box(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == 4 and len(b) == 4 and all(abs(float(x) - float(y)) <= _BOX_TOLERANCE for x, y in zip(a, b))


def reject_marked(coco: dict, marks: dict, source: str = "marks", dataset: PathLike | None = None) -> dict:
    """Take a reviewer's rejected items out of a mined COCO dict (in place); returns counts.

    A rejected hard positive (``kind: "hard_positive"``) is the tracker's label with that box on
    that image: the label is removed. A rejected hard negative (``kind: "hard_negative"``) is the
    image's ``hard_negatives`` record with that box: the record is removed, and so is the image
    with all its annotations, since the box marked wrong is an object the image leaves unlabelled
    (kept, it would teach the object as background). Every mark must be found (same image id,
    ``file_name`` when the mark has one, box within 0.01 px), or nothing is changed and an
    :class:`InputError` says which mark is not in ``dataset``. A rejected label flicker
    (``kind: "label_flicker"``, per-class mining) removes that record of the image's ``label_flickers``.
    """
    images = {image["id"]: image for image in coco["images"]}
    negatives: list[tuple[Any, int]] = []
    flickers: list[tuple[Any, int]] = []
    positives: set[int] = set()
    where = f" of {dataset}" if dataset is not None else ""
    for index, mark in enumerate(marks.get("rejected", [])):
        image = images.get(mark["image_id"])
        if image is None or ("file_name" in mark and mark["file_name"] != image.get("file_name")):
            raise InputError(
                f"{source}: rejected[{index}] names image {mark['image_id']!r} ({mark.get('file_name', '?')}), "
                f"not an image{where}; were the marks made on another mined set?"
            )
        if mark["kind"] == "hard_negative":
            records = image.get("hard_negatives") or []
            found = [k for k, record in enumerate(records) if _same_box(record.get("bbox", ()), mark["box"])]
            if not found:
                raise InputError(f"{source}: rejected[{index}]: image {mark['image_id']!r}{where} has no hard negative at {mark['box']}")
            negatives.append((image["id"], found[0]))
        elif mark["kind"] == "label_flicker":
            records = image.get("label_flickers") or []
            found = [k for k, record in enumerate(records) if _same_box(record.get("bbox", ()), mark["box"])]
            if not found:
                raise InputError(f"{source}: rejected[{index}]: image {mark['image_id']!r}{where} has no label flicker at {mark['box']}")
            flickers.append((image["id"], found[0]))
        else:
            found = [
                k for k, annotation in enumerate(coco["annotations"])
                if annotation["image_id"] == image["id"] and annotation.get("source") == "tracker"
                and _same_box(annotation.get("bbox", ()), mark["box"])
            ]
            if not found:
                raise InputError(f"{source}: rejected[{index}]: image {mark['image_id']!r}{where} has no hard positive at {mark['box']}")
            positives.add(found[0])
    dropped_images = {image_id for image_id, _ in negatives}
    for key, marked in (("hard_negatives", negatives), ("label_flickers", flickers)):
        for image_id, record_index in sorted(set(marked), key=lambda n: -n[1]):
            del images[image_id][key][record_index]
    coco["images"] = [image for image in coco["images"] if image["id"] not in dropped_images]
    before = len(coco["annotations"])
    coco["annotations"] = [
        annotation for k, annotation in enumerate(coco["annotations"])
        if k not in positives and annotation["image_id"] not in dropped_images
    ]
    return {
        "hard_negatives": len(negatives), "hard_positives": len(positives), "label_flickers": len(flickers),
        "images": len(dropped_images),
        "annotations": before - len(coco["annotations"]),
    }


def _deepcopy(value: Any, where: str) -> Any:
    try:
        return copy.deepcopy(value)
    except RecursionError:
        raise CocoFormatError(f"{where} is nested too deeply (lists or objects inside hundreds of others)") from None


#: first bytes of the image formats a trainer reads (OpenCV, PIL), by extension
_IMAGE_MAGIC: dict[str, tuple[bytes, ...]] = {
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".bmp": (b"BM",),
    ".tif": (b"II*\x00", b"MM\x00*"),
    ".tiff": (b"II*\x00", b"MM\x00*"),
    ".webp": (b"RIFF",),
}


def _require_inside(file_name: str, root: Path, source: Path) -> None:
    """Refuse a ``file_name`` that leaves its image root (absolute, or with a ``..`` part)."""
    name = Path(file_name)
    if name.is_absolute() or name.anchor or ".." in name.parts or ".." in file_name.replace("\\", "/").split("/"):
        raise InputError(
            f"{source}: file_name {file_name!r} leaves its image root {root} (absolute or with '..'); "
            "merge copies only images under each file's image root"
        )


def _require_image_file(path: Path, file_name: str, source: Path) -> None:
    """Refuse a file that is not an image: its extension and first bytes must agree."""
    magics = _IMAGE_MAGIC.get(path.suffix.lower())
    if magics is None:
        raise InputError(
            f"{source}: file_name {file_name!r} is not an image file "
            f"(extension not one of {', '.join(sorted(_IMAGE_MAGIC))}); merge copies only images"
        )
    with open(path, "rb") as stream:
        head = stream.read(12)
    if not any(head.startswith(magic) for magic in magics) or (path.suffix.lower() == ".webp" and head[8:12] != b"WEBP"):
        raise InputError(
            f"{source}: file_name {file_name!r} ({path}) does not start like a {path.suffix.lower()[1:]} image; "
            "merge copies only images"
        )


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


def _temporary_beside(target: Path) -> Path:
    """A fresh, unused name beside ``target`` (nothing is created there)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")


def _copy(source: Path, target: Path) -> None:
    """Copy ``source`` over ``target`` (a reflink where the filesystem shares blocks, else bytes),
    through a temporary file renamed into place: ``target`` never shares the source's inode."""
    temporary = _temporary_beside(target)
    try:
        if not _reflink(source, temporary):
            shutil.copy2(source, temporary)
        else:
            shutil.copystat(source, temporary)
        commit_replacement(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _reflink(source: Path, target: Path) -> bool:
    """Clone ``source`` into a new ``target`` with the FICLONE ioctl (btrfs, XFS); False where it cannot."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Windows
        return False
    ficlone = 0x40049409
    try:
        with open(source, "rb") as src, open(target, "xb") as dst:
            try:
                fcntl.ioctl(dst.fileno(), ficlone, src.fileno())
                return True
            except OSError:
                pass
    except OSError:
        pass
    target.unlink(missing_ok=True)
    return False


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` as ``target`` (copy where links are impossible); a rerun leaves no temporary file."""
    try:
        if os.path.samefile(source, target):
            return  # already this file: renaming a second link of one inode over it would do nothing
    except OSError:
        pass  # no target yet
    temporary = _temporary_beside(target)
    try:
        try:
            os.link(source, temporary)
        except OSError:  # another filesystem, or links not allowed: a plain copy
            shutil.copy2(source, temporary)
        commit_replacement(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


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


def _split_counts(split: Sequence[float], total: int) -> tuple[int, int, int]:
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
    :func:`_split_counts`). Images are ordered by ``file_name`` and shuffled with ``random.Random(seed)``,
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
        counts = _split_counts(split, len(kept))
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
                part[key] = _deepcopy(coco[key], f"{source}: {key!r}")
        part["images"] = [_deepcopy(image, f"{source}: image id {image['id']!r}") for image in images]
        part["annotations"] = [
            _completed(annotation, source) for image in images for annotation in annotations_of_image.get(image["id"], [])
        ]
        part["categories"] = [copy.deepcopy(wanted)]
        part["flickermine"] = {"subset_of": source, "category": category, "part": name, "seed": seed}
        result[name] = part
    return result


def _completed(annotation: dict, source: str = "<COCO dict>") -> dict:
    annotation = _deepcopy(annotation, f"{source}: annotation id {annotation['id']!r}")
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
