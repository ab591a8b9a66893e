"""Fine-tuning on a tiny synthetic COCO set: the loss falls, resume is exact, negatives train."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
cv2 = pytest.importorskip("cv2")

from flickermine.cli import _coco as cli_coco  # noqa: E402
from flickermine.cli import _evaluate as cli_evaluate  # noqa: E402
from flickermine.cli import _train as cli_train  # noqa: E402
from flickermine.detect._torchvision import build_model  # noqa: E402
from flickermine.evaluate._on_coco import evaluate  # noqa: E402
from flickermine.train._torch import TrainConfig, train  # noqa: E402

#: a small Faster R-CNN: few proposals and sampled boxes, so an iteration on 64 px images is cheap
TINY_MODEL = {
    "rpn_pre_nms_top_n_train": 100,
    "rpn_post_nms_top_n_train": 50,
    "rpn_pre_nms_top_n_test": 100,
    "rpn_post_nms_top_n_test": 50,
    "rpn_batch_size_per_image": 64,
    "box_batch_size_per_image": 32,
}


@pytest.fixture(autouse=True)
def one_thread():
    # one thread: on a shared 2-core machine, two OpenMP threads spin against other jobs and run
    # several times slower than one
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_squares(root: Path, count: int = 8, negatives: int = 2, seed: int = 0, size: int = 64) -> Path:
    """``count`` noisy ``size``x``size`` images; all but the first ``negatives`` hold one bright
    square (20..32 px), labelled ``square``. Returns the COCO file, written beside the images."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "square"}]}
    for index in range(count):
        pixels = (rng.random((size, size, 3)) * 60 + 40).astype(np.uint8)
        name = f"{index:03d}.png"
        coco["images"].append({"id": index + 1, "file_name": name, "width": size, "height": size})
        if index >= negatives:
            side = int(rng.integers(20, 33))
            x, y = (int(v) for v in rng.integers(0, size - side, 2))
            pixels[y : y + side, x : x + side] = 230
            coco["annotations"].append(
                {"id": len(coco["annotations"]) + 1, "image_id": index + 1, "category_id": 1,
                 "bbox": [x, y, side, side], "area": side * side, "iscrowd": 0}
            )
        assert cv2.imwrite(str(root / name), pixels)
    path = root / "train.json"
    path.write_text(json.dumps(coco))
    return path


def loop_parser() -> argparse.ArgumentParser:
    """The ``coco``, ``train`` and ``evaluate`` subcommands, as the main CLI registers them."""
    parser = argparse.ArgumentParser(prog="flickermine")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in (cli_coco, cli_train, cli_evaluate):
        group.register(commands)
    return parser


def tiny_config(train_json: Path, out: Path, **overrides) -> TrainConfig:
    settings = dict(
        train=train_json,
        out=out,
        model="fasterrcnn_mobilenet_v3_large_fpn",
        min_size=64,
        max_size=64,
        model_options=TINY_MODEL,
        batch_size=2,
        lr=0.01,
        workers=0,
        progress=False,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.mark.slow
def test_loss_falls_and_the_result_evaluates(tmp_path):
    train_json = make_squares(tmp_path / "data")
    result = train(tiny_config(train_json, tmp_path / "run", iterations=40, checkpoint_every=20))

    losses = np.array(result.losses)
    assert len(losses) == 40 and np.isfinite(losses).all()
    assert losses[-10:].mean() < 0.85 * losses[:10].mean(), losses.round(3)
    for name in ("checkpoint.pt", "final.pt", "train.log"):
        assert (tmp_path / "run" / name).is_file(), name
    log = (tmp_path / "run" / "train.log").read_text()
    assert "8 images (2 without boxes: negatives), 6 boxes" in log and "iteration 40 loss" in log

    summary = evaluate(train_json, None, result.final, out=tmp_path / "ap.json", device="cpu", progress=False)
    written = json.loads((tmp_path / "ap.json").read_text())
    assert written["AP"] == summary["AP"] and 0.0 <= summary["AP"] <= 1.0
    assert summary["categories"] == ["square"] and summary["ground_truth_boxes"] == 6


@pytest.mark.slow
def test_stop_and_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    train_json = make_squares(tmp_path / "data")
    common = dict(checkpoint_every=3, val=train_json, val_every=3)
    straight = train(tiny_config(train_json, tmp_path / "straight", iterations=6, **common))

    first = train(tiny_config(train_json, tmp_path / "resumed", iterations=3, **common))
    assert first.iteration == 3
    resumed = train(tiny_config(train_json, tmp_path / "resumed", iterations=6, resume=True, **common))
    assert resumed.iteration == 6 and len(resumed.losses) == 3
    assert resumed.losses == straight.losses[3:]

    expected = torch.load(straight.final, weights_only=True)["model"]
    got = torch.load(resumed.final, weights_only=True)["model"]
    assert expected.keys() == got.keys()
    different = [key for key in expected if not torch.equal(expected[key], got[key])]
    assert not different, different[:5]
    # validation ran and the best checkpoint is kept
    assert [v["iteration"] for v in straight.validations] == [3, 6]
    assert straight.best is not None and straight.best.is_file()


@pytest.mark.slow
def test_images_without_annotations_train_as_negatives(tmp_path):
    # every image a negative: boxes of shape (0, 4); the box-regression losses are 0, nothing fails
    train_json = make_squares(tmp_path / "data", count=3, negatives=3)
    result = train(tiny_config(train_json, tmp_path / "run", iterations=3))
    assert len(result.losses) == 3 and all(np.isfinite(result.losses))
    assert "3 images (3 without boxes: negatives), 0 boxes" in (tmp_path / "run" / "train.log").read_text()


@pytest.mark.slow
def test_run_folder_and_weights_are_checked(tmp_path):
    train_json = make_squares(tmp_path / "data", count=3)
    out = tmp_path / "run"
    train(tiny_config(train_json, out, iterations=1))
    with pytest.raises(ValueError, match="holds a run already.*--resume"):
        train(tiny_config(train_json, out, iterations=2))
    with pytest.raises(ValueError, match=r"other settings \(lr: 0.01 then, 0.02 now\)"):
        train(tiny_config(train_json, out, iterations=2, resume=True, lr=0.02))

    # a state dict with 3 classes cannot start a 1-category (2-class) model unless the head is new
    weights = tmp_path / "three_classes.pt"
    torch.save(build_model("fasterrcnn_mobilenet_v3_large_fpn", 3, 64, 64).state_dict(), weights)
    with pytest.raises(ValueError, match=r"three_classes\.pt: its box predictor has 3 classes \(2 categories \+ background\), the training set needs 2"):
        train(tiny_config(train_json, tmp_path / "mismatch", iterations=1, weights=weights))
    result = train(tiny_config(train_json, tmp_path / "new_head", iterations=1, weights=weights, new_head=True))
    assert result.iteration == 1


@pytest.mark.slow
def test_cli_train_and_evaluate(tmp_path, capsys):
    train_json = make_squares(tmp_path / "data", count=3)
    parser = loop_parser()
    out = tmp_path / "run"
    args = parser.parse_args(
        ["train", "--train", str(train_json), "--model", "fasterrcnn_mobilenet_v3_large_fpn", "--iterations", "2",
         "--lr", "0.005", "--lr-steps", "1", "--min-size", "64", "--max-size", "64", "--workers", "0",
         "--device", "cpu", "--quiet", "--out", str(out)]
    )
    assert args.handler(args) == 0
    assert "trained to iteration 2" in capsys.readouterr().out
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["scheduler"]["_last_lr"] == [pytest.approx(0.0005)]  # decayed at iteration 1

    args = parser.parse_args(["evaluate", "--coco", str(train_json), "--weights", str(out / "final.pt"),
                              "--device", "cpu", "--quiet", "--out", str(tmp_path / "ap.json")])
    assert args.handler(args) == 0
    assert json.loads(capsys.readouterr().out)["AP"] == json.loads((tmp_path / "ap.json").read_text())["AP"]


def test_pretrained_layout_and_plain_state_dicts_load(tmp_path):
    from flickermine.detect._torchvision import load_detector

    # torchvision's pretrained layout, built without a download: frozen backbone batch norm
    # (no num_batches_tracked counters) and the early backbone stages fixed
    model = build_model("fasterrcnn_mobilenet_v3_large_fpn", 3, 64, 64, frozen_batchnorm=True)
    body = dict(model.backbone.body.named_parameters())
    assert not body["0.0.weight"].requires_grad and body["16.0.weight"].requires_grad
    state = model.state_dict()
    assert not any(k.startswith("backbone.body.") and k.endswith("num_batches_tracked") for k in state)
    path = tmp_path / "plain.pt"
    torch.save(state, path)
    categories = [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}]
    loaded, labels = load_detector(path, "cpu", model_name="fasterrcnn_mobilenet_v3_large_fpn", coco_categories=categories)
    assert labels == categories  # 3 classes = 2 categories + background, in id order
    assert torch.equal(loaded.state_dict()["roi_heads.box_predictor.cls_score.weight"], state["roi_heads.box_predictor.cls_score.weight"])


@contextlib.contextmanager
def interrupted_after_step(count: int, signals: int = 1):
    """While active, this process gets ``signals`` SIGINTs right after the ``count``-th optimizer
    step: inside an iteration, before its counter and scheduler have moved on."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    steps = 0

    def hook(optimizer, args, kwargs):
        nonlocal steps
        steps += 1
        if steps == count:
            for _ in range(signals):
                os.kill(os.getpid(), signal.SIGINT)

    # As a terminal starts it: a process started in the background by a non-interactive shell
    # (`pytest ... &`) inherits SIGINT ignored, which training rightly leaves alone.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    handle = register_optimizer_step_post_hook(hook)
    try:
        yield
    finally:
        handle.remove()
        signal.signal(signal.SIGINT, previous)


@pytest.mark.slow
def test_ctrl_c_mid_iteration_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    train_json = make_squares(tmp_path / "data")
    straight = train(tiny_config(train_json, tmp_path / "straight", iterations=5, checkpoint_every=100))

    with interrupted_after_step(3):
        with pytest.raises(KeyboardInterrupt):
            train(tiny_config(train_json, tmp_path / "resumed", iterations=5, checkpoint_every=100))
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "the caller's handler is put back"
    checkpoint = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert checkpoint["iteration"] == 3  # the iteration under way when Ctrl-C came is finished first
    assert "interrupted at iteration 3" in (tmp_path / "resumed" / "train.log").read_text()

    resumed = train(tiny_config(train_json, tmp_path / "resumed", iterations=5, checkpoint_every=100, resume=True))
    assert resumed.losses == straight.losses[3:]
    expected = torch.load(straight.final, weights_only=True)["model"]
    got = torch.load(resumed.final, weights_only=True)["model"]
    different = [key for key in expected if not torch.equal(expected[key], got[key])]
    assert not different, different[:5]


@pytest.mark.slow
def test_second_ctrl_c_aborts_at_once_without_a_checkpoint(tmp_path):
    train_json = make_squares(tmp_path / "data", count=3)
    with interrupted_after_step(2, signals=2):
        with pytest.raises(KeyboardInterrupt):
            train(tiny_config(train_json, tmp_path / "run", iterations=5, checkpoint_every=100))
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # the state was mid-iteration: no checkpoint of it, and nothing says there is one
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    assert "aborted during iteration 2" in (tmp_path / "run" / "train.log").read_text()


def test_missing_train_or_val_images_are_refused_before_training_starts(tmp_path):
    train_json = make_squares(tmp_path / "data", count=3)
    (tmp_path / "data" / "001.png").unlink()
    out = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match=r"1 image\(s\) of .*train\.json not found under --images .*data:\n  .*001\.png"):
        train(tiny_config(train_json, out, iterations=2))
    assert not out.exists(), "nothing is written before the images are checked"

    good_json = make_squares(tmp_path / "good", count=3)
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"3 image\(s\) of .*good.*train\.json not found under --val-images .*elsewhere"):
        train(tiny_config(good_json, out, iterations=2, val=good_json, val_images=empty))
    assert not out.exists()


@pytest.mark.slow
def test_cli_preset_validates_on_images_under_images_not_in_the_run_folder(tmp_path):
    base = make_squares(tmp_path / "base", count=3)
    mined = make_squares(tmp_path / "mined", count=2, seed=1)
    (mined.parent / "run.json").write_text(json.dumps({"mode": "hn"}))
    parser = loop_parser()
    out = tmp_path / "run"
    args = parser.parse_args(
        ["train", "--preset", "hard-negatives", "--train", str(base), "--images", str(base.parent), "--mined", str(mined),
         "--val", str(base), "--model", "fasterrcnn_mobilenet_v3_large_fpn", "--iterations", "1", "--min-size", "64",
         "--max-size", "64", "--workers", "0", "--device", "cpu", "--quiet", "--out", str(out)]
    )
    assert args.handler(args) == 0
    assert [json.loads(line)["iteration"] for line in (out / "validation.jsonl").read_text().splitlines()] == [1]


@pytest.mark.slow
def test_coco_detector_weights_fine_tune_its_own_rows_for_coco_categories(tmp_path):
    from flickermine.train._torch import load_weights

    # a 91-class torchvision COCO detector (random here: no download); its labels are COCO ids
    source = build_model("fasterrcnn_mobilenet_v3_large_fpn", 91, 64, 64).state_dict()
    path = tmp_path / "coco_detector.pt"
    torch.save(source, path)
    head = "roi_heads.box_predictor."
    for names, coco_ids in ((["dog"], [18]), (["cat", "dog"], [17, 18])):
        model = build_model("fasterrcnn_mobilenet_v3_large_fpn", len(names) + 1, 64, 64)
        load_weights(model, path, categories=[{"id": 100 + k, "name": name} for k, name in enumerate(names)])
        got = model.state_dict()
        rows = [0, *coco_ids]  # background, then the categories in label order
        box_rows = [4 * row + k for row in rows for k in range(4)]  # (dx, dy, dw, dh) per class
        for suffix in ("weight", "bias"):
            assert torch.equal(got[head + "cls_score." + suffix], source[head + "cls_score." + suffix][rows])
            assert torch.equal(got[head + "bbox_pred." + suffix], source[head + "bbox_pred." + suffix][box_rows])
        assert torch.equal(got["backbone.body.0.0.weight"], source["backbone.body.0.0.weight"])

    model = build_model("fasterrcnn_mobilenet_v3_large_fpn", 2, 64, 64)
    with pytest.raises(ValueError, match=r"91 classes .*'square' is not a COCO category.*pass --new-head"):
        load_weights(model, path, categories=[{"id": 1, "name": "square"}])

    # through train(): --weights of a COCO detector with --category dog, no --new-head
    train_json = make_squares(tmp_path / "data", count=3)
    coco = json.loads(train_json.read_text())
    coco["categories"] = [{"id": 1, "name": "dog"}]
    train_json.write_text(json.dumps(coco))
    result = train(tiny_config(train_json, tmp_path / "run", iterations=1, weights=path, category="dog"))
    assert result.iteration == 1
    assert "box predictor: the rows of background and dog (label 18)" in (tmp_path / "run" / "train.log").read_text()


@pytest.mark.slow
def test_evaluate_refuses_a_category_the_model_or_the_file_lacks(tmp_path):
    train_json = make_squares(tmp_path / "data", count=3)
    result = train(tiny_config(train_json, tmp_path / "run", iterations=1))
    gt = json.loads(train_json.read_text())
    gt["categories"].append({"id": 2, "name": "cat"})  # in the file, with a box, but not in the model
    gt["annotations"].append({"id": 99, "image_id": 1, "category_id": 2, "bbox": [1, 1, 20, 20], "area": 400, "iscrowd": 0})
    gt_json = tmp_path / "data" / "with_cat.json"
    gt_json.write_text(json.dumps(gt))

    with pytest.raises(ValueError, match=r"--category 'cat': .*final\.pt does not detect it \(its categories: 'square'\)"):
        evaluate(gt_json, None, result.final, device="cpu", categories=["cat"], progress=False)
    with pytest.raises(ValueError, match=r"with_cat\.json: no category named 'bird'"):
        evaluate(gt_json, None, result.final, device="cpu", categories=["bird"], progress=False)
    summary = evaluate(gt_json, None, result.final, device="cpu", categories=["square"], progress=False)
    assert summary["categories"] == ["square"]


@pytest.mark.slow
def test_resume_refuses_train_or_val_files_whose_contents_changed(tmp_path):
    train_json = make_squares(tmp_path / "data", count=3)
    out = tmp_path / "run"
    train(tiny_config(train_json, out, iterations=1, val=train_json))
    coco = json.loads(train_json.read_text())
    coco["annotations"][0]["bbox"][0] += 1  # same path, other data
    train_json.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match=r"--resume: .*run was trained on other data \(--train .*train\.json: sha256 \w{12}\.\.\. then, \w{12}\.\.\. now; --val .*train\.json: sha256"):
        train(tiny_config(train_json, out, iterations=2, val=train_json, resume=True))
    with pytest.raises(ValueError, match=r"other data \(--train .*--val .*given then, not now"):
        train(tiny_config(train_json, out, iterations=2, resume=True))


@pytest.mark.slow
def test_cli_preset_resume_refuses_another_mined_set_before_it_merges(tmp_path, capsys):
    base = make_squares(tmp_path / "base", count=3)
    # the same image names, other boxes: only the contents tell the two apart
    mined, other = (make_squares(tmp_path / name, count=2, negatives=0, seed=seed) for name, seed in (("mined", 1), ("other", 2)))
    for path in (mined, other):
        (path.parent / "run.json").write_text(json.dumps({"mode": "hn"}))
    parser = loop_parser()
    out = tmp_path / "run"

    def run(mined_json, iterations, *extra):
        args = parser.parse_args(
            ["train", "--preset", "hard-negatives", "--train", str(base), "--mined", str(mined_json),
             "--model", "fasterrcnn_mobilenet_v3_large_fpn", "--iterations", str(iterations), "--min-size", "64",
             "--max-size", "64", "--workers", "0", "--device", "cpu", "--quiet", "--out", str(out), *extra]
        )
        return args.handler(args)

    assert run(mined, 1) == 0
    merged = (out / "train.json").read_bytes()
    with pytest.raises(ValueError, match=r"other data \(--mined .*other.*train\.json: sha256"):
        run(other, 2, "--resume")
    assert (out / "train.json").read_bytes() == merged, "the run's merge is left as it was"
    assert run(mined, 2, "--resume") == 0
    assert "trained to iteration 2" in capsys.readouterr().out
