"""flickermine.video: open_video, VideoSource.frames, VideoError."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from flickermine.video import _source as video_module
from flickermine.video import Frame, VideoError, VideoSource, open_video

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} is absent (a clone has no ../shared)")

PETS = DATA / "pets09-s2l1" / "video.avi"
TUD = DATA / "tud-campus" / "video.mp4"
GIRL = DATA / "otb-girl" / "img"


def decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("flickermine-decode") and t.is_alive()]


def wait_no_decode_threads(timeout: float = 2.0) -> list[threading.Thread]:
    deadline = time.monotonic() + timeout
    while decode_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    return decode_threads()


def write_images(folder: Path, names: list[str], size=(24, 32)) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for value, name in enumerate(names):
        image = np.full((*size, 3), (10 * value + 5) % 256, np.uint8)
        image[0, 0] = (value % 256, 2 * value % 256, 3 * value % 256)
        assert cv2.imwrite(str(folder / name), image)
        images.append(image)
    return images


# -- errors ------------------------------------------------------------------------------------


def test_missing_path(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(VideoError, match="no such file") as info:
        open_video(missing)
    assert str(missing) in str(info.value)
    assert isinstance(info.value, OSError)


def test_folder_without_images(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    with pytest.raises(VideoError, match="holds no images") as info:
        open_video(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_folder_without_images_hints_at_img1(tmp_path):
    write_images(tmp_path / "img1", ["000001.jpg"])
    with pytest.raises(VideoError, match="did you mean .*img1"):
        open_video(tmp_path)


def test_random_bytes_named_mp4(tmp_path):
    bad = tmp_path / "x.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError) as info:
        open_video(bad)
    assert str(bad) in str(info.value)


def test_empty_file(tmp_path):
    bad = tmp_path / "empty.avi"
    bad.write_bytes(b"")
    with pytest.raises(VideoError, match="empty.avi"):
        open_video(bad)


@needs_data
def test_truncated_mp4_is_an_error(tmp_path):
    # MP4 keeps its index (moov) at the end: a truncated copy cannot be opened at all.
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(TUD.read_bytes()[:200_000])
    with pytest.raises(VideoError) as info:
        open_video(truncated)
    assert str(truncated) in str(info.value)


@needs_data
def test_truncated_avi_header_only_is_an_error(tmp_path):
    truncated = tmp_path / "cut.avi"
    truncated.write_bytes(PETS.read_bytes()[:1000])
    with pytest.raises(VideoError, match="cut.avi"):
        open_video(truncated)


@needs_data
def test_truncated_avi_decodes_fewer_frames_than_claimed(tmp_path):
    truncated = tmp_path / "half.avi"
    truncated.write_bytes(PETS.read_bytes()[:1_500_000])
    source = open_video(truncated)
    assert source.frame_count == 795  # the header's claim: only a hint
    indices = [frame.index for frame in source.frames()]
    assert 0 < len(indices) < 795
    assert indices == list(range(len(indices)))
    assert source.decoded_frames == len(indices)


def test_single_image_is_not_a_video(tmp_path):
    write_images(tmp_path, ["0001.jpg"])
    with pytest.raises(VideoError, match="single image"):
        open_video(tmp_path / "0001.jpg")


def test_unreadable_image_fails_where_it_is_reached(tmp_path):
    write_images(tmp_path, ["0001.png", "0002.png", "0003.png"])
    (tmp_path / "0004.png").write_bytes(b"\x89PNG garbage, not an image")
    write_images(tmp_path / "later", ["0005.png"])
    shutil.copy(tmp_path / "later" / "0005.png", tmp_path / "0005.png")
    source = open_video(tmp_path)
    assert source.frame_count == 5
    seen = []
    with pytest.raises(VideoError) as info:
        for frame in source.frames():
            seen.append(frame.index)
    assert seen == [0, 1, 2]
    assert str(tmp_path / "0004.png") in str(info.value)
    assert wait_no_decode_threads() == []


def test_first_image_unreadable_fails_at_open(tmp_path):
    (tmp_path / "0001.jpg").write_bytes(b"nope")
    write_images(tmp_path, ["0002.jpg"])
    with pytest.raises(VideoError, match="0001.jpg"):
        open_video(tmp_path)


def test_images_of_different_sizes(tmp_path):
    write_images(tmp_path, ["1.png", "2.png"], size=(24, 32))
    write_images(tmp_path / "big", ["3.png"], size=(30, 32))
    shutil.copy(tmp_path / "big" / "3.png", tmp_path / "3.png")
    source = open_video(tmp_path)
    with pytest.raises(VideoError) as info:
        list(source.frames())
    message = str(info.value)
    assert str(tmp_path / "3.png") in message and "32x30" in message and "32x24" in message


def test_bad_arguments(tmp_path):
    write_images(tmp_path, ["1.png"])
    source = open_video(tmp_path)
    with pytest.raises(ValueError, match="gray=True, color=True"):
        source.frames(gray=False, color=False)
    with pytest.raises(ValueError, match="prefetch"):
        source.frames(prefetch=0)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=f"decode_threads must be None or an integer >= 1, got {bad!r}"):
            open_video(tmp_path, decode_threads=bad)


# -- image folders -----------------------------------------------------------------------------


def test_folder_natural_order_gray_and_color(tmp_path):
    names = [f"frame_{number}.png" for number in (1, 2, 10, 9, 11, 3, 4, 5, 6, 7, 8)]
    images = write_images(tmp_path / "seq", names)
    (tmp_path / "seq" / "readme.txt").write_text("ignored")
    source = open_video(tmp_path / "seq")
    assert isinstance(source, VideoSource)
    assert (source.width, source.height, source.frame_count, source.fps) == (32, 24, 11, 0.0)
    assert source.name == "seq"
    assert source.decoded_frames is None
    frames = list(source.frames(gray=True, color=True))
    assert all(isinstance(frame, Frame) for frame in frames)
    assert [frame.index for frame in frames] == list(range(11))
    expected_order = [images[names.index(f"frame_{number}.png")] for number in range(1, 12)]
    for frame, expected in zip(frames, expected_order):
        assert frame.color.shape == (24, 32, 3) and frame.color.dtype == np.uint8
        np.testing.assert_array_equal(frame.color, expected)
        assert frame.gray.shape == (24, 32) and frame.gray.dtype == np.uint8
        np.testing.assert_array_equal(frame.gray, cv2.cvtColor(expected, cv2.COLOR_BGR2GRAY))
    assert source.decoded_frames == 11
    only_color = next(iter(source.frames(gray=False, color=True)))
    assert only_color.gray is None and only_color.color is not None
    only_gray = next(iter(source.frames()))
    assert only_gray.color is None and only_gray.gray is not None


def test_generic_folder_names_take_the_parent_name(tmp_path):
    write_images(tmp_path / "PETS09-S2L1" / "img1", ["000001.jpg"])
    write_images(tmp_path / "Girl" / "img", ["0001.jpg"])
    assert open_video(tmp_path / "PETS09-S2L1" / "img1").name == "PETS09-S2L1"
    assert open_video(tmp_path / "Girl" / "img").name == "Girl"


def test_early_break_stops_the_thread(tmp_path):
    write_images(tmp_path, [f"{i:04d}.png" for i in range(40)])
    source = open_video(tmp_path)
    frames = source.frames(prefetch=2)
    for frame in frames:
        if frame.index == 3:
            break
    frames.close()
    assert wait_no_decode_threads() == []
    assert source.decoded_frames == 4
    for frame in source.frames():  # generator freed at once by the break
        break
    assert wait_no_decode_threads() == []


def test_prefetch_bounds_read_ahead(tmp_path, monkeypatch):
    write_images(tmp_path, [f"{i:04d}.png" for i in range(60)])
    source = open_video(tmp_path)
    reads = []
    real_read = video_module._read_image
    monkeypatch.setattr(video_module, "_read_image", lambda path: reads.append(path) or real_read(path))
    frames = source.frames(prefetch=3)
    next(frames)
    time.sleep(0.3)  # a slow caller: the decoder must wait, not run ahead
    assert len(reads) <= 3 + 2  # queue + one being handed over + one decoded waiting to be put
    frames.close()
    assert wait_no_decode_threads() == []


def test_does_not_change_opencv_threads(tmp_path):
    before = cv2.getNumThreads()
    write_images(tmp_path, ["1.png", "2.png"])
    assert len(list(open_video(tmp_path).frames())) == 2
    assert cv2.getNumThreads() == before


def test_video_file_roundtrip(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (64, 48))
    assert writer.isOpened()
    for value in range(7):
        writer.write(np.full((48, 64, 3), 30 * value, np.uint8))
    writer.release()
    source = open_video(path)
    assert (source.width, source.height, source.name) == (64, 48, "clip")
    assert source.fps == pytest.approx(12.0)
    assert source.frame_count in (None, 7)
    frames = list(source.frames(gray=True, color=True))
    assert [f.index for f in frames] == list(range(7))
    assert source.decoded_frames == 7
    means = [float(f.gray.mean()) for f in frames]
    assert means == sorted(means) and abs(means[3] - 90) < 5


@needs_data
def test_single_threaded_decoding_gives_the_same_frames():
    """--workers decodes each video on one FFmpeg thread: same pixels, same count, as the default."""
    default = open_video(TUD)
    single = open_video(TUD, decode_threads=1)
    assert single.decode_threads == 1 and default.decode_threads is None
    count = 0
    for a, b in zip(default.frames(gray=True, color=True), single.frames(gray=True, color=True)):
        assert a.index == b.index
        np.testing.assert_array_equal(a.color, b.color)
        np.testing.assert_array_equal(a.gray, b.gray)
        count += 1
    assert count == 71 == default.decoded_frames == single.decoded_frames


# -- real data ---------------------------------------------------------------------------------


@needs_data
def test_pets09_decodes_795_frames():
    source = open_video(PETS)
    assert (source.height, source.width) == (576, 768)
    assert source.name == "video" and source.fps == pytest.approx(10.0)
    count = 0
    for frame in source.frames(gray=True):
        assert frame.index == count
        count += 1
    assert frame.gray.shape == (576, 768) and frame.gray.dtype == np.uint8
    assert count == 795 and source.decoded_frames == 795


@needs_data
def test_tud_campus_decodes_71_frames():
    source = open_video(TUD)
    assert (source.height, source.width) == (480, 640)
    frames = list(source.frames(gray=False, color=True))
    assert len(frames) == 71 and source.decoded_frames == 71
    assert frames[-1].color.shape == (480, 640, 3)


@needs_data
def test_otb_girl_folder():
    source = open_video(GIRL)
    assert source.name == "otb-girl"
    assert (source.frame_count, source.height, source.width) == (500, 96, 128)
    frames = list(source.frames())
    assert len(frames) == 500 and frames[0].gray.shape == (96, 128)
    first = cv2.cvtColor(cv2.imread(str(GIRL / "0001.jpg")), cv2.COLOR_BGR2GRAY)
    last = cv2.cvtColor(cv2.imread(str(GIRL / "0500.jpg")), cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(frames[0].gray, first)
    np.testing.assert_array_equal(frames[-1].gray, last)


@pytest.mark.parametrize("color", [False, True])
def test_slow_and_fast_callers_get_the_same_frames(tmp_path, color):
    # Gray conversion happens in the decoding thread for a slow caller, in the caller otherwise.
    images = write_images(tmp_path, [f"{i:03d}.png" for i in range(12)])
    source = open_video(tmp_path)
    fast = list(source.frames(gray=True, color=color, prefetch=2))
    slow = []
    for frame in source.frames(gray=True, color=color, prefetch=2):
        time.sleep(0.005)
        slow.append(frame)
    for a, b, image in zip(fast, slow, images):
        np.testing.assert_array_equal(a.gray, cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        np.testing.assert_array_equal(b.gray, a.gray)
        assert (a.color is None, b.color is None) == (not color, not color)
        if color:
            np.testing.assert_array_equal(b.color, image)


# -- image folders: gaps, dangling links, corrupt JPEGs -----------------------------------------


def test_a_gap_in_the_numbering_is_an_error_naming_the_missing_number(tmp_path):
    write_images(tmp_path, ["0001.jpg", "0002.jpg", "0004.jpg", "0005.jpg"])
    with pytest.raises(VideoError, match=r"frame number 3 is missing \(between 0002\.jpg and 0004\.jpg\)") as info:
        open_video(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_a_dangling_frame_link_is_an_error(tmp_path):
    write_images(tmp_path, ["0001.jpg", "0002.jpg", "0004.jpg"])
    (tmp_path / "0003.jpg").symlink_to(tmp_path / "gone" / "0003.jpg")
    with pytest.raises(VideoError, match=r"dangling.*0003\.jpg"):
        open_video(tmp_path)


def test_two_images_with_one_frame_number_are_an_error(tmp_path):
    write_images(tmp_path, ["0009.png", "0010.png", "10.png", "0011.png"])
    with pytest.raises(VideoError, match=r"0010\.png and 10\.png both have frame number 10"):
        open_video(tmp_path)


def test_a_constant_step_and_unnumbered_names_are_not_gaps(tmp_path):
    write_images(tmp_path / "every5", ["000000.jpg", "000005.jpg", "000010.jpg"])
    assert open_video(tmp_path / "every5").frame_count == 3
    write_images(tmp_path / "named", ["alpha.png", "beta.png", "gamma.png"])
    assert open_video(tmp_path / "named").frame_count == 3
    with pytest.raises(VideoError, match="frame number 15 is missing"):
        write_images(tmp_path / "every5", ["000020.jpg"])
        open_video(tmp_path / "every5")


def _truncated_jpeg(path: Path, seed: int = 0) -> None:
    image = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 100])  # header < 2/3 of it
    assert ok
    path.write_bytes(encoded.tobytes()[: len(encoded) * 2 // 3])


def test_corrupt_jpegs_are_reported_by_count_and_name(tmp_path):
    write_images(tmp_path, ["0001.jpg", "0002.jpg", "0003.jpg", "0004.jpg"])
    _truncated_jpeg(tmp_path / "0002.jpg")
    _truncated_jpeg(tmp_path / "0004.jpg", seed=1)
    source = open_video(tmp_path, strict=False)
    with pytest.warns(video_module.CorruptImageWarning) as caught:
        frames = list(source.frames())
    assert len(frames) == 4  # still decoded (libjpeg fills the damage), so indices stay aligned
    message = str(caught[0].message)
    assert "2 of 4 image(s) are corrupt" in message and "0002.jpg" in message and "0004.jpg" in message
    assert "truncated" in message
    assert source.corrupt_images == [tmp_path / "0002.jpg", tmp_path / "0004.jpg"]


def test_intact_jpegs_are_not_reported(tmp_path, recwarn):
    write_images(tmp_path, ["0001.jpg", "0002.jpg"])
    source = open_video(tmp_path, strict=True)
    assert len(list(source.frames())) == 2 and source.corrupt_images == []
    assert not [w for w in recwarn if issubclass(w.category, video_module.CorruptImageWarning)]


def test_strict_makes_a_corrupt_jpeg_an_error(tmp_path, monkeypatch):
    write_images(tmp_path, ["0001.jpg", "0002.jpg", "0003.jpg"])
    _truncated_jpeg(tmp_path / "0002.jpg")
    source = open_video(tmp_path, strict=True)
    with pytest.raises(VideoError, match=r"0002\.jpg: corrupt image \(premature end"):
        list(source.frames())
    _truncated_jpeg(tmp_path / "0001.jpg")
    with pytest.raises(VideoError, match=r"0001\.jpg: corrupt image"):
        open_video(tmp_path, strict=True)
    monkeypatch.setenv(video_module.STRICT_ENV, "1")  # what `mine --strict` sets for its workers
    with pytest.raises(VideoError, match=r"0001\.jpg: corrupt image"):
        open_video(tmp_path)


def _mine_folder(tmp_path: Path) -> tuple[Path, Path]:
    seq = tmp_path / "seq"
    write_images(seq, [f"{i:04d}.jpg" for i in range(1, 9)], size=(48, 64))
    detections = tmp_path / "det.txt"
    detections.write_text("".join(f"{i},-1,10,10,20,20,0.9,-1,-1,-1\n" for i in range(1, 9)))
    return seq, detections


def test_mine_reports_corrupt_jpegs_and_fails_on_them_with_strict(tmp_path, capsys):
    import os

    from flickermine.cli import main

    seq, detections = _mine_folder(tmp_path)
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    encoded = cv2.imencode(".jpg", image)[1].tobytes()
    (seq / "0004.jpg").write_bytes(encoded[: len(encoded) * 2 // 3])
    argv = ["mine", str(seq), "--detections", str(detections), "--quiet"]

    with pytest.warns(video_module.CorruptImageWarning, match=r"1 of 8 image\(s\) are corrupt .*0004\.jpg"):
        assert main(argv + ["--verdicts", str(tmp_path / "v.csv")]) == 0
    capsys.readouterr()

    assert main(argv + ["--verdicts", str(tmp_path / "strict.csv"), "--strict"]) == 2
    err = capsys.readouterr().err
    assert f"flickermine: error: {seq / '0004.jpg'}: corrupt image" in err
    assert video_module.STRICT_ENV not in os.environ  # set for the run only

    assert main(argv + ["--out", str(tmp_path / "out"), "--strict"]) != 0
    assert "0004.jpg: corrupt image" in capsys.readouterr().out


def test_mine_refuses_a_folder_with_a_missing_frame(tmp_path, capsys):
    from flickermine.cli import main

    seq, detections = _mine_folder(tmp_path)
    (seq / "0003.jpg").unlink()
    assert main(["mine", str(seq), "--detections", str(detections), "--quiet", "--verdicts", str(tmp_path / "v.csv")]) == 2
    err = capsys.readouterr().err
    assert "frame number 3 is missing" in err and len(err.strip().splitlines()) == 1, err
