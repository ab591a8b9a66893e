"""flickermine.io._formats: the authors' text format and JSON Lines, sniffing, conversion, `convert` CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from flickermine.io._mot import DetectionFile, DetectionFileError, MotWriter
from flickermine.io._formats import (
    FORMATS,
    AuthorsDetectionFile,
    AuthorsWriter,
    JsonlDetectionFile,
    JsonlWriter,
    convert,
    detect_format,
    open_detections,
    open_writer,
    write_authors,
    write_jsonl,
)

from .conftest import shared_data


def write(tmp_path: Path, text: str, name: str = "dets.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def frames_of(reader, num_frames=None) -> list:
    return list(reader.per_frame(num_frames))


def assert_same_frames(a: list, b: list, box_tol: float = 1e-9, score_tol: float = 1e-9) -> None:
    assert [i for i, _, _ in a] == [i for i, _, _ in b]
    for (i, boxes_a, scores_a), (_, boxes_b, scores_b) in zip(a, b):
        assert boxes_a.shape == boxes_b.shape, f"frame index {i}"
        np.testing.assert_allclose(boxes_b, boxes_a, rtol=0, atol=box_tol, err_msg=f"frame index {i}")
        np.testing.assert_allclose(scores_b, scores_a, rtol=0, atol=score_tol, err_msg=f"frame index {i}")


def expect_error(path: Path, line, *fragments: str, **kwargs) -> DetectionFileError:
    reader = kwargs.pop("reader", None) or open_detections
    with pytest.raises(DetectionFileError) as info:
        reader(path, **kwargs)
    error = info.value
    assert error.path == path and error.line == line, str(error)
    where = f"{path} line {line}: " if line is not None else f"{path}: "
    assert str(error).startswith(where), str(error)
    for fragment in fragments:
        assert fragment in str(error), str(error)
    return error


# hand-made: 4 frames, frames 2 and 4 (1-based) without detections
AUTHORS = """FRAME NUMBER: 1
2
10 20 30 40 0.9
100.5 50.25 20 10 0.5
FRAME NUMBER: 2
0
FRAME NUMBER: 3
1
5 6 7 8 0.75
FRAME NUMBER: 4
0
"""
EXPECTED = [
    (0, [[10, 20, 40, 60], [100.5, 50.25, 120.5, 60.25]], [0.9, 0.5]),
    (1, [], []),
    (2, [[5, 6, 12, 14]], [0.75]),
    (3, [], []),
]


def expected_frames() -> list:
    return [(i, np.array(b, np.float64).reshape(-1, 4), np.array(s, np.float64)) for i, b, s in EXPECTED]


JSONL = (
    '{"frame": 1, "xyxy": [[10, 20, 40, 60], [100.5, 50.25, 120.5, 60.25]], "scores": [0.9, 0.5]}\n'
    '{"frame": 3, "xyxy": [[5, 6, 12, 14]], "scores": [0.75], "labels": ["person"]}\n'
    '\n'
    '{"frame": 4, "xyxy": [], "scores": []}\n'
)


# -- real data: full cycles ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cycle, frame_count",
    [(("authors", "jsonl"), None), (("jsonl", "authors"), 795)],
    ids=["mot-authors-jsonl-mot", "mot-jsonl-authors-mot-795"],
)
def test_real_file_full_cycle(tmp_path, cycle, frame_count):
    source = shared_data("pets09-s2l1", "det", "faster_rcnn.txt")
    original = DetectionFile(source, frame_count=frame_count)
    reference = frames_of(original)
    assert len(reference) == 795
    first, second = cycle
    paths = {"authors": tmp_path / "dets_authors.txt", "jsonl": tmp_path / "dets.jsonl"}
    back = tmp_path / "back.txt"
    assert convert(source, paths[first], dst_format=first, frame_count=frame_count) == original.count
    assert convert(paths[first], paths[second], dst_format=second, frame_count=frame_count) == original.count
    assert convert(paths[second], back, dst_format="mot", frame_count=frame_count) == original.count
    for fmt, path in paths.items():
        assert detect_format(path) == fmt
        reader = open_detections(path, frame_count=frame_count, width=768, height=576)
        assert reader.count == original.count and reader.max_frame == 795
        assert_same_frames(reference, frames_of(reader), box_tol=1e-3, score_tol=1e-6)
    assert detect_format(back) == "mot"
    final = DetectionFile(back)
    assert final.count == original.count
    assert_same_frames(reference, frames_of(final), box_tol=1e-3, score_tol=1e-6)


def test_real_file_authors_zero_based_and_frame_count_checks(tmp_path):
    source = shared_data("pets09-s2l1", "det", "faster_rcnn.txt")
    target = tmp_path / "zero.txt"
    convert(source, target, dst_format="authors", first_frame=0)
    lines = target.read_text().splitlines()
    assert lines[0] == "FRAME NUMBER: 0"
    reader = AuthorsDetectionFile(target, frame_count=795)
    assert reader.first_frame == 0 and reader.frames == 795
    assert_same_frames(frames_of(DetectionFile(source)), frames_of(reader), box_tol=1e-3, score_tol=1e-6)
    last_header = max(i for i, text in enumerate(lines, 1) if text.startswith("FRAME NUMBER"))
    expect_error(target, last_header, "frame 794 is beyond the video's 794 frames", frame_count=794)
    expect_error(target, len(lines), "ends after 795 frames, but the video has 796", frame_count=796)


# -- hand-made files -------------------------------------------------------------------------------


def test_authors_reader_hand_made(tmp_path):
    path = write(tmp_path, AUTHORS)
    reader = AuthorsDetectionFile(path)
    assert (reader.count, reader.frames, reader.max_frame, reader.first_frame) == (3, 4, 4, 1)
    assert_same_frames(expected_frames(), frames_of(reader))
    assert_same_frames(expected_frames(), frames_of(AuthorsDetectionFile(path, frame_count=4, width=200, height=100)))
    for _, boxes, scores in reader.per_frame():
        assert boxes.dtype == np.float64 and boxes.shape[1] == 4 and scores.shape == (len(boxes),)


def test_authors_zero_based_blank_lines_and_case(tmp_path):
    text = AUTHORS.replace("FRAME NUMBER: 1", "frame number:0").replace("FRAME NUMBER: 2", "\n  Frame Number : 1")
    text = text.replace("FRAME NUMBER: 3", "FRAME NUMBER: 2").replace("FRAME NUMBER: 4", "FRAME NUMBER: 3\n\n")
    path = write(tmp_path, text)
    reader = AuthorsDetectionFile(path)
    assert reader.first_frame == 0 and reader.frames == 4
    assert_same_frames(expected_frames(), frames_of(reader))


def test_authors_frame_count_mismatch_and_decoded(tmp_path):
    path = write(tmp_path, AUTHORS)
    expect_error(path, 10, "frame 4 is beyond the video's 3 frames", frame_count=3)
    expect_error(path, 11, "ends after 4 frames, but the video has 5", frame_count=5)
    reader = AuthorsDetectionFile(path)
    reader.check_frames_decoded(4)
    with pytest.raises(DetectionFileError, match="line 10: frame 4 is beyond") as info:
        reader.check_frames_decoded(3)
    assert info.value.line == 10
    with pytest.raises(DetectionFileError, match="line 11: the file ends after 4 frames, but the video decoded to 6"):
        reader.check_frames_decoded(6)
    with pytest.raises(DetectionFileError):
        list(reader.per_frame(5))


def test_empty_authors_file(tmp_path):
    path = write(tmp_path, "")
    reader = AuthorsDetectionFile(path)
    assert (reader.count, reader.frames, reader.first_frame) == (0, 0, None)
    assert frames_of(reader) == []
    expect_error(path, None, "ends after 0 frames, but the video has 2", reader=AuthorsDetectionFile, frame_count=2)


def test_jsonl_reader_hand_made(tmp_path):
    path = write(tmp_path, JSONL, "dets.jsonl")
    reader = JsonlDetectionFile(path)
    assert (reader.count, reader.frames, reader.max_frame, reader.is_sorted, reader.has_labels) == (3, 3, 4, True, True)
    assert_same_frames(expected_frames(), frames_of(reader))
    assert_same_frames(expected_frames() + [(4, np.zeros((0, 4)), np.zeros(0))], frames_of(reader, 5))
    labels = [item[3] for item in reader.per_frame_with_labels()]
    assert labels == [None, None, ["person"], None]
    # missing xyxy/scores mean no boxes; unknown keys are ignored
    path2 = write(tmp_path, '{"frame": 2}\n{"frame": 3, "xyxy": [[1, 2, 3, 4]], "scores": [1], "id": "x"}\n', "b.jsonl")
    got = frames_of(JsonlDetectionFile(path2))
    assert [len(b) for _, b, _ in got] == [0, 0, 1]


@pytest.mark.parametrize("fmt", ["mot", "authors", "jsonl"])
def test_every_reader_yields_detections_per_frame(tmp_path, fmt):
    from flickermine.detect._detections import Detections

    path = tmp_path / f"dets.{fmt}"
    write_rows = [(0, np.zeros((0, 4)), np.zeros(0)), (1, np.array([[1.0, 2.0, 11.0, 22.0]]), np.array([0.9]))]
    with open_writer(path, fmt, frame_count=2) as writer:
        for index, boxes, scores in write_rows:
            writer.write(index, boxes, scores)
    reader = open_detections(path, fmt, frame_count=2)
    got = list(reader.detections())
    assert all(isinstance(d, Detections) for d in got) and [len(d) for d in got] == [0, 1]
    np.testing.assert_allclose(got[1].boxes, write_rows[1][1])
    assert got[1].labels.tolist() == [1]
    reader.check_frames_decoded(2)
    with pytest.raises(DetectionFileError):
        reader.check_frames_decoded(1)


def test_jsonl_integer_labels_reach_detections(tmp_path):
    path = write(tmp_path, '{"frame": 1, "xyxy": [[1, 2, 3, 4]], "scores": [1], "labels": [3]}\n'
                           '{"frame": 2, "xyxy": [[1, 2, 3, 4]], "scores": [1], "labels": ["person"]}\n', "l.jsonl")
    reader = JsonlDetectionFile(path)
    got = list(reader.detections())
    # a name gets an id past the largest integer label: the categories of a mined COCO name it
    assert [d.labels.tolist() for d in got] == [[3], [4]]
    assert reader.category_names == {4: "person"}


def test_jsonl_unsorted_is_sorted_on_read(tmp_path):
    lines = JSONL.strip().splitlines()
    path = write(tmp_path, "\n".join([lines[3], lines[1], lines[0]]) + "\n", "u.jsonl")
    reader = JsonlDetectionFile(path)
    assert not reader.is_sorted
    assert_same_frames(expected_frames(), frames_of(reader))


def test_jsonl_frame_beyond_decoded(tmp_path):
    path = write(tmp_path, JSONL, "dets.jsonl")
    reader = JsonlDetectionFile(path)
    reader.check_frames_decoded(4)
    reader.check_frames_decoded(10)  # omitted trailing frames are fine
    with pytest.raises(DetectionFileError) as info:
        reader.check_frames_decoded(3)
    assert info.value.line == 4 and "frame 4 is beyond the end of the video, which decoded to 3 frames" in str(info.value)
    expect_error(path, 2, "frame 3 is beyond the video's 2 frames", frame_count=2)


# -- writers and round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_hand_made_round_trip_every_format(tmp_path, fmt):
    src = write(tmp_path, AUTHORS)
    target = tmp_path / ("out.jsonl" if fmt == "jsonl" else "out.txt")
    assert convert(src, target, dst_format=fmt) == 3
    assert detect_format(target) == fmt
    reader = open_detections(target)
    total = 4 if fmt != "mot" else 3  # a MOT file cannot say that its last frame has no boxes
    assert_same_frames(expected_frames()[:total], frames_of(reader))
    assert_same_frames(expected_frames(), frames_of(reader, 4))
    back = tmp_path / "back.txt"
    convert(target, back, dst_format="authors", frame_count=4)
    assert back.read_text() == AUTHORS.replace("100.5 50.25 20 10 0.5", "100.500 50.250 20.000 10.000 0.500000").replace(
        "10 20 30 40 0.9", "10.000 20.000 30.000 40.000 0.900000").replace("5 6 7 8 0.75", "5.000 6.000 7.000 8.000 0.750000")


def test_jsonl_labels_survive_jsonl_to_jsonl(tmp_path):
    src = write(tmp_path, JSONL, "a.jsonl")
    dst = tmp_path / "b.jsonl"
    assert convert(src, dst) == 3
    records = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [r["frame"] for r in records] == [1, 2, 3, 4]  # omitted frame 2 written empty by the conversion
    assert records[2]["labels"] == ["person"] and "labels" not in records[0]
    assert records[1] == {"frame": 2, "xyxy": [], "scores": []}


def test_writers_order_merge_and_padding(tmp_path):
    with AuthorsWriter(tmp_path / "a.txt", frame_count=5) as out:
        out.write(1, [[0, 0, 10, 10]], [0.5])
        out.write(1, [[1, 1, 11, 11]], [0.25])  # same frame again: merged
        out.write(3, np.zeros((0, 4)), np.zeros(0))
        with pytest.raises(ValueError, match="write frames in order"):
            out.write(2, [[0, 0, 1, 1]], [1.0])
        with pytest.raises(ValueError, match="beyond the video's 5 frames"):
            out.write(5, [[0, 0, 1, 1]], [1.0])
    assert out.count == 2
    reader = AuthorsDetectionFile(tmp_path / "a.txt", frame_count=5)
    assert [len(b) for _, b, _ in reader.per_frame()] == [0, 2, 0, 0, 0]

    with JsonlWriter(tmp_path / "b.jsonl") as out:
        out.write(0, [[0, 0, 10, 10]], [0.5], labels=[3])
        out.write(2, [[1, 1, 11, 11]], [0.25], labels=np.array([7]))
        out.write(2, np.zeros((0, 4)), np.zeros(0))
        with pytest.raises(ValueError, match="labels given for some of its boxes only"):
            out.write(2, [[1, 1, 11, 11]], [0.25])
    records = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == [1, 3] and [r["labels"] for r in records] == [[3], [7]]
    assert write_jsonl(tmp_path / "c.jsonl", [(0, [[0, 0, 1, 1]], [0.5])], frame_count=3) == 1
    assert [json.loads(line)["frame"] for line in (tmp_path / "c.jsonl").read_text().splitlines()] == [1, 2, 3]
    with pytest.raises(ValueError, match="no labels"):
        with AuthorsWriter(tmp_path / "d.txt") as out:
            out.write(0, [[0, 0, 1, 1]], [0.5], labels=[1])


def test_writers_are_atomic(tmp_path):
    target = write(tmp_path, "keep me\n", "dets.jsonl")
    with pytest.raises(RuntimeError):
        with open_writer(target, "jsonl") as out:
            out.write(0, [[0, 0, 1, 1]], [0.5])
            raise RuntimeError("detector crashed")
    assert target.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dets.jsonl"]
    with open_writer(tmp_path / "m.txt", "mot") as out:
        assert isinstance(out, MotWriter)
    with pytest.raises(ValueError, match="first_frame applies to the authors' format only"):
        open_writer(tmp_path / "x.jsonl", "jsonl", first_frame=0)
    with pytest.raises(ValueError, match="unknown detections format 'xml'"):
        open_writer(tmp_path / "x.xml", "xml")
    with pytest.raises(ValueError, match="first_frame must be 0 or 1"):
        AuthorsWriter(tmp_path / "y.txt", first_frame=2)
    assert write_authors(tmp_path / "z.txt", [(1, [[0, 0, 1e-4, 1]], [0.5])], first_frame=0) == 1
    assert frames_of(AuthorsDetectionFile(tmp_path / "z.txt"))[1][1][0, 2] == pytest.approx(1e-4)  # thin box kept valid
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dets.jsonl", "m.txt", "z.txt"]


def test_convert_in_place_and_bad_format(tmp_path):
    path = write(tmp_path, AUTHORS)
    assert convert(path, path, dst_format="jsonl") == 3
    assert detect_format(path) == "jsonl"
    with pytest.raises(ValueError, match="unknown detections source format"):
        convert(path, tmp_path / "x.txt", src_format="csv")
    with pytest.raises(DetectionFileError, match="missing header"):
        convert(path, tmp_path / "x.txt", src_format="authors")
    assert not (tmp_path / "x.txt").exists()


# -- sniffing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, name, expected",
    [
        ("FRAME NUMBER: 1\n0\n", "a.txt", "authors"),
        ("\n\n   frame number: 0\n0\n", "a.txt", "authors"),
        ('{"frame": 1}\n', "a.txt", "jsonl"),
        ('\n  {"frame": 1}\n', "a.dat", "jsonl"),
        ("1,-1,10,20,30,40,0.9\n", "a.jsonl", "mot"),
        ("# comment\n1,-1,10,20,30,40,0.9\n", "a.txt", "mot"),
        ("", "a.txt", "mot"),
        ("\n\n", "a.jsonl", "jsonl"),
        ("\ufeffFRAME NUMBER: 1\n0\n", "bom.txt", "authors"),
    ],
)
def test_detect_format(tmp_path, text, name, expected):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert detect_format(path) == expected
    assert open_detections(path).format == expected if expected != "mot" else isinstance(open_detections(path), DetectionFile)


def test_detect_format_errors_and_override(tmp_path):
    with pytest.raises(DetectionFileError, match="no such file"):
        detect_format(tmp_path / "missing.txt")
    with pytest.raises(DetectionFileError, match="is a folder"):
        open_detections(tmp_path)
    path = write(tmp_path, AUTHORS)
    expect_error(path, 1, "columns, need at least 7", format="mot")
    with pytest.raises(ValueError, match="unknown detections format"):
        open_detections(path, format="yaml")


# -- malformed files: every error names the file and the line ----------------------------------------


@pytest.mark.parametrize(
    "text, line, fragment, kwargs",
    [
        ("3\n10 20 30 40 0.9\n", 1, "missing header: the file must start with 'FRAME NUMBER: n'", {}),
        ("FRAME NUMBER: 1\n1\n1 2 3 4 0.5\n1\n1 2 3 4 0.5\n", 4, "missing header: expected 'FRAME NUMBER: n' for frame 2", {}),
        ("FRAME NUMBER: 1\n1\n1 2 3 4 0.5\n1 2 3 4 0.5\n", 4, "frame 1 has more box lines than its count 1", {}),
        ("FRAME NUMBER: 1\n2\n1 2 3 4 0.5\nFRAME NUMBER: 2\n0\n", 2, "frame 1 says 2 boxes, but 1 box line follows", {}),
        ("FRAME NUMBER: 1\n2\n1 2 3 4 0.5\n", 2, "frame 1 says 2 boxes, but the file ends after 1", {}),
        ("FRAME NUMBER: 1\nFRAME NUMBER: 2\n0\n", 1, "frame 1 has no count line", {}),
        ("FRAME NUMBER: 1\n", 1, "frame 1 has no count line (the file ends)", {}),
        ("FRAME NUMBER: 1\ntwo\n", 2, "'two' is not a box count", {}),
        ("FRAME NUMBER: 1\n-1\n", 2, "'-1' is not a box count", {}),
        ("FRAME NUMBER: one\n0\n", 1, "frame number 'one' is not an integer", {}),
        ("FRAME NUMBER: 2\n0\n", 1, "the first frame is numbered 2: it must be 0 or 1", {}),
        ("FRAME NUMBER: 1\n0\nFRAME NUMBER: 3\n0\n", 3, "frame 3 follows frame 1: frames missing", {}),
        ("FRAME NUMBER: 1\n0\nFRAME NUMBER: 2\n0\nFRAME NUMBER: 2\n0\n", 5, "frame 2 follows frame 2: frames out of order", {}),
        ("FRAME NUMBER: 1\n1\n1 2 3 0.5\n", 3, "4 fields, need 5", {}),
        ("FRAME NUMBER: 1\n1\n1 2 3 4 0.5 7\n", 3, "6 fields, need 5", {}),
        ("FRAME NUMBER: 1\n1\n1 abc 3 4 0.5\n", 3, "y 'abc' is not a number", {}),
        ("FRAME NUMBER: 1\n1\n1 2 nan 4 0.5\n", 3, "w is nan (NaN and infinity are not allowed)", {}),
        ("FRAME NUMBER: 1\n1\n1 2 3 4 inf\n", 3, "score is inf", {}),
        ("FRAME NUMBER: 1\n1\n1 2 0 4 0.5\n", 3, "width 0.0 is not positive", {}),
        ("FRAME NUMBER: 1\n1\n1 2 3 -4 0.5\n", 3, "height -4.0 is not positive", {}),
        ("FRAME NUMBER: 1\n1\n700 2 3 4 0.5\n", 3, "lies entirely outside the 640x480 image", {"width": 640, "height": 480}),
        ("FRAME NUMBER: 1\n0\nFRAME NUMBER: 2\n0\n", 3, "frame 2 is beyond the video's 1 frames", {"frame_count": 1}),
        ("FRAME NUMBER: 1\n0\n", 2, "ends after 1 frames, but the video has 2", {"frame_count": 2}),
    ],
)
def test_authors_errors(tmp_path, text, line, fragment, kwargs):
    path = write(tmp_path, text)
    error = expect_error(path, line, fragment, reader=AuthorsDetectionFile, **kwargs)
    assert isinstance(error, ValueError)
    if "format" not in kwargs:
        assert detect_format(path) == ("authors" if line != 1 or "FRAME" in text.splitlines()[0] else "mot")


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        # a bad box line is reported before a later structural error in the same block
        ("FRAME NUMBER: 1\n1\n1 abc 3 4 0.5\nFRAME NUMBER: 3\n0\n", 3, "y 'abc' is not a number"),
        ("FRAME NUMBER: 1\n1\n1 2 3 4 0.5 6\nFRAME NUMBER: 2\n", 3, "6 fields, need 5"),
        ("FRAME NUMBER: 1\n2\n1 2 3 4 0.5\nfoo 2 3 4 0.5\n", 4, "x 'foo' is not a number"),
        ("FRAME NUMBER: 1\n2\n1 2 0 4 0.5\nfoo 2 3 4 0.5\n", 3, "width 0.0 is not positive"),
        ("FRAME NUMBER: 1\n1\n1 2 3 4 0.5\nFRAME NUMBER: 2\n1\n1 2 3 4\n", 6, "4 fields, need 5"),
    ],
)
@pytest.mark.parametrize("block", [1, 3, 16384])
def test_authors_first_error_wins_whatever_the_block(tmp_path, monkeypatch, text, line, fragment, block):
    from flickermine.io import _formats as formats

    monkeypatch.setattr(formats, "_BLOCK_LINES", block)
    expect_error(write(tmp_path, text), line, fragment, reader=AuthorsDetectionFile)


@pytest.mark.parametrize("block", [1, 2, 5])
def test_authors_blocks_stream_the_same_frames(tmp_path, monkeypatch, block):
    from flickermine.io import _formats as formats

    monkeypatch.setattr(formats, "_BLOCK_LINES", block)
    reader = AuthorsDetectionFile(write(tmp_path, AUTHORS * 1))
    assert_same_frames(expected_frames(), frames_of(reader))


def test_authors_error_message_format(tmp_path):
    path = write(tmp_path, "FRAME NUMBER: 1\n1\n1 2 0 4 0.5\n")
    with pytest.raises(DetectionFileError) as info:
        AuthorsDetectionFile(path)
    assert str(info.value) == f"{path} line 3: width 0.0 is not positive (x y w h score: '1 2 0 4 0.5')"


@pytest.mark.parametrize(
    "text, line, fragment, kwargs",
    [
        ('{"frame": 1, "xyxy": [], "scores": []}\n{"frame": 2, "xyxy": [\n', 2, "not valid JSON", {}),
        ("[1, 2]\n", 1, "expected a JSON object", {}),
        ('{"xyxy": [], "scores": []}\n', 1, 'no "frame"', {}),
        ('{"frame": "1"}\n', 1, 'frame "1" is not an integer', {}),
        ('{"frame": 1.0}\n', 1, "frame 1.0 is not an integer", {}),
        ('{"frame": true}\n', 1, "frame true is not an integer", {}),
        ('{"frame": 0}\n', 1, "frame 0 is not positive", {}),
        ('\n{"frame": 1}\n\n{"frame": 1}\n', 4, "frame 1 is listed twice", {}),
        ('{"frame": 2}\n{"frame": 1}\n{"frame": 2}\n', 3, "frame 2 is listed twice (also on line 1", {}),
        ('{"frame": 3}\n', 1, "frame 3 is beyond the video's 2 frames", {"frame_count": 2}),
        ('{"frame": 1, "xyxy": {"a": 1}, "scores": []}\n', 1, '"xyxy" must be a list', {}),
        ('{"frame": 1, "xyxy": [[1, 2, 3]], "scores": [1]}\n', 1, "box 0 [1, 2, 3] is not [x1, y1, x2, y2]", {}),
        ('{"frame": 1, "xyxy": [[1, 2, 3, "4"]], "scores": [1]}\n', 1, "has a value that is not a number", {}),
        ('{"frame": 1, "xyxy": [[true, 2, 3, 4]], "scores": [1]}\n', 1, "has a value that is not a number", {}),
        ('{"frame": 1, "xyxy": [[1, 2, 3, 4], [1, 2, 3]], "scores": [1, 1]}\n', 1, "box 1 [1, 2, 3] is not", {}),
        ('{"frame": 1, "xyxy": [[1, 2, 3, 4]], "scores": [false]}\n', 1, "score 0 false is not a number", {}),
        ('{"frame": 1, "xyxy": [[1, 2, 3, 4]], "scores": [null]}\n', 1, "score 0 null is not a number", {}),
        ('{"frame": 1, "xyxy": [[1, 2, NaN, 4]], "scores": [1]}\n', 1, "has NaN or infinity", {}),
        ('{"frame": 1, "xyxy": [[5, 2, 5, 4]], "scores": [1]}\n', 1, "width 0 is not positive (need x2 > x1)", {}),
        ('{"frame": 1, "xyxy": [[1, 9, 5, 4]], "scores": [1]}\n', 1, "height -5 is not positive (need y2 > y1)", {}),
        ('{"frame": 1, "xyxy": [[1, 2, 5, 4]], "scores": []}\n', 1, "0 scores for 1 boxes", {}),
        ('{"frame": 1, "xyxy": [[1, 2, 5, 4]]}\n', 1, "0 scores for 1 boxes", {}),
        ('{"frame": 1, "xyxy": [[1, 2, 5, 4]], "scores": ["high"]}\n', 1, 'score 0 "high" is not a number', {}),
        ('{"frame": 1, "xyxy": [[1, 2, 5, 4]], "scores": [Infinity]}\n', 1, "score 0 is inf", {}),
        ('{"frame": 1, "xyxy": [[1, 2, 5, 4]], "scores": [1], "labels": []}\n', 1, "0 labels for 1 boxes", {}),
        ('{"frame": 1, "xyxy": [[1, 2, 5, 4]], "scores": [1], "labels": [1.5]}\n', 1, "label 0 1.5 is not a category id", {}),
        ('{"frame": 1}\n{"frame": 2, "xyxy": [[-9, 2, -5, 4]], "scores": [1]}\n', 2, "lies entirely outside the 64x?", {"width": 64}),
    ],
)
def test_jsonl_errors(tmp_path, text, line, fragment, kwargs):
    path = write(tmp_path, text, "dets.jsonl")
    assert detect_format(path) == ("mot" if text.startswith("[") else "jsonl")
    expect_error(path, line, fragment, reader=JsonlDetectionFile, **kwargs)


# -- the CLI ---------------------------------------------------------------------------------------


def _own_parser() -> argparse.ArgumentParser:
    from flickermine.cli import _formats as cli_formats

    parser = argparse.ArgumentParser(prog="flickermine")
    cli_formats.register(parser.add_subparsers(dest="command", required=True))
    return parser


def _cli_has_convert() -> bool:
    from flickermine import cli

    parser = cli.build_parser()
    return any("convert" in getattr(action, "choices", None) or {} for action in parser._subparsers._group_actions)


def test_convert_command_through_register(tmp_path, capsys):
    src = write(tmp_path, AUTHORS)
    args = _own_parser().parse_args(["convert", str(src), str(tmp_path / "out.jsonl")])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "wrote 3 boxes in 4 frames" in out and "(authors -> jsonl)" in out
    assert detect_format(tmp_path / "out.jsonl") == "jsonl"
    args = _own_parser().parse_args(["convert", str(tmp_path / "out.jsonl"), str(tmp_path / "back.txt"), "--to", "authors",
                                     "--first-frame", "0", "--frames", "4"])
    assert args.handler(args) == 0
    assert AuthorsDetectionFile(tmp_path / "back.txt").first_frame == 0
    args = _own_parser().parse_args(["convert", str(src), str(tmp_path / "x.txt"), "--frames", "3"])
    with pytest.raises(DetectionFileError, match="line 10: frame 4 is beyond the video's 3 frames"):
        args.handler(args)
    with pytest.raises(SystemExit):
        _own_parser().parse_args(["convert", str(src), "x", "--to", "csv"])


def test_convert_command_main(tmp_path, capsys):
    from flickermine import cli

    if not _cli_has_convert():
        pytest.skip("flickermine.cli does not register `convert` yet")
    src = write(tmp_path, AUTHORS)
    assert cli.main(["convert", str(src), str(tmp_path / "out.txt")]) == 0
    assert "(authors -> mot)" in capsys.readouterr().out
    assert DetectionFile(tmp_path / "out.txt").count == 3
    assert cli.main(["convert", str(src), str(tmp_path / "bad.txt"), "--from", "jsonl"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flickermine: error: ") and f"{src} line 1: not valid JSON" in err
    assert not (tmp_path / "bad.txt").exists()
