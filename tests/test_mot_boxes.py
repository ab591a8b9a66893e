"""MOT (and authors' format) boxes that would have no width or height once their far corner is computed (``w=1e-300``,
``x + w == x`` for a large ``x``) or whose ``x + w`` overflows are refused when the file is read,
naming the file and line, not part-way through mining."""

from __future__ import annotations

import pytest

from flickermine.cli import main
from flickermine.io._mot import DetectionFile, DetectionFileError

from .conftest import shared_data

GOOD = [f"{f},-1,{10 + f}.5,20.0,30.0,60.0,0.9,-1,-1,-1\n" for f in range(1, 2001)]  # a chunk for the fast path

BAD = {
    "tiny width": ("5,-1,100.0,100.0,1e-300,50.0,0.9", "width 1e-300 is too small for x=100.0"),
    "tiny height": ("5,-1,100.0,100.0,40.0,1e-300,0.9", "height 1e-300 is too small for y=100.0"),
    "width under x's precision": ("5,-1,1e17,100.0,1.0,50.0,0.9", "width 1.0 is too small for x=1e+17"),
    "x + width overflows": ("5,-1,1e308,100.0,1e308,50.0,0.9", "x + width = 1e+308 + 1e+308 overflows"),
    "y + height overflows": ("5,-1,1.0,1.5e308,2.0,1e308,0.9", "y + height = 1.5e+308 + 1e+308 overflows"),
    "whitespace separated": ("5 -1 100.0 100.0 1e-300 50.0 0.9", "width 1e-300 is too small"),
}


@pytest.mark.parametrize("kind", list(BAD))
@pytest.mark.parametrize("where", [1, 1500], ids=["first line", "mid-file"])
def test_a_box_without_width_or_height_in_float64_is_refused_at_read_time(tmp_path, kind, where):
    line, expected = BAD[kind]
    path = tmp_path / "det.txt"
    lines = list(GOOD)
    lines.insert(where - 1, line + "\n")
    path.write_text("".join(lines))
    with pytest.raises(DetectionFileError) as caught:
        DetectionFile(path)
    message = str(caught.value)
    assert message.startswith(f"{path} line {where}: {expected}"), message
    assert caught.value.line == where and "\n" not in message


@pytest.mark.parametrize("kind", ["tiny width", "width under x's precision", "x + width overflows", "y + height overflows"])
def test_the_authors_format_refuses_them_too(tmp_path, kind):
    from flickermine.io._formats import AuthorsDetectionFile

    fields = BAD[kind][0].split(",")
    box = " ".join(fields[2:7])
    path = tmp_path / "det_authors.txt"
    good = "FRAME NUMBER: 1\n1\n10.0 20.0 30.0 60.0 0.9\n"
    path.write_text(good + f"FRAME NUMBER: 2\n2\n10.0 20.0 30.0 60.0 0.9\n{box}\n")
    with pytest.raises(DetectionFileError) as caught:
        AuthorsDetectionFile(path)
    message = str(caught.value)
    assert message.startswith(f"{path} line 7: {BAD[kind][1]}"), message
    assert "\n" not in message


def test_small_but_real_boxes_are_kept(tmp_path):
    path = tmp_path / "det.txt"
    path.write_text("1,-1,100.0,100.0,0.001,0.001,0.9\n2,-1,-5.0,0.0,1e-10,3.0,0.5\n")
    reader = DetectionFile(path)
    boxes = [b for _, b, _ in reader.per_frame()]
    assert boxes[0][0, 2] > boxes[0][0, 0] and boxes[1][0, 2] > boxes[1][0, 0]


def test_the_cli_fails_before_mining_naming_file_and_line(tmp_path, capsys):
    video = shared_data("tud-campus", "video.mp4")
    source = shared_data("tud-campus", "det", "faster_rcnn.txt").read_text().splitlines(keepends=True)
    dets = tmp_path / "det.txt"
    dets.write_text("".join(source[:40] + ["60,-1,100.0,100.0,1e-300,50.0,0.9,-1,-1,-1\n"] + source[40:]))
    out = tmp_path / "verdicts.csv"
    assert main(["mine", str(video), "--detections", str(dets), "--verdicts", str(out), "--quiet"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and f"{dets} line 41: width 1e-300 is too small for x=100.0" in err
    assert "frames/s" not in captured.out  # refused before mining started
    assert not out.exists()
