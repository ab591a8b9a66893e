"""``train --resume`` with a ``checkpoint.pt`` that is not one (empty, corrupt, truncated, another
program's, a bare state dict, entries that do not fit the model): one line naming the file, exit 2."""

from __future__ import annotations

import io
import os
import pickle
import zipfile

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from flickermine.cli import main  # noqa: E402
from flickermine.errors import InputError  # noqa: E402
from flickermine.train._torch import RESUME_KEYS, load_resume_checkpoint, train  # noqa: E402

from .test_training import make_squares, tiny_config  # noqa: E402


def _torch_bytes(payload) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def _zip_of_text() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "not a checkpoint")
    return buffer.getvalue()


BAD_FILES = {
    "empty": (lambda: b"", "an empty file"),
    "random bytes": (lambda: os.urandom(4096), "torch.load refuses it"),
    "text": (lambda: b"iteration=3\n", "torch.load refuses it"),
    "truncated": (lambda: _torch_bytes({"model": {"w": torch.zeros(5000)}})[:700], "torch.load refuses it"),
    "a zip of text": (_zip_of_text, "torch.load refuses it"),
    "a foreign pickle": (lambda: pickle.dumps({"iteration": 3}, protocol=4), "torch.load refuses it"),
    "a list": (lambda: _torch_bytes([1, 2, 3]), "it holds a list, not a dict"),
    "a bare state dict": (lambda: _torch_bytes({"conv.weight": torch.zeros(3)}), "no 'model', 'optimizer'"),
    "final.pt (weights only)": (lambda: _torch_bytes({"model": {}, "iteration": 5, "config": {}}), "no 'optimizer'"),
    "a string iteration": (
        lambda: _torch_bytes({**{k: {} for k in RESUME_KEYS}, "iteration": "3"}), "its 'iteration' is '3', not a count"
    ),
    "a list for the optimizer": (
        lambda: _torch_bytes({**{k: {} for k in RESUME_KEYS}, "iteration": 3, "optimizer": []}), "its 'optimizer' is a list"
    ),
    "mangled data record": (
        lambda: _torch_bytes({**{k: {} for k in RESUME_KEYS}, "iteration": 3, "data": {"--train": "x"}}), "its 'data'"
    ),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_checkpoint_that_is_not_one_is_an_input_error_naming_it(tmp_path, kind):
    make, expected = BAD_FILES[kind]
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(make())
    for mmap in (True, False):
        with pytest.raises(InputError) as caught:
            load_resume_checkpoint(torch, path, mmap=mmap)
        message = str(caught.value)
        assert "\n" not in message and str(path) in message and "not a flickermine training checkpoint" in message
        assert len(message) < 400
    assert expected in message


@pytest.mark.parametrize("kind", ["empty", "random bytes", "truncated", "a bare state dict"])
def test_cli_train_resume_with_a_bad_checkpoint_is_one_line_exit_2(tmp_path, capsys, kind):
    train_json = make_squares(tmp_path / "data", count=2, negatives=0)
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(BAD_FILES[kind][0]())
    code = main(["train", "--train", str(train_json), "--model", "fasterrcnn_mobilenet_v3_large_fpn", "--iterations", "2",
                 "--min-size", "64", "--max-size", "64", "--workers", "0", "--device", "cpu", "--quiet",
                 "--out", str(out), "--resume"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "\n" not in err and err.startswith("flickermine: error: --resume: ") and str(out / "checkpoint.pt") in err
    assert "Traceback" not in err


def test_entries_that_do_not_fit_the_model_are_an_input_error_naming_the_file(tmp_path):
    """A checkpoint of the right shape and settings whose weights belong to another model."""
    train_json = make_squares(tmp_path / "data", count=2, negatives=0)
    out = tmp_path / "run"
    out.mkdir()
    config = tiny_config(train_json, out, iterations=2, resume=True, device="cpu")
    rng = {"python": [], "numpy": [], "torch": torch.zeros(1, dtype=torch.uint8)}
    foreign = {"model": {"fc.weight": torch.zeros(2, 2)}, "optimizer": {}, "scheduler": {}, "scaler": {}, "rng": rng,
               "iteration": 1, "config": config.fingerprint()}
    torch.save(foreign, out / "checkpoint.pt")
    with pytest.raises(InputError) as caught:
        train(config)
    message = str(caught.value)
    assert "\n" not in message and str(out / "checkpoint.pt") in message and "its 'model' does not fit" in message


@pytest.mark.slow
def test_a_real_checkpoint_with_a_mangled_entry_is_an_input_error_naming_the_file(tmp_path):
    train_json = make_squares(tmp_path / "data", count=2, negatives=0)
    out = tmp_path / "run"
    train(tiny_config(train_json, out, iterations=1, device="cpu"))
    good = torch.load(out / "checkpoint.pt", weights_only=True)
    mangled = {
        "optimizer": {"state": {}, "param_groups": []},
        "scheduler": {"milestones": []},
        "rng": {"python": [3, [1, 2], None], "numpy": [], "torch": torch.zeros(3)},
    }
    for part, value in mangled.items():
        torch.save({**good, part: value}, out / "checkpoint.pt")
        with pytest.raises(InputError) as caught:
            train(tiny_config(train_json, out, iterations=2, resume=True, device="cpu"))
        message = str(caught.value)
        assert "\n" not in message and str(out / "checkpoint.pt") in message and f"its {part!r} does not fit" in message
    torch.save(good, out / "checkpoint.pt")
    assert train(tiny_config(train_json, out, iterations=2, resume=True, device="cpu")).iteration == 2


def test_a_checkpoint_the_disk_refuses_names_the_file(tmp_path, monkeypatch):
    from flickermine.train import _torch as train_torch

    def full(payload, path):
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", full)
    target = tmp_path / "checkpoint.pt"
    with pytest.raises(OSError) as caught:
        train_torch._save_atomic(torch, {"model": {}}, target)
    assert str(target) in str(caught.value) and "file write failed" in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # no temporary file left
