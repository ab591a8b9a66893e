"""COCO merge and subset on hand-built files."""

from __future__ import annotations

import json
import re
import os
from pathlib import Path

import pytest

from flickermine.io import _coco as coco


_JPEG_START = b"\xff\xd8\xff\xe0"


def _touch_images(root: Path, names) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_JPEG_START + b"not really a jpeg: merge reads only the first bytes")


def _base(root: Path) -> Path:
    """A base set: COCO-style ids (not from 1), two categories, one image without annotations."""
    images_dir = root / "base_images"
    names = ["a.jpg", "b.jpg", "c.jpg"]
    _touch_images(images_dir, names)
    data = {
        "info": {"description": "base set", "year": 2018},
        "licenses": [{"id": 3, "name": "CC BY", "url": "http://example.org/by"}],
        "images": [
            {"id": 100 + i, "file_name": name, "width": 64, "height": 48, "license": 3} for i, name in enumerate(names)
        ],
        "annotations": [
            {"id": 900, "image_id": 100, "category_id": 18, "bbox": [1, 2, 10, 20], "area": 200, "iscrowd": 0},
            {"id": 901, "image_id": 100, "category_id": 17, "bbox": [5, 5, 4, 4], "area": 16, "iscrowd": 0},
            {"id": 902, "image_id": 101, "category_id": 17, "bbox": [0, 0, 8, 8], "area": 64, "iscrowd": 0},
        ],
        "categories": [{"id": 17, "name": "cat", "supercategory": "animal"}, {"id": 18, "name": "dog", "supercategory": "animal"}],
    }
    path = root / "annotations" / "base.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    return path


def _mined(root: Path, name: str = "mined", category: str = "dog") -> Path:
    """Laid out as ``flickermine mine --out`` writes it: file names relative to the JSON's folder."""
    folder = root / name
    names = ["images/clip/000001.jpg", "images/clip/000002.jpg", "images/clip/000003.jpg"]
    _touch_images(folder, names)
    data = {
        "info": {"description": "mined"},
        "images": [
            {
                "id": i + 1,
                "file_name": file_name,
                "width": 64,
                "height": 48,
                "video": "clip",
                "frame_index": i,
                "hard_negatives": [{"bbox": [30, 30, 10, 10], "score": 0.91}],
            }
            for i, file_name in enumerate(names)
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [3, 3, 12, 12], "area": 144, "iscrowd": 0, "score": 0.99, "source": "detector"},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [4, 3, 12, 12], "area": 144, "iscrowd": 0, "score": None, "source": "tracker"},
        ],  # image 3: a negative-only frame, no annotations
        "categories": [{"id": 1, "name": category}],
    }
    path = folder / "annotations.json"
    path.write_text(json.dumps(data))
    return path


def _fingerprint(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), os.stat(path).st_mtime_ns


def _load_with_pycocotools(path: Path):
    pycocotools_coco = pytest.importorskip("pycocotools.coco")
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return pycocotools_coco.COCO(str(path))


def test_merge_remaps_ids_maps_categories_by_name_and_keeps_negatives(tmp_path):
    base, mined = _base(tmp_path), _mined(tmp_path)
    before = {p: _fingerprint(p) for p in (base, mined)}
    out = tmp_path / "merged" / "train.json"

    merged = coco.merge(base, mined, out=out, image_root=tmp_path / "base_images")

    assert {p: _fingerprint(p) for p in (base, mined)} == before, "inputs must not change"
    on_disk = json.loads(out.read_text())
    assert on_disk == merged
    assert [image["id"] for image in on_disk["images"]] == [1, 2, 3, 4, 5, 6]
    assert [a["id"] for a in on_disk["annotations"]] == [1, 2, 3, 4, 5]
    # categories by name: the mined "dog" (id 1 there) is the base's dog, id 18
    assert on_disk["categories"] == [
        {"id": 17, "name": "cat", "supercategory": "animal"},
        {"id": 18, "name": "dog", "supercategory": "animal"},
    ]
    mined_annotations = on_disk["annotations"][3:]
    assert [a["category_id"] for a in mined_annotations] == [18, 18]
    assert [a["image_id"] for a in mined_annotations] == [4, 5]
    assert [a["source"] for a in mined_annotations] == ["detector", "tracker"]
    # images without annotations stay: the base's c.jpg and the negative-only mined frame
    annotated = {a["image_id"] for a in on_disk["annotations"]}
    assert {image["id"] for image in on_disk["images"]} - annotated == {3, 6}
    # extra keys survive; info and licenses are kept
    assert on_disk["images"][5]["hard_negatives"] == [{"bbox": [30, 30, 10, 10], "score": 0.91}]
    assert on_disk["images"][3]["video"] == "clip" and on_disk["images"][3]["frame_index"] == 0
    assert on_disk["info"] == {"description": "base set", "year": 2018}
    assert on_disk["licenses"] == [{"id": 3, "name": "CC BY", "url": "http://example.org/by"}]
    # every file_name resolves from the new file's folder
    for image in on_disk["images"]:
        assert (out.parent / image["file_name"]).is_file(), image["file_name"]

    loaded = _load_with_pycocotools(out)
    assert len(loaded.getImgIds()) == 6
    assert loaded.getCatIds(catNms=["dog"]) == [18]
    assert len(loaded.getAnnIds(catIds=[18])) == 3


def test_merge_adds_new_category_names_with_fresh_ids(tmp_path):
    base, mined = _base(tmp_path), _mined(tmp_path, category="person")
    merged = coco.merge(base, mined, out=tmp_path / "out.json", image_root=tmp_path / "base_images")
    assert [(c["id"], c["name"]) for c in merged["categories"]] == [(17, "cat"), (18, "dog"), (19, "person")]
    assert {a["category_id"] for a in merged["annotations"][3:]} == {19}


def test_merge_refuses_duplicate_images_and_writes_nothing(tmp_path):
    base, mined = _base(tmp_path), _mined(tmp_path)
    out = tmp_path / "out.json"
    with pytest.raises(ValueError, match=r"duplicate image .*000001\.jpg"):
        coco.merge(base, mined, mined, out=out, image_root=tmp_path / "base_images")
    assert not out.exists()


def test_load_refuses_duplicate_file_names_within_a_file(tmp_path):
    path = tmp_path / "dup.json"
    images = [{"id": 1, "file_name": "x.jpg"}, {"id": 2, "file_name": "x.jpg"}]
    path.write_text(json.dumps({"images": images, "annotations": [], "categories": []}))
    with pytest.raises(ValueError, match=r"dup\.json: file_name 'x\.jpg' appears twice"):
        coco.load(path)


def test_merge_refuses_out_equal_to_an_input_and_missing_images(tmp_path):
    base, mined = _base(tmp_path), _mined(tmp_path)
    before = _fingerprint(mined)
    with pytest.raises(ValueError, match="one of the inputs"):
        coco.merge(base, mined, out=mined, image_root=tmp_path / "base_images")
    assert _fingerprint(mined) == before
    # without --image-root the base's images are looked for beside base.json, where they are not
    with pytest.raises(FileNotFoundError, match=r"3 image\(s\) not found.*--image-root"):
        coco.merge(base, mined, out=tmp_path / "out.json")


def test_merge_copy_images_makes_a_standalone_folder(tmp_path):
    base, mined = _base(tmp_path), _mined(tmp_path)
    out = tmp_path / "standalone" / "train.json"
    merged = coco.merge(base, mined, out=out, image_root=tmp_path / "base_images", copy_images=True)
    names = [image["file_name"] for image in merged["images"]]
    assert names[0] == "images/0/a.jpg" and names[3] == "images/1/images/clip/000001.jpg"
    for name in names:
        assert (out.parent / name).is_file()
    assert (tmp_path / "base_images" / "a.jpg").is_file(), "sources stay where they were"


def test_merge_copy_images_gives_names_differing_in_case_two_files(tmp_path):
    # on a case-insensitive disk IMGS/A.jpg is imgs/a.jpg: the second copy gets a name of its own,
    # which must not take a real image's either
    root = tmp_path / "coco" / "train"
    names = ["imgs/a.jpg", "IMGS/A.jpg", "imgs/a_2.jpg"]
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(_JPEG_START + name.encode())
    if len(list(root.iterdir())) != 2:
        pytest.skip("case-insensitive file system")
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"images": [{"id": i + 1, "file_name": n} for i, n in enumerate(names)], "annotations": [], "categories": []}))
    out = tmp_path / "standalone" / "train.json"

    merged = coco.merge(base, out=out, image_root=root, copy_images=True)

    written = [image["file_name"] for image in merged["images"]]
    assert len({name.casefold() for name in written}) == 3, written
    assert written[0] == "images/0/imgs/a.jpg"  # the first keeps its name
    reloaded = coco.load(out)  # no file_name twice
    assert [(out.parent / image["file_name"]).read_bytes() for image in reloaded["images"]] == [
        _JPEG_START + n.encode() for n in names
    ]


def test_merge_pools_licenses_and_remaps_their_ids(tmp_path):
    base = _base(tmp_path)
    other_dir = tmp_path / "other"
    _touch_images(other_dir, ["z.jpg"])
    other = other_dir / "other.json"
    other.write_text(
        json.dumps(
            {
                "licenses": [{"id": 3, "name": "CC0", "url": "http://example.org/zero"}],
                "images": [{"id": 1, "file_name": "z.jpg", "license": 3}],
                "annotations": [],
                "categories": [{"id": 1, "name": "dog"}],
            }
        )
    )
    merged = coco.merge(base, other, out=tmp_path / "out.json", image_root=tmp_path / "base_images")
    assert [(lic["id"], lic["name"]) for lic in merged["licenses"]] == [(3, "CC BY"), (4, "CC0")]
    assert merged["images"][-1]["license"] == 4


def test_subset_one_category_against_background_with_deterministic_split(tmp_path):
    images = [{"id": i + 1, "file_name": f"{i:03d}.jpg", "hard_negatives": []} for i in range(30)]
    annotations = []
    for image in images[:20]:  # 20 images with a dog, then 5 with only cats, then 5 empty
        annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "category_id": 18, "bbox": [0, 0, 5, 5]})
    for image in images[20:25]:
        annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "category_id": 17, "bbox": [0, 0, 5, 5]})
    annotations.append({"id": len(annotations) + 1, "image_id": 1, "category_id": 17, "bbox": [1, 1, 5, 5]})
    source = {
        "info": {"description": "x"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 17, "name": "cat"}, {"id": 18, "name": "dog"}],
    }
    parts = coco.subset(source, "dog", split=(15, 5, 5), seed=0)
    assert set(parts) == {"train", "val", "test"}
    ids = {name: {image["id"] for image in part["images"]} for name, part in parts.items()}
    assert [len(ids[name]) for name in ("train", "val", "test")] == [15, 5, 5]
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    # dog images and empty images are kept; cat-only images are not
    assert set().union(*ids.values()) == set(range(1, 21)) | set(range(26, 31))
    for part in parts.values():
        assert part["categories"] == [{"id": 18, "name": "dog"}]
        assert all(a["category_id"] == 18 for a in part["annotations"])
        assert all(a["area"] == 25 and a["iscrowd"] == 0 for a in part["annotations"])
        assert part["info"] == {"description": "x"}
        coco.validate(part)
    # deterministic for a seed, different for another
    again = coco.subset(source, "dog", split=(15, 5, 5), seed=0)
    assert again == parts
    other = coco.subset(source, "dog", split=(15, 5, 5), seed=1)
    assert {i["id"] for i in other["val"]["images"]} != ids["val"]
    # fractions: 25 images at 0.6/0.2/0.2
    fractions = coco.subset(source, "dog", split=(0.6, 0.2, 0.2), seed=0)
    assert [len(fractions[n]["images"]) for n in ("train", "val", "test")] == [15, 5, 5]


def test_subset_writes_files_that_load_in_pycocotools_and_refuses_bad_input(tmp_path):
    base = _base(tmp_path)
    before = _fingerprint(base)
    written = coco.write_subset(base, "dog", tmp_path / "dog", split=None)
    assert _fingerprint(base) == before
    assert list(written) == ["all"]
    loaded = _load_with_pycocotools(written["all"])
    assert sorted(loaded.getImgIds()) == [100, 102]  # the dog image and the empty one
    with pytest.raises(ValueError, match=r"no category named 'horse' \(categories: 'cat', 'dog'\)"):
        coco.write_subset(base, "horse", tmp_path / "horse")
    with pytest.raises(ValueError, match="needs 30 images, the subset has 2"):
        coco.write_subset(base, "dog", tmp_path / "dog", split=(10, 10, 10))
    with pytest.raises(ValueError, match="train/val/test"):
        coco.parse_split("10/10")


def test_validate_names_file_and_fault(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.jpg"}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, -3, 4]}],
                "categories": [{"id": 1, "name": "dog"}],
            }
        )
    )
    with pytest.raises(ValueError, match=r"bad\.json: annotations\[0\] bbox must be \[x, y, w, h\] with w, h >= 0, got \[0, 0, -3, 4\]"):
        coco.load(path)
    with pytest.raises(FileNotFoundError, match="nope.json: no such COCO file"):
        coco.load(tmp_path / "nope.json")


def _parser():
    import argparse

    from flickermine.cli import _coco as cli_coco
    from flickermine.cli import _evaluate as cli_evaluate
    from flickermine.cli import _train as cli_train

    parser = argparse.ArgumentParser(prog="flickermine")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in (cli_coco, cli_train, cli_evaluate):
        group.register(commands)
    return parser


def test_cli_merge_and_subset(tmp_path, capsys):
    base, mined = _base(tmp_path), _mined(tmp_path)
    out = tmp_path / "merged.json"
    args = _parser().parse_args(
        ["coco", "merge", str(base), str(mined), "--out", str(out), "--image-root", str(tmp_path / "base_images")]
    )
    assert args.handler(args) == 0
    assert "6 images (2 without annotations), 5 annotations; categories: cat, dog" in capsys.readouterr().out

    args = _parser().parse_args(["coco", "subset", str(out), "--category", "dog", "--split", "2/1/1", "--out", str(tmp_path / "dog")])
    assert args.handler(args) == 0
    printed = capsys.readouterr().out
    assert "train.json: 2 images" in printed and "val.json: 1 images" in printed and "test.json: 1 images" in printed
    # the dog images (a.jpg and two mined frames) and the two empty ones: 5 images, 4 asked for
    total = sum(len(coco.load(tmp_path / "dog" / f"{name}.json")["images"]) for name in ("train", "val", "test"))
    assert total == 4


def test_cli_train_without_torch_says_how_to_install(monkeypatch, tmp_path, capsys):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    args = _parser().parse_args(["train", "--train", "x.json", "--iterations", "1", "--out", str(tmp_path / "run")])
    assert args.handler(args) == 2
    assert "pip install 'flickermine[torch]'" in capsys.readouterr().err


def test_presets_pick_the_mined_mode_and_merge(tmp_path):
    from flickermine.dataset import _presets as presets

    base, mined = _base(tmp_path), _mined(tmp_path)
    (mined.parent / "run.json").write_text(json.dumps({"mode": "hn"}))
    image_root = tmp_path / "base_images"

    train_json, images = presets.prepare_training_set(presets.get("hard-negatives"), base, mined, tmp_path / "hn", image_root)
    assert train_json == tmp_path / "hn" / "train.json" and images == tmp_path / "hn"
    assert len(coco.load(train_json)["images"]) == 6

    assert presets.prepare_training_set(presets.get("baseline"), base, None, tmp_path / "b", image_root) == (base, image_root)
    with pytest.raises(ValueError, match="was mined with --mode hn; --preset hard-positives needs --mode hp"):
        presets.prepare_training_set(presets.get("hard-positives"), base, mined, tmp_path / "hp", image_root)
    with pytest.raises(ValueError, match="trains on the base set alone"):
        presets.prepare_training_set(presets.get("baseline"), base, mined, tmp_path / "b", image_root)
    with pytest.raises(ValueError, match="needs --mined"):
        presets.prepare_training_set(presets.get("hn+hp"), base, None, tmp_path / "x", image_root)
    # every preset trains on the same schedule, so the table's rows compare like with like
    assert len({(p.iterations, p.lr, p.lr_steps, p.lr_decay) for p in presets.PRESETS.values()}) == 1


# --------------------------------------------------------------------------------------------------
# --copy-images reads only images under each input's image root; copies, links only when asked


def _run_cli(argv):
    from flickermine.cli import main

    return main([str(a) for a in argv])


@pytest.mark.parametrize("escape", ["../../secret/id_rsa", "ABSOLUTE"])
def test_merge_copy_images_refuses_file_names_leaving_the_image_root(tmp_path, capsys, escape):
    base, mined = _base(tmp_path), _mined(tmp_path)
    secret = tmp_path / "secret" / "id_rsa"
    secret.parent.mkdir()
    secret.write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    name = str(secret) if escape == "ABSOLUTE" else escape
    data = json.loads(mined.read_text())
    data["images"][0]["file_name"] = name
    mined.write_text(json.dumps(data))
    out = tmp_path / "standalone" / "train.json"

    code = _run_cli(["coco", "merge", base, mined, "--out", out, "--image-root", tmp_path / "base_images", "--copy-images"])

    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert repr(name) in err and str(mined) in err and "image root" in err
    assert not out.exists() and not (out.parent / "images").exists()
    assert not any(p.name == "id_rsa" for p in tmp_path.rglob("*") if p != secret)


def test_merge_copy_images_refuses_a_file_that_is_not_an_image(tmp_path, capsys):
    base, mined = _base(tmp_path), _mined(tmp_path)
    # inside the root, but a key named like an image
    (tmp_path / "mined" / "images" / "clip" / "000002.jpg").write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    out = tmp_path / "standalone" / "train.json"

    code = _run_cli(["coco", "merge", base, mined, "--out", out, "--image-root", tmp_path / "base_images", "--copy-images"])

    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "'images/clip/000002.jpg'" in err and "not start like a jpg image" in err
    assert not out.exists()


def test_merge_copy_images_copies_rather_than_hard_links(tmp_path):
    base, mined = _base(tmp_path), _mined(tmp_path)
    out = tmp_path / "standalone" / "train.json"
    merged = coco.merge(base, mined, out=out, image_root=tmp_path / "base_images", copy_images=True)
    source = tmp_path / "base_images" / "a.jpg"
    copied = out.parent / merged["images"][0]["file_name"]
    assert copied.read_bytes() == source.read_bytes()
    assert not os.path.samefile(source, copied), "the merged folder must not share inodes with the sources"
    assert os.stat(source).st_nlink == 1
    copied.write_bytes(b"edited")
    assert source.read_bytes() != b"edited"


@pytest.mark.parametrize("flag", ["--copy-images", "--link-images"])
def test_merge_rerun_into_the_same_out_leaves_no_temporary_files(tmp_path, flag):
    base, mined = _base(tmp_path), _mined(tmp_path)
    out = tmp_path / "standalone" / "train.json"
    argv = ["coco", "merge", base, mined, "--out", out, "--image-root", tmp_path / "base_images", flag]
    assert _run_cli(argv) == 0
    assert _run_cli(argv) == 0
    leftovers = [p for p in out.parent.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    merged = coco.load(out)
    first = out.parent / merged["images"][0]["file_name"]
    assert os.path.samefile(first, tmp_path / "base_images" / "a.jpg") == (flag == "--link-images")
    assert merged["flickermine"]["link_images"] == (flag == "--link-images")


# --------------------------------------------------------------------------------------------------
# malformed COCO files: one line naming the file and the key, never a traceback


def _coco_file(tmp_path: Path, mutate=None, text: bytes | None = None) -> Path:
    _touch_images(tmp_path, ["a.jpg", "b.jpg"])
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
                   {"id": 2, "file_name": "b.jpg", "width": 64, "height": 48}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}],
        "categories": [{"id": 1, "name": "dog"}],
    }
    if mutate is not None:
        mutate(data)
    path = tmp_path / "bad.json"
    path.write_bytes(text if text is not None else json.dumps(data).encode())
    return path


def _set(keys, value):
    def mutate(data):
        target = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return mutate


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (_set(["images", 0, "id"], [1]), r"images\[0\] 'id' must be an integer id"),
        (_set(["annotations", 0, "image_id"], [1]), r"annotations\[0\] 'image_id' must be an integer id"),
        (_set(["categories", 0, "id"], {"a": 1}), r"categories\[0\] 'id' must be an integer id"),
        (_set(["categories", 0, "name"], ["dog"]), r"categories\[0\] 'name' must be a string"),
        (_set(["images", 0, "file_name"], 7), r"images\[0\] 'file_name' must be a non-empty path string, got 7"),
        (_set(["images", 0, "file_name"], None), r"images\[0\] 'file_name' must be a non-empty path string, got None"),
        (_set(["annotations", 0, "bbox"], [True, 0, 3, 4]), r"annotations\[0\] bbox must be"),
        (_set(["images", 1, "width"], float("nan")), r"images\[1\] 'width' must be a positive number"),
        (_set(["images", 1, "height"], -48), r"images\[1\] 'height' must be a positive number"),
        (_set(["annotations", 0, "area"], float("nan")), r"annotations\[0\] 'area' must be a number >= 0"),
        (_set(["licenses"], [[1]]), r"licenses\[0\] must be an object"),
        (_set(["images", 0, "license"], [1]), r"images\[0\] 'license' must be an integer id"),
    ],
)
def test_subset_and_merge_refuse_malformed_fields_naming_file_and_key(tmp_path, capsys, mutate, expected):
    path = _coco_file(tmp_path, mutate)
    for argv in (
        ["coco", "subset", path, "--category", "dog", "--out", tmp_path / "parts"],
        ["coco", "merge", path, path, "--out", tmp_path / "merged.json"],
    ):
        code = _run_cli(argv)
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert re.search(re.escape(str(path)) + ": " + expected, err), err
    assert not (tmp_path / "parts").exists() and not (tmp_path / "merged.json").exists()


@pytest.mark.parametrize(
    "text, expected",
    [
        (b'{"images": [], "annotations": [], "categories": [], "info": {"x": "caf\xe9"}}', r"not UTF-8 text \(byte 0xe9"),
        (b'{"images": [{"id": 1' + b"0" * 5000 + b', "file_name": "a.jpg"}], "annotations": [], "categories": []}',
         r"not usable JSON \(.*digits"),
        (b'{"images": [], "annotations": [], "categories": [], "info": ' + b"[" * 100000 + b"]" * 100000 + b"}",
         r"JSON nested too deeply"),
    ],
    ids=["non-utf8", "5000-digit-id", "deep-nesting"],
)
def test_unreadable_json_is_one_line_naming_the_file(tmp_path, capsys, text, expected):
    path = _coco_file(tmp_path, text=text)
    for argv in (
        ["coco", "subset", path, "--category", "dog", "--out", tmp_path / "parts"],
        ["coco", "merge", path, path, "--out", tmp_path / "merged.json"],
    ):
        code = _run_cli(argv)
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert re.search(re.escape(str(path)) + ": " + expected, err), err


def test_nesting_deep_enough_to_load_but_not_to_copy_is_one_line(tmp_path, capsys):
    # a depth json.load manages but copy.deepcopy (two frames a level) does not
    depth = 700
    path = _coco_file(tmp_path, _set(["images", 1, "extra"], json.loads("[" * depth + "]" * depth)))
    for argv in (
        ["coco", "subset", path, "--category", "dog", "--out", tmp_path / "parts"],
        ["coco", "merge", path, path, "--out", tmp_path / "merged.json"],
    ):
        code = _run_cli(argv)
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert str(path) in err and "nested too deeply" in err, err


# -- coco from-mot: labelled frames of a video --------------------------------------------------


def _labelled_clip(root: Path, frames: int = 10, as_file: bool = False) -> tuple[Path, Path, list]:
    """A clip (an image folder, or an MJPG AVI) with a bright square moving right, and its MOT
    ground truth: the square in every frame but 4, a flag-0 box in frame 5. Returns
    (clip, gt, colour frames)."""
    import cv2
    import numpy as np

    pictures = []
    for index in range(frames):
        image = np.full((48, 64, 3), 40, np.uint8)
        image[10:30, 5 + 3 * index : 17 + 3 * index] = (30, 200, 250)
        pictures.append(image)
    if as_file:
        clip = root / "clip.avi"
        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
        for image in pictures:
            writer.write(image)
        writer.release()
    else:
        clip = root / "clip"
        clip.mkdir()
        for index, image in enumerate(pictures):
            cv2.imwrite(str(clip / f"{index:04d}.png"), image)
    rows = [f"{f},1,{5 + 3 * (f - 1)},10,12,20,1,1,1" for f in range(1, frames + 1) if f != 4]
    rows.append("5,2,40,30,10,10,0,1,1")
    gt = root / "gt.txt"
    gt.write_text("\n".join(rows) + "\n")
    return clip, gt, pictures


def test_from_mot_writes_the_frames_asked_for_with_their_boxes(tmp_path, capsys):
    import cv2

    clip, gt, pictures = _labelled_clip(tmp_path)
    out = tmp_path / "set"
    assert _run_cli(["coco", "from-mot", clip, "--gt", gt, "--frames", "2-8/3,4,10", "--out", out, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "5 frames (1 without person boxes), 4 person boxes, 1 ignore regions" in printed
    written = coco.load(out / "annotations.json")
    names = [image["file_name"] for image in written["images"]]
    assert names == [f"images/clip_{f:06d}.jpg" for f in (2, 4, 5, 8, 10)]
    assert written["categories"] == [{"id": 1, "name": "person"}]
    by_image = {image["id"]: [a for a in written["annotations"] if a["image_id"] == image["id"]] for image in written["images"]}
    frame_of = {image["id"]: int(image["file_name"][-10:-4]) for image in written["images"]}
    for image_id, boxes_of_image in by_image.items():
        frame = frame_of[image_id]
        people = [a["bbox"] for a in boxes_of_image if not a["iscrowd"]]
        crowds = [a["bbox"] for a in boxes_of_image if a["iscrowd"]]
        assert people == ([] if frame == 4 else [[5 + 3 * (frame - 1), 10, 12, 20]])
        assert crowds == ([[40, 30, 10, 10]] if frame == 5 else [])
    for image in written["images"]:  # the frame itself, through JPEG
        decoded = cv2.imread(str(out / image["file_name"]))
        assert decoded.shape == (48, 64, 3) and (image["width"], image["height"]) == (64, 48)
        assert abs(decoded.astype(int) - pictures[frame_of[image["id"]] - 1]).mean() < 3
    _load_with_pycocotools(out / "annotations.json")


def test_from_mot_reads_a_video_file_once_and_stops_after_the_last_frame(tmp_path):
    from flickermine.dataset import write_labelled_frames

    clip, gt, _ = _labelled_clip(tmp_path, as_file=True)
    written = write_labelled_frames(clip, gt, [1, 3], tmp_path / "set")
    assert [image["file_name"] for image in written["images"]] == ["images/clip_000001.jpg", "images/clip_000003.jpg"]
    assert sorted(p.name for p in (tmp_path / "set" / "images").iterdir()) == ["clip_000001.jpg", "clip_000003.jpg"]


@pytest.mark.parametrize("as_file", [False, True], ids=["image folder", "video file"])
def test_from_mot_frames_past_the_end_are_an_error_that_leaves_nothing(tmp_path, capsys, as_file):
    clip, gt, _ = _labelled_clip(tmp_path, as_file=as_file)
    out = tmp_path / "set"
    assert _run_cli(["coco", "from-mot", clip, "--gt", gt, "--frames", "1-12", "--out", out, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "frame 11 is asked for" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    out.mkdir()  # an empty folder given: kept, empty
    assert _run_cli(["coco", "from-mot", clip, "--gt", gt, "--frames", "9-11", "--out", out, "--quiet"]) == 2
    assert out.is_dir() and not any(out.iterdir())


@pytest.mark.parametrize(
    "frames, message",
    [("5-2", "need 1 <= FIRST <= LAST"), ("0-3", "need 1 <= FIRST <= LAST"), ("a-b", "expected FIRST-LAST[/STEP]"),
     ("3-", "expected FIRST-LAST[/STEP]"), ("1-4/0", "STEP >= 1"), ("1-99999999999", "more than 10000000 frames")],
)
def test_from_mot_bad_frame_selections_are_one_line_errors(tmp_path, capsys, frames, message):
    clip, gt, _ = _labelled_clip(tmp_path)
    out = tmp_path / "set"
    assert _run_cli(["coco", "from-mot", clip, "--gt", gt, "--frames", frames, "--out", out]) == 2
    err = capsys.readouterr().err
    assert message in err and f"--frames {frames!r}" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_from_mot_overwrites_nothing_and_names_a_bad_ground_truth(tmp_path, capsys):
    clip, gt, _ = _labelled_clip(tmp_path)
    out = tmp_path / "set"
    out.mkdir()
    (out / "annotations.json").write_text("mine")
    assert _run_cli(["coco", "from-mot", clip, "--gt", gt, "--frames", "1-3", "--out", out]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert (out / "annotations.json").read_text() == "mine" and sorted(p.name for p in out.iterdir()) == ["annotations.json"]

    assert _run_cli(["coco", "from-mot", clip, "--gt", tmp_path / "nope.txt", "--frames", "1-3", "--out", tmp_path / "b"]) == 2
    assert "nope.txt: no such file" in capsys.readouterr().err and not (tmp_path / "b").exists()
    gt.write_text("1,1,5,10,12,20,1,1,1\n2,1,five,10,12,20,1,1,1\n")
    assert _run_cli(["coco", "from-mot", clip, "--gt", gt, "--frames", "1-3", "--out", tmp_path / "c"]) == 2
    assert "gt.txt:2: a field is not a number" in capsys.readouterr().err and not (tmp_path / "c").exists()


@pytest.mark.real_data
def test_from_mot_on_real_footage_matches_its_ground_truth(tmp_path):
    from .conftest import shared_data

    import numpy as np

    from flickermine.dataset import write_labelled_frames
    from flickermine.io._ground_truth import read_mot_boxes

    video = shared_data("pets09-s2l1", "video.avi")
    gt = shared_data("pets09-s2l1", "gt", "gt.txt")
    written = write_labelled_frames(video, gt, [1, 10, 20], tmp_path / "set")
    boxes, ignore = read_mot_boxes(gt)
    assert [(i["width"], i["height"]) for i in written["images"]] == [(768, 576)] * 3
    for image, frame in zip(written["images"], (1, 10, 20)):
        mine = [a for a in written["annotations"] if a["image_id"] == image["id"]]
        people = sorted(tuple(a["bbox"]) for a in mine if not a["iscrowd"])
        expected = sorted((x1, y1, x2 - x1, y2 - y1) for x1, y1, x2, y2 in boxes.get(frame, []).tolist())
        assert len(people) == len(expected) > 0
        assert np.allclose(people, expected)
        assert sum(a["iscrowd"] for a in mine) == len(ignore.get(frame, []))
