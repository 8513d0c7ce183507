"""The shared-memory network: shapes, the memory read, warping, alignment against a known camera."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.inpainting import align
from models.inpainting.network import InpaintingNet, sampling_matrix, warp
from tasks.inpainting import synthetic

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return InpaintingNet(width=8, key_dim=16, value_dim=16).eval()


def test_forward_shapes_and_config_rebuilds(net):
    b, n, h, w = 2, 3, 32, 48
    image, mem = torch.rand(b, 3, h, w), torch.rand(b, n, 3, h, w)
    masks = (torch.rand(b, n, 1, h, w) > 0.7).float()
    key, feats = net.encode_key(mem.flatten(0, 1))
    assert key.shape == (b * n, 16, h // 4, w // 4)
    values = net.encode_value(mem.flatten(0, 1), masks.flatten(0, 1), feats).unflatten(0, (b, n))
    hole = (torch.rand(b, 1, h, w) > 0.8).float()
    with torch.no_grad():
        out = net(image, key.unflatten(0, (b, n)), values, hole=hole, mem_images=mem, mem_masks=masks)
    assert out["logits"].shape == (b, 1, h, w)
    assert out["restored"].shape == (b, 3, h, w) and out["usage"].shape == (b, n)
    assert torch.allclose(out["usage"].sum(1), torch.full((b,), (h // 4) * (w // 4), dtype=torch.float32))
    assert torch.equal(out["restored"] * (1 - hole), image * (1 - hole))  # outside the hole: the input
    again = InpaintingNet(**net.config)
    assert again.config == net.config
    assert sum(p.numel() for p in again.parameters()) == sum(p.numel() for p in net.parameters())


def test_memory_read_retrieves_the_value_stored_where_the_key_matches(net):
    ck, cv, n, h, w = 16, 16, 3, 4, 6
    g = torch.Generator().manual_seed(1)
    keys = 0.1 * torch.randn(1, n, ck, h, w, generator=g)
    values = torch.zeros(1, n, cv, h, w)
    target = torch.randn(ck, generator=g)
    target = 8 * target / target.norm()
    keys[0, 2, :, 1, 4] = target          # memory frame 2, row 1, column 4 holds the matching key
    values[0, 2, :, 1, 4] = torch.arange(1.0, cv + 1)
    query = 0.1 * torch.randn(1, ck, h, w, generator=g)
    query[0, :, 3, 0] = target            # only the query at (3, 0) looks for it
    readout, usage = net.read(query, keys, values)
    assert torch.allclose(readout[0, :, 3, 0], torch.arange(1.0, cv + 1), atol=0.05)
    others = readout[0].clone()
    others[:, 3, 0] = 0
    assert others.abs().max() < 0.5       # queries that do not match average the (zero) rest
    assert usage[0].argmax() == 2 and torch.isclose(usage.sum(), torch.tensor(float(h * w)))


def test_chunked_read_equals_one_shot():
    torch.manual_seed(2)
    small = InpaintingNet(width=8, key_dim=8, value_dim=8, affinity_budget=5 * 48)  # 5 queries a block
    big = InpaintingNet(width=8, key_dim=8, value_dim=8)
    q, k, v = torch.randn(1, 8, 4, 6), torch.randn(1, 2, 8, 4, 6), torch.randn(1, 2, 8, 4, 6)
    a, ua = small.read(q, k, v)
    b, ub = big.read(q, k, v)
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(ua, ub, atol=1e-4)


def test_warp_follows_the_homography_at_any_resolution():
    shift = torch.eye(3)
    shift[0, 2] = 8.0  # memory pixel x → query pixel x + 8, at 32 x 48
    m = sampling_matrix(shift[None, None], 32, 48)
    for h, w, dx in ((32, 48, 8), (8, 12, 2)):
        x = torch.arange(w, dtype=torch.float32).expand(1, 1, 1, h, w).contiguous()
        out = warp(x, m)[0, 0, 0]
        assert torch.allclose(out[:, dx + 1:], x[0, 0, 0, :, 1:w - dx], atol=1e-4)
        assert torch.all(out[:, :dx] < 1e-3)  # came from outside the memory frame: zero (not valid)


def test_chained_homographies_recover_the_synthetic_camera():
    v = synthetic.render_video(np.random.default_rng(3), n_frames=8, height=64, width=96)
    T = align.video_homographies(v["backgrounds"])
    cam = [np.vstack([m, [0, 0, 1]]) for m in v["camera"]]
    grid = np.stack(np.meshgrid(np.arange(8, 96, 16), np.arange(8, 64, 16)), -1).reshape(-1, 2)
    pts = np.c_[grid, np.ones(len(grid))].T
    for j, t in ((0, 7), (6, 1)):
        true = np.linalg.inv(cam[t]) @ cam[j] @ pts
        est = align.relative(T, j, t) @ pts
        err = np.hypot(*(est[:2] / est[2] - true[:2] / true[2]))
        assert np.median(err) < 1.0 and err.max() < 3.0, err
