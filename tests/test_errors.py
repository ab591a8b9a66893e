"""One error hierarchy: what the caller must fix is a FlickermineError (and still the builtin a
caller would catch); the command line prints those as one line with exit status 2, and lets
anything else, a bug, out with its traceback."""

from __future__ import annotations

import numpy as np
import pytest

import flickermine as fm
from flickermine import cli
from flickermine.cli import _detect as cli_detect
from flickermine.io._coco import CocoFormatError
from flickermine.io._mot import DetectionFileError
from flickermine.errors import FlickermineError, InputError, InputTypeError, MissingExtraError
from flickermine.video import VideoError


def test_every_error_raised_on_purpose_is_a_flickermine_error_and_its_builtin():
    assert issubclass(InputError, ValueError) and issubclass(InputTypeError, TypeError)
    assert issubclass(MissingExtraError, ImportError)
    for error in (InputError, InputTypeError, MissingExtraError, DetectionFileError, CocoFormatError, VideoError):
        assert issubclass(error, FlickermineError), error
    assert issubclass(VideoError, OSError)
    with pytest.raises(InputError, match="window"):
        fm.MiningParams(window=0)
    with pytest.raises(InputTypeError, match="dtype"):
        fm.iou(np.array([["a", "b", "c", "d"]]), np.zeros((1, 4)))


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    code = cli.main(["mine", str(tmp_path / "missing.mp4"), "--detections", str(tmp_path / "d.txt"), "--verdicts", str(tmp_path / "v.csv")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("flickermine: error: ") and err.count("\n") == 1 and "missing.mp4" in err


def test_cli_lets_a_bug_out_with_its_traceback(monkeypatch, tmp_path):
    """A ValueError that no flickermine code raised on purpose is not bad input."""

    def broken(args):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(cli_detect, "_cmd_detect", broken)
    with pytest.raises(ValueError, match="internal invariant"):
        cli.main(["detect", str(tmp_path), "--detector", "opencv-hog", "--out", str(tmp_path / "out")])
