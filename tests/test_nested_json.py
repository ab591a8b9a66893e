"""Deeply nested JSON in a JSON Lines detections file: one line naming the file and line, never a
RecursionError traceback (``convert``, and every reader of ``.jsonl`` detections)."""

from __future__ import annotations

import pytest

from flickermine.cli import main
from flickermine.errors import InputError
from flickermine.io._formats import JsonlDetectionFile


def _nested_file(tmp_path, depth=100_000):
    path = tmp_path / "dets.jsonl"
    path.write_text(
        '{"frame": 1, "xyxy": [[1, 2, 11, 22]], "scores": [0.5]}\n'
        '{"frame": 2, "xyxy": ' + "[" * depth + "]" * depth + ', "scores": []}\n'
    )
    return path


def test_convert_reports_deeply_nested_json_in_one_line(tmp_path, capsys):
    path = _nested_file(tmp_path)
    code = main(["convert", str(path), str(tmp_path / "out.txt")])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert f"{path} line 2" in err and "nested too deeply" in err
    assert not (tmp_path / "out.txt").exists()


def test_jsonl_reader_raises_input_error_naming_the_line(tmp_path):
    path = _nested_file(tmp_path)
    with pytest.raises(InputError, match=r"line 2: not usable JSON: nested too deeply"):
        JsonlDetectionFile(path)
