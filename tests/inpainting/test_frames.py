"""models.common.frames: folders and videos at full resolution, the H.264 writer, mask PNGs, errors."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.common.frames import (
    FolderFrames,
    FrameReadError,
    Mp4Writer,
    VideoFrames,
    image_size,
    open_frames,
    read_image,
    read_mask,
    write_mask,
    write_mp4,
)
from tests.inpainting.conftest import BMX, BMX_MASK, need


def need_av():
    """PyAV writes the MP4s; the readers need only OpenCV."""
    import av as module

    return module


def one_line(err: pytest.ExceptionInfo, name: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg and name in msg, msg


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_png(path, rgb: np.ndarray) -> None:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


# ------------------------------------------------------------------------------------------ folders

def test_folder_real_bmx(bmx):
    r = open_frames(bmx)
    assert isinstance(r, FolderFrames) and len(r) == 80 and (r.height, r.width) == (240, 432)
    assert r.names[:2] == ["00000", "00001"]
    first = r[0]
    assert first.name == "00000" and first.image.dtype == np.uint8 and first.image.shape == (240, 432, 3)
    bgr = cv2.imread(str(bmx / "00000.jpg"))
    np.testing.assert_array_equal(first.image, bgr[..., ::-1])  # RGB, full resolution
    assert r[-1].name == "00079" and r[-1].index == 79
    with pytest.raises(IndexError):
        r[80]


def test_folder_streams_in_order(bmx):
    seen = [(f.index, f.name) for f in open_frames(bmx)]
    assert seen == [(i, f"{i:05d}") for i in range(80)]


def test_folder_real_davis(davis):
    r = open_frames(davis / "JPEGImages" / "480p" / "bear")
    assert len(r) == 2 and (r.height, r.width) == (480, 854)


def test_folder_any_case_sorted_by_name(tmp_path):
    for name, seed in [("b.PNG", 1), ("a.Jpg", 2), ("c.jpeg", 3)]:
        cv2.imwrite(str(tmp_path / name), noise(10, 12, seed))
    (tmp_path / "notes.txt").write_text("not a frame")
    r = FolderFrames(tmp_path)
    assert r.names == ["a", "b", "c"] and len(r) == 3 and r.size == (10, 12)


def test_exif_rotation_ignored(tmp_path):
    """A camera JPEG tagged 'rotate 90°' is read as stored, the size its header (and its neighbours) give."""
    import PIL.Image as image
    exif = image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    for name in ("a.jpg", "b.jpg"):
        image.fromarray(noise(8, 12)).save(tmp_path / name, exif=exif)
    r = FolderFrames(tmp_path)
    assert r.size == (8, 12) and [f.image.shape for f in r] == [(8, 12, 3)] * 2


def test_image_size_from_headers(tmp_path, bmx):
    assert image_size(bmx / "00000.jpg") == (240, 432)
    write_png(tmp_path / "x.png", noise(7, 9))
    assert image_size(tmp_path / "x.png") == (7, 9)
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8junk")
    assert image_size(tmp_path / "junk.jpg") is None


def test_folder_errors(tmp_path):
    with pytest.raises(FrameReadError) as e:
        FolderFrames(tmp_path / "missing")
    one_line(e, "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(FrameReadError) as e:
        open_frames(tmp_path / "empty")
    one_line(e, "empty")
    assert "no images" in str(e.value)


def test_folder_unreadable_frame(tmp_path):
    write_png(tmp_path / "000.png", noise(8, 8))
    (tmp_path / "001.jpg").write_bytes(b"not a jpeg at all")
    r = FolderFrames(tmp_path)
    with pytest.raises(FrameReadError) as e:
        list(r)
    one_line(e, "001.jpg")


def test_folder_sizes_differ_up_front(tmp_path):
    write_png(tmp_path / "000.png", noise(8, 8))
    write_png(tmp_path / "001.png", noise(8, 10))
    with pytest.raises(FrameReadError) as e:
        FolderFrames(tmp_path)  # from the headers, before any decoding
    one_line(e, "001.png")
    assert "10x8" in str(e.value) and "8x8" in str(e.value)


def test_folder_sizes_differ_while_streaming(tmp_path):
    write_png(tmp_path / "000.png", noise(8, 8))
    write_png(tmp_path / "001.png", noise(8, 10))
    r = FolderFrames(tmp_path, check_headers=False)
    assert r[0].image.shape == (8, 8, 3)
    with pytest.raises(FrameReadError) as e:
        list(r)
    one_line(e, "001.png")


# ------------------------------------------------------------------------------------ write + read

@pytest.fixture(scope="module")
def bmx_mp4(tmp_path_factory):
    """bmx-trees written once per module through our writer (80 frames, 432x240)."""
    need_av()
    path = tmp_path_factory.mktemp("mp4") / "bmx.mp4"
    write_mp4(path, open_frames(need(BMX)), fps=24)
    return path


def test_mp4_round_trip_with_cv2(bmx_mp4, bmx):
    cap = cv2.VideoCapture(str(bmx_mp4))
    n = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        assert bgr.shape == (240, 432, 3)
        n += 1
    cap.release()
    assert n == 80
    src = read_image(bmx / "00010.jpg").astype(int)
    v = open_frames(bmx_mp4)
    assert isinstance(v, VideoFrames) and len(v) == 80 and (v.height, v.width) == (240, 432)
    assert np.abs(v[10].image.astype(int) - src).mean() < 8  # H.264 at crf 23: close, not exact


def test_mp4_random_access_is_frame_accurate(bmx_mp4):
    v = VideoFrames(bmx_mp4)
    streamed = {f.index: f.image for f in v if f.index in (3, 10, 79)}
    for i in (10, 3, 79, 3):  # forward, back (re-open), forward, back
        f = v[i]
        assert f.index == i and f.name == f"{i:05d}"
        np.testing.assert_array_equal(f.image, streamed[i])
    v.close()


def test_mp4_is_browser_playable(bmx_mp4):
    av = need_av()
    with av.open(str(bmx_mp4)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        assert s.average_rate == 24 and c.format.name.startswith("mov")
    data = bmx_mp4.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart: playback starts while loading


@pytest.mark.parametrize("even,size", [("pad", (12, 14)), ("crop", (10, 12))])
def test_mp4_odd_sides(tmp_path, even, size):
    need_av()
    frames = [noise(11, 13, s) for s in range(3)]
    path = write_mp4(tmp_path / "odd.mp4", frames, even=even)
    v = VideoFrames(path)
    assert len(v) == 3 and v.size == size


def test_mp4_writer_atomic_on_error(tmp_path):
    need_av()
    target = tmp_path / "cut.mp4"
    with pytest.raises(ValueError, match="frame 1 is 10x8"):
        with Mp4Writer(target) as w:
            w.write(noise(8, 8))
            w.write(noise(8, 10))
    assert list(tmp_path.iterdir()) == []  # neither the video nor its temp file
    with pytest.raises(ValueError, match="no frames"):
        write_mp4(target, [])
    assert list(tmp_path.iterdir()) == []


def test_video_errors(tmp_path):
    with pytest.raises(FrameReadError) as e:
        VideoFrames(tmp_path / "missing.mp4")
    one_line(e, "missing.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(FrameReadError) as e:
        open_frames(tmp_path / "empty.mp4")
    one_line(e, "empty.mp4")
    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(FrameReadError) as e:
        open_frames(tmp_path / "junk.mp4")
    one_line(e, "junk.mp4")


# -------------------------------------------------------------------------------------------- masks

def test_read_mask_palette_indices(davis):
    m = read_mask(davis / "Annotations" / "480p" / "tennis" / "00000.png")
    assert m.dtype == np.uint8 and m.shape == (480, 854)
    assert set(np.unique(m).tolist()) == {0, 1, 2, 255}  # two players and DAVIS's void


def test_read_mask_grey():
    m = read_mask(need(BMX_MASK) / "00000.png")
    assert m.shape == (240, 432) and set(np.unique(m).tolist()) == {0, 255}


def test_write_mask_round_trip(tmp_path):
    mask = np.zeros((9, 11), dtype=np.int64)
    mask[2:5, 3:8] = 3
    path = write_mask(tmp_path / "m" / "0.png", mask)
    back = read_mask(path)
    assert set(np.unique(back).tolist()) == {0, 255}
    np.testing.assert_array_equal(back == 255, mask != 0)
    assert [p.name for p in path.parent.iterdir()] == ["0.png"]
    with pytest.raises(ValueError, match="2-D"):
        write_mask(tmp_path / "bad.png", np.zeros((2, 2, 3)))
