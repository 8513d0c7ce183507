"""The interactive session: scribbles on any frame, propagation both ways, corrections, bounded memory,
outputs at the input's resolution."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.common.frames import FolderFrames, read_mask
from models.inpainting.network import InpaintingNet
from models.inpainting.robot import Robot
from models.inpainting.scribbles import from_mask, parse_scribbles
from models.inpainting.session import InpaintingSession, default_internal_size
from tasks.inpainting import synthetic
from tests.inpainting.conftest import BMX_MASK, need

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return InpaintingNet(width=8, key_dim=16, value_dim=16).eval()


@pytest.fixture(scope="module")
def clip():
    v = synthetic.render_video(np.random.default_rng(4), n_frames=9, height=32, width=48, n_objects=1)
    return v["frames"], v["labels"]


def strokes(labels, frame: int):
    d = Robot(seed=0).first(labels, frame=frame)
    return list(parse_scribbles(d).frames[frame])


class LongReader:
    """A long video made on the fly, one frame at a time (nothing held), as a file reader streams."""

    def __init__(self, n: int, h: int = 24, w: int = 32):
        self.n, self.h, self.w = n, h, w

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for t in range(self.n):
            img = np.full((self.h, self.w, 3), 90, np.uint8)
            img[:, (2 * t) % self.w:(2 * t) % self.w + 6] = 200
            yield img


def recorded(session: InpaintingSession) -> list[int]:
    """Frames in the order the session writes their masks."""
    order, store = [], session._store
    session._store = lambda t, prob: (order.append(t), store(t, prob))
    return order


def test_scribble_on_a_middle_frame_propagates_forwards_and_backwards(net, clip):
    frames, labels = clip
    with InpaintingSession(net, list(frames), internal_size=(32, 48), max_memory=4) as s:
        with pytest.raises(ValueError, match="no scribbles yet"):
            s.propagate()
        mask = s.add_scribbles(4, strokes(labels, 4))
        assert mask.shape == (32, 48) and mask.dtype == bool
        pos = s._user[4]["pos"]
        assert pos.any() and s.mask_probability(4)[pos].min() == 1.0  # the user's strokes are kept
        with pytest.raises(ValueError, match="no mask yet"):
            s.masks(0)
        order = recorded(s)
        s.propagate()
        assert order == [5, 6, 7, 8, 3, 2, 1, 0]  # forwards to the end, then backwards to the start
        assert s.user_frames == [4]
        assert all(s.masks(t).shape == (32, 48) for t in range(9))


def test_corrective_scribble_changes_masks_on_other_frames(net, clip):
    frames, labels = clip
    with InpaintingSession(net, list(frames), internal_size=(32, 48), max_memory=4) as s:
        s.add_scribbles(1, strokes(labels, 1))
        s.propagate()
        before = [s.mask_probability(t).copy() for t in range(9)]
        region = labels[7] == 0  # "this is background": a corrective stroke on frame 7
        bg = Robot(seed=0).first(region[None].astype(np.uint8), frame=0)["scribbles"][0]
        s.add_scribbles(7, [{"path": bg[0]["path"], "object_id": 0}])
        assert s.user_frames == [1, 7]
        order = recorded(s)
        s.propagate()
        # between the two user frames both runs write (forward from 1, then backward from 7, blended)
        assert order == [2, 3, 4, 5, 6, 8, 0, 6, 5, 4, 3, 2]
        changed = [t for t in (0, 2, 3, 4, 5, 6, 8) if not np.array_equal(before[t], s.mask_probability(t))]
        assert len(changed) >= 5
        assert np.array_equal(before[1], s.mask_probability(1))  # a user frame keeps its own mask


def test_memory_stays_bounded_on_a_long_video(net):
    reader = LongReader(60)
    with InpaintingSession(net, reader, internal_size=(24, 32), max_memory=3) as s:
        s.add_scribbles(10, [{"path": [[0.1, 0.5], [0.2, 0.5]], "object_id": 1}])
        s.add_scribbles(45, [{"path": [[0.5, 0.5], [0.6, 0.5]], "object_id": 1}])
        s.propagate()
        assert s.peak_memory == 3 + 2  # the cap plus the two user frames, however long the video
        assert s._frames.shape == (60, 24, 32, 3) and isinstance(s._frames, np.memmap)  # on disk


def test_odd_sizes_come_back_at_input_resolution(net, clip, tmp_path):
    frames, labels = clip
    odd = [np.ascontiguousarray(f[:31, :47]) for f in frames]
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for t, f in enumerate(odd):
        cv2.imwrite(str(folder / f"img_{t:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    seen = []
    with InpaintingSession(net, FolderFrames(folder), internal_size=(16, 24), max_memory=3,
                           progress=lambda stage, done, total: seen.append((stage, done, total))) as s:
        s.add_scribbles(0, strokes(labels[:, :31, :47], 0))
        s.propagate()
        assert s.masks(3).shape == (31, 47)
        out = list(s.inpaint())
        assert [f.name for f in out] == [f"img_{t:03d}" for t in range(9)]
        assert all(f.image.shape == (31, 47, 3) and f.image.dtype == np.uint8 for f in out)
        hole = s.masks(3)
        assert np.array_equal(out[3].image[~hole & ~_grown(hole)], odd[3][~hole & ~_grown(hole)])
        written = s.save_masks(tmp_path / "masks")
        assert [p.name for p in written] == [f"img_{t:03d}.png" for t in range(9)]
        assert read_mask(written[3]).shape == (31, 47) and set(np.unique(read_mask(written[3]))) <= {0, 255}
    assert ("read", 9, 9) in seen and ("propagate", 8, 8) in seen and ("inpaint", 9, 9) in seen


def _grown(mask: np.ndarray, px: int = 3) -> np.ndarray:
    import cv2

    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * px + 1,) * 2, np.uint8)) > 0


def test_bad_calls_say_what_is_wrong(net, clip):
    frames, _ = clip
    with InpaintingSession(net, list(frames), internal_size=(32, 48)) as s:
        with pytest.raises(IndexError, match="out of range"):
            s.add_scribbles(9, [{"path": [[0.5, 0.5]], "object_id": 1}])
        with pytest.raises(ValueError, match="no strokes"):
            s.add_scribbles(2, [])
        with pytest.raises(ValueError, match="propagate"):
            next(s.inpaint())
    with pytest.raises(ValueError, match="multiples of 4"):
        InpaintingSession(net, list(frames), internal_size=(30, 48))
    with pytest.raises(ValueError, match="frame 1 is"):
        InpaintingSession(net, [frames[0], frames[1][:20]], internal_size=(32, 48))
    assert default_internal_size(480, 854) == (244, 432) and default_internal_size(31, 47) == (32, 48)


def test_real_video_at_its_own_resolution(net, bmx, tmp_path):
    """ProPainter's bmx-trees (80 frames, 432x240), its first mask as the user's strokes: every frame
    gets a mask and a restored frame at 432x240 under the same names, memory within its cap."""
    reader = FolderFrames(bmx)
    first = read_mask(need(BMX_MASK) / f"{reader.names[0]}.png")
    with InpaintingSession(net, reader, internal_size=(60, 108), max_memory=4) as s:
        s.add_scribbles(0, from_mask(first > 0))
        s.propagate()
        assert s.peak_memory <= 4 + 1
        out = list(s.inpaint())
    assert len(out) == len(reader) == 80 and [f.name for f in out] == reader.names
    assert all(f.image.shape == (240, 432, 3) for f in out)
