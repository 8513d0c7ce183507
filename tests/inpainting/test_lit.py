"""Training pieces: clips from the DAVIS layout, the simulated reference hints, losses, a tiny fit."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.inpainting.lit import (
    ClipDataset,
    InpaintingDataModule,
    InpaintingLitModule,
    clip_indices,
    mask_loss,
    reference_hints,
    restore_loss,
    sequences_of,
)
from models.inpainting.network import InpaintingNet
from tasks.inpainting import synthetic

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("davis")
    synthetic.generate(out, seed=3, n_videos=3, n_frames=8, height=32, width=48)
    return out


def test_clip_indices_one_direction_within_the_video():
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = clip_indices(rng, 8, 4, 3)
        d = np.diff(idx)
        assert 0 <= min(idx) and max(idx) < 8 and len(idx) == 4
        assert np.all((d >= 1) & (d <= 3)) or np.all((d <= -1) & (d >= -3))
    assert clip_indices(rng, 2, 4, 3) == [0, 1, 1, 1]  # shorter than a clip: repeats


def test_reference_hints_positive_inside_negative_outside():
    labels = np.zeros((32, 48), np.uint8)
    labels[8:24, 10:30] = 1
    rng = np.random.default_rng(1)
    first = reference_hints(rng, labels, corrective=0.0)
    assert first.shape == (3, 32, 48) and first[0].any() and not first[1].any() and not first[2].any()
    assert np.all(labels[first[0] > 0] == 1)
    for _ in range(5):
        later = reference_hints(rng, labels, corrective=1.0)
        assert later[2].any() and np.all(labels[later[0] > 0] == 1) and np.all(labels[later[1] > 0] == 0)


def test_clip_dataset_items(root):
    ds = ClipDataset(root, sequences_of(root), size=(32, 48), clip_len=3, samples=6, fixed=True)
    item = ds[1]
    assert item["images"].shape == (3, 3, 32, 48) and item["backgrounds"].shape == (3, 3, 32, 48)
    assert item["masks"].shape == item["void"].shape == (3, 1, 32, 48) and item["hints"].shape == (3, 32, 48)
    assert item["homs"].shape == (3, 3, 3, 3) and float(item["has_background"]) == 1.0
    assert torch.allclose(item["homs"][0, 0], torch.eye(3), atol=1e-5)
    assert item["masks"][0].sum() > 0  # the simulated user scribbles inside an object on the reference
    assert torch.equal(ds[1]["images"], item["images"])  # fixed: the same clip again
    outside = item["masks"] == 0
    diff = (item["images"] - item["backgrounds"]).abs().mean(1, keepdim=True)
    assert diff[outside].mean() < 0.03  # truth consistent after resizing


def test_losses_are_zero_for_perfect_answers():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:6, 2:6] = 1
    good = mask_loss(20 * (2 * target - 1), target, torch.ones_like(target))
    bad = mask_loss(-20 * (2 * target - 1), target, torch.ones_like(target))
    assert good < 0.01 < 1 < bad
    img = torch.rand(1, 3, 16, 16)
    hole = torch.zeros(1, 1, 16, 16)
    hole[..., 4:12, 4:12] = 1
    assert restore_loss(img, img, hole, ssim_weight=0.3) < 1e-4
    assert restore_loss(img * (1 - hole), img, hole, ssim_weight=0.3) > 0.2


def test_a_tiny_fit_lowers_the_loss(root):
    torch.manual_seed(0)
    seqs = sequences_of(root)
    dm = InpaintingDataModule(root=root, train_sequences=seqs, val_sequences=seqs[:1], size=(32, 48), clip_len=3,
                              batch_size=3, samples_per_epoch=3, seed=0)
    batch = next(iter(dm.train_dataloader()))
    lit = InpaintingLitModule(InpaintingNet(width=8, key_dim=16, value_dim=16))
    opt = torch.optim.Adam(lit.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):  # one batch, again and again: the loss must fall
        out = lit.clip_forward(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert losses[-1] < 0.8 * losses[0], losses
    assert out["restored"].shape == batch["images"].shape and out["logits"].shape == batch["masks"].shape
    rebuilt = InpaintingLitModule(net_config=lit.net.config)
    assert rebuilt.net.config == lit.net.config
