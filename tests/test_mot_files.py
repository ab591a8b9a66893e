"""flickermine.io._mot: DetectionFile validation and streaming, write_mot / MotWriter."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from flickermine.io._mot import DetectionFile, DetectionFileError, MotWriter, write_mot

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} is absent (a clone has no ../shared)")

PETS_DETS = DATA / "pets09-s2l1" / "det" / "faster_rcnn.txt"


def write(tmp_path: Path, text: str, name: str = "dets.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def frames_of(detections: DetectionFile, num_frames=None) -> list:
    return list(detections.per_frame(num_frames))


GOOD = "1,-1,10,20,30,40,0.9\n"


# -- errors ------------------------------------------------------------------------------------


def test_message_format(tmp_path):
    lines = [GOOD] * 16 + ["5,-1,10,20,-3,40,0.9\n"]
    path = write(tmp_path, "".join(lines))
    with pytest.raises(DetectionFileError) as info:
        DetectionFile(path)
    error = info.value
    assert isinstance(error, ValueError)
    assert str(error) == f"{path} line 17: width -3.0 is not positive (frame,id,x,y,w,h,score: '5,-1,10,20,-3,40,0.9')"
    assert error.line == 17 and error.path == path
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.line, copy.path) == (str(error), 17, path)


@pytest.mark.parametrize(
    "bad_line, kwargs, expected",
    [
        ("1,-1,10,20,30\n", {}, "5 columns, need at least 7"),
        ("1 -1 10 20 30 40\n", {}, "6 columns, need at least 7"),
        ("1,-1,10,abc,30,40,0.9\n", {}, "y 'abc' is not a number"),
        ("1,-1,10,20,30,40,\n", {}, "score is empty"),
        ("1,-1,nan,20,30,40,0.9\n", {}, "x is nan (NaN and infinity are not allowed)"),
        ("1,-1,10,20,30,40,inf\n", {}, "score is inf"),
        ("1,-1,10,20,30,-inf,0.9\n", {}, "height is -inf"),
        ("1,-1,10,20,0,40,0.9\n", {}, "width 0.0 is not positive"),
        ("1,-1,10,20,30,-4,0.9\n", {}, "height -4.0 is not positive"),
        ("2.5,-1,10,20,30,40,0.9\n", {}, "frame number 2.5 is not an integer"),
        ("0,-1,10,20,30,40,0.9\n", {}, "frame number 0 is not positive"),
        ("-3,-1,10,20,30,40,0.9\n", {}, "frame number -3 is not positive"),
        ("1e12,-1,10,20,30,40,0.9\n", {}, "frame number 1e12 is too large"),
        ("11,-1,10,20,30,40,0.9\n", {"frame_count": 10}, "frame 11 is beyond the video's 10 frames"),
        ("1,-1,100,20,30,40,0.9\n", {"width": 100, "height": 50}, "lies entirely outside the 100x50 image"),
        ("1,-1,-30,20,30,40,0.9\n", {"width": 100, "height": 50}, "lies entirely outside"),
        ("1,-1,10,50,30,40,0.9\n", {"width": 100, "height": 50}, "lies entirely outside"),
        ("1,-1,10,-40.5,30,40.5,0.9\n", {"height": 50}, "lies entirely outside the ?x50 image"),
    ],
)
def test_bad_lines(tmp_path, bad_line, kwargs, expected):
    text = "# header comment\n" + GOOD + "\n" + bad_line + GOOD
    path = write(tmp_path, text)
    with pytest.raises(DetectionFileError) as info:
        DetectionFile(path, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path} line 4: ")
    assert expected in message
    assert repr(bad_line.strip())[1:-1] in message
    assert info.value.line == 4


def test_partly_outside_is_fine(tmp_path):
    path = write(tmp_path, "1,-1,-10,-10,30,40,0.9\n2,-1,90,40,30,40,0.8\n")
    detections = DetectionFile(path, frame_count=2, width=100, height=50)
    (_, boxes, _), (_, boxes2, _) = frames_of(detections)
    np.testing.assert_array_equal(boxes, [[-10, -10, 20, 30]])  # not clipped here: the miner clips
    np.testing.assert_array_equal(boxes2, [[90, 40, 120, 80]])


def test_missing_file(tmp_path):
    with pytest.raises(DetectionFileError, match="no such file") as info:
        DetectionFile(tmp_path / "missing.txt")
    assert str(tmp_path / "missing.txt") in str(info.value) and info.value.line is None


def test_folder_is_not_a_file(tmp_path):
    with pytest.raises(DetectionFileError, match="is a folder") as info:
        DetectionFile(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_bad_arguments(tmp_path):
    path = write(tmp_path, GOOD)
    with pytest.raises(ValueError, match="frame_count"):
        DetectionFile(path, frame_count=-1)
    with pytest.raises(ValueError, match="width"):
        DetectionFile(path, width=0)
    with pytest.raises(ValueError, match="num_frames"):
        DetectionFile(path).per_frame(num_frames=1.5)


def test_error_in_a_later_chunk_names_the_right_line(tmp_path, monkeypatch):
    # Several chunks (~1 MiB each), blank and comment lines on the way: line numbers stay exact.
    lines = []
    for i in range(70_000):
        lines.append(f"{i // 7 + 1},-1,{i % 500}.5,20.25,30,40,0.{i % 9 + 1}\n")
        if i % 1000 == 0:
            lines.append(" \t\n" if i % 2000 else "# comment\n")
    good_path = write(tmp_path, "".join(lines), "good.txt")
    slow_calls = []
    real_slow = DetectionFile._parse_slow
    monkeypatch.setattr(DetectionFile, "_parse_slow", lambda self, *a: slow_calls.append(a[1]) or real_slow(self, *a))
    detections = DetectionFile(good_path)
    assert slow_calls == []  # a clean file never needs the line-by-line parser
    assert detections.count == 70_000 and detections.max_frame == 10_000 and detections.is_sorted
    bad_at = 60_123
    lines[bad_at - 1] = "8600,-1,1,2,3,oops,0.5\n"
    path = write(tmp_path, "".join(lines))
    with pytest.raises(DetectionFileError) as info:
        DetectionFile(path)
    assert info.value.line == bad_at
    assert f"line {bad_at}: height 'oops' is not a number" in str(info.value)
    # check_frames_decoded names the first line beyond the decoded frames, blank lines counted
    with pytest.raises(DetectionFileError) as info:
        detections.check_frames_decoded(9_000)
    first_beyond = next(n for n, text in enumerate(lines, 1) if text[0].isdigit() and int(text.split(",")[0]) > 9_000)
    assert info.value.line == first_beyond
    assert f"line {first_beyond}: frame 9001 is beyond the end of the video, which decoded to 9000 frames" in str(info.value)


# -- reading -----------------------------------------------------------------------------------


def test_per_frame_yields_every_frame_including_empty_ones(tmp_path):
    text = "# frame,id,x,y,w,h,score\n\n3,-1,10,20,30,40,0.5,-1,-1,-1\n3,-1,1,2,3,4,0.25\n\n5,7,0,0,1,1,1\n"
    detections = DetectionFile(write(tmp_path, text))
    assert (detections.count, detections.max_frame, detections.is_sorted) == (3, 5, True)
    frames = frames_of(detections)
    assert [index for index, _, _ in frames] == [0, 1, 2, 3, 4]
    for index in (0, 1, 3):
        _, boxes, scores = frames[index]
        assert boxes.shape == (0, 4) and boxes.dtype == np.float64
        assert scores.shape == (0,) and scores.dtype == np.float64
    np.testing.assert_array_equal(frames[2][1], [[10, 20, 40, 60], [1, 2, 4, 6]])
    np.testing.assert_array_equal(frames[2][2], [0.5, 0.25])
    np.testing.assert_array_equal(frames[4][1], [[0, 0, 1, 1]])
    # num_frames beyond the last detection: trailing empty frames
    longer = frames_of(detections, 8)
    assert len(longer) == 8 and all(len(b) == 0 for _, b, _ in longer[5:])
    # frame_count given: that many frames
    assert len(frames_of(DetectionFile(write(tmp_path, text, "b.txt"), frame_count=6))) == 6


def test_per_frame_fewer_frames_than_detections_raises(tmp_path):
    detections = DetectionFile(write(tmp_path, GOOD + "4,-1,1,2,3,4,0.5\n"))
    with pytest.raises(DetectionFileError, match="line 2: frame 4 is beyond the end of the video, which decoded to 3 frames"):
        detections.per_frame(3)
    detections.check_frames_decoded(4)  # fine: no error
    assert len(frames_of(detections, 4)) == 4


def test_whitespace_crlf_and_bom(tmp_path):
    comma = "1,-1,10,20,30,40,0.9\n2,-1,11,21,31,41,0.8\n"
    spaced = "\ufeff1 -1 10 20 30 40 0.9\r\n  2\t-1  11 21 31 41 0.8 -1 -1 -1\r\n"
    mixed = "1, -1, 10, 20, 30, 40, 0.9\n2 -1 11 21 31 41 0.8\n"
    reference = frames_of(DetectionFile(write(tmp_path, comma, "comma.txt")))
    for name, text in (("spaced.txt", spaced), ("mixed.txt", mixed)):
        path = tmp_path / name
        path.write_bytes(text.encode("utf-8"))
        other = frames_of(DetectionFile(path))
        assert len(other) == len(reference) == 2
        for (i, b, s), (j, c, t) in zip(reference, other):
            assert i == j
            np.testing.assert_array_equal(b, c)
            np.testing.assert_array_equal(s, t)


def test_empty_file(tmp_path):
    detections = DetectionFile(write(tmp_path, "# nothing\n\n"))
    assert (detections.count, detections.max_frame) == (0, 0)
    assert frames_of(detections) == []
    frames = frames_of(detections, 3)
    assert [i for i, _, _ in frames] == [0, 1, 2] and all(b.shape == (0, 4) for _, b, _ in frames)


def make_rows(seed: int = 0, frames: int = 40):
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(frames):
        count = int(rng.integers(0, 4))
        xy = rng.uniform(0, 500, (count, 2))
        wh = rng.uniform(1, 80, (count, 2))
        rows.append((index, np.hstack([xy, xy + wh]), rng.uniform(0, 1, count)))
    return rows


def test_sorted_and_unsorted_give_the_same_frames(tmp_path):
    rows = make_rows()
    sorted_path = tmp_path / "sorted.txt"
    write_mot(sorted_path, rows)
    lines = sorted_path.read_text().splitlines(keepends=True)
    by_frame: dict[str, list[str]] = {}
    for line in lines:
        by_frame.setdefault(line.split(",")[0], []).append(line)
    # frames in reverse order, each frame's lines in file order, plus interleaving: unsorted
    reversed_path = write(tmp_path, "".join(sum(reversed(list(by_frame.values())), [])), "reversed.txt")
    interleaved = [line for pair in zip(lines[::2], lines[1::2]) for line in reversed(pair)]
    interleaved_path = write(tmp_path, "".join(interleaved + lines[len(interleaved):]), "interleaved.txt")
    reference = DetectionFile(sorted_path)
    assert reference.is_sorted
    expected = frames_of(reference)
    for path in (reversed_path, interleaved_path):
        other = DetectionFile(path)
        assert not other.is_sorted and other.count == reference.count
        got = frames_of(other)
        assert len(got) == len(expected)
        for (i, b, s), (j, c, t) in zip(expected, got):
            assert i == j
            if path is reversed_path:  # stable: a frame's boxes keep their file order
                np.testing.assert_array_equal(b, c)
                np.testing.assert_array_equal(s, t)
            else:
                order_b = np.lexsort(b.T[::-1])
                order_c = np.lexsort(c.T[::-1])
                np.testing.assert_array_equal(b[order_b], c[order_c])
                np.testing.assert_array_equal(s[order_b], t[order_c])


# -- writing -----------------------------------------------------------------------------------


def test_round_trip(tmp_path):
    rows = make_rows(seed=3, frames=25)
    path = tmp_path / "out" / "dets.txt"
    path.parent.mkdir()
    written = write_mot(path, rows)
    assert written == sum(len(b) for _, b, _ in rows)
    first = next(line for line in path.read_text().splitlines())
    fields = first.split(",")
    assert len(fields) == 10 and fields[1] == "-1" and fields[7:] == ["-1", "-1", "-1"]
    assert len(fields[2].split(".")[1]) == 3 and len(fields[6].split(".")[1]) == 6
    detections = DetectionFile(path, frame_count=25)
    assert detections.count == written
    back = frames_of(detections)
    assert len(back) == 25
    for (i, b, s), (j, c, t) in zip(rows, back):
        assert i == j
        np.testing.assert_allclose(c, b, atol=1.5e-3, rtol=0)
        np.testing.assert_allclose(t, s, atol=1e-6, rtol=0)
    assert [p.name for p in path.parent.iterdir()] == ["dets.txt"]  # no temp files left


def test_writer_frame_numbers_are_one_based(tmp_path):
    path = tmp_path / "d.txt"
    with MotWriter(path) as writer:
        writer.write(0, [[1, 2, 11, 22]], [0.5])
        writer.write(4, np.zeros((0, 4)), np.zeros(0))
    assert writer.count == 1
    assert path.read_text() == "1,-1,1.000,2.000,10.000,20.000,0.500000,-1,-1,-1\n"


def test_writer_is_atomic(tmp_path):
    path = write(tmp_path, "old content\n", "d.txt")
    with pytest.raises(RuntimeError):
        with MotWriter(path) as writer:
            writer.write(0, [[1, 2, 3, 4]], [0.5])
            raise RuntimeError("detector crashed")
    assert path.read_text() == "old content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.txt"]
    writer = MotWriter(path)
    writer.write(1, [[1, 2, 3, 4]], [0.5])
    assert path.read_text() == "old content\n"  # nothing visible before close
    writer.close()
    assert path.read_text().startswith("2,-1,1.000,2.000,2.000,2.000,0.500000")
    with pytest.raises(ValueError, match="closed"):
        writer.write(2, [[1, 2, 3, 4]], [0.5])


def test_writer_rejects_bad_input(tmp_path):
    with MotWriter(tmp_path / "d.txt") as writer:
        with pytest.raises(ValueError, match="0-based"):
            writer.write(-1, [[1, 2, 3, 4]], [0.5])
        with pytest.raises(ValueError, match="inverted"):
            writer.write(0, [[5, 2, 3, 4]], [0.5])
        with pytest.raises(ValueError, match="shape"):
            writer.write(0, [[1, 2, 3, 4]], [0.5, 0.6])
    assert (tmp_path / "d.txt").read_text() == ""
    with pytest.raises(OSError, match="missing"):
        MotWriter(tmp_path / "missing" / "d.txt")


# -- real data ---------------------------------------------------------------------------------


@needs_data
def test_pets09_faster_rcnn():
    lines = [line for line in PETS_DETS.read_text().splitlines() if line.strip()]
    detections = DetectionFile(PETS_DETS, frame_count=795, width=768, height=576)
    # The file holds 4,359 boxes (data/README.md's table says 4,329).
    assert detections.count == len(lines) == 4359
    assert detections.max_frame == 795 and detections.is_sorted
    frames = frames_of(detections)
    assert [index for index, _, _ in frames] == list(range(795))
    assert sum(len(b) for _, b, _ in frames) == 4359
    assert all(len(b) > 0 for _, b, _ in frames)  # frames 1..795 all have detections
    x, y, w, h, score = (float(v) for v in lines[0].split(",")[2:7])
    np.testing.assert_allclose(frames[0][1][0], [x, y, x + w, y + h])
    assert frames[0][2][0] == score
    scores = np.concatenate([s for _, _, s in frames])
    assert 0.5 <= scores.min() and scores.max() <= 1.0
    detections.check_frames_decoded(795)
    with pytest.raises(DetectionFileError, match="frame 795 is beyond the end of the video"):
        detections.check_frames_decoded(794)
