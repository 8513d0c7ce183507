"""Lightning wrappers for the shared-memory inpainting network: the training module and a DAVIS-layout
data module sampling short clips.

A clip is a reference frame the simulated user scribbled on plus ``clip_len - 1`` target frames a few
frames apart, forwards or backwards (the session propagates both ways). Training mirrors the session:
the reference frame's mask comes from its scribbles read against its own scribble-only memory entry
(and, in a simulated correction round, its previous mask with strokes on the errors); the targets
are then segmented one after the other from a memory of the frames before them with *predicted*
masks (STM's training), and each frame is restored from the other clip frames (true masks, dilated,
as the session's inpaint pass uses its final masks), warped onto it by estimated homographies.
Losses: BCE + Dice on masks; L1 in the hole (+ a little everywhere) + 1 - SSIM in the hole against
the true background, on sequences that have one (``Backgrounds/<seq>/``). No params.yaml here.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from models.common.frames import read_image, read_mask
from models.common.lit import HistoryCheckpoint
from models.inpainting import align
from models.inpainting.network import InpaintingNet, sampling_matrix

VOID = 255


# ------------------------------------------------------------------------------------------- losses

def dice_loss(logits: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    p = torch.sigmoid(logits) * weight
    t = target * weight
    inter = (p * t).flatten(1).sum(1)
    return (1 - (2 * inter + 1) / (p.flatten(1).sum(1) + t.flatten(1).sum(1) + 1)).mean()


def mask_loss(logits: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """BCE (void pixels weigh 0) + Dice: BCE for every pixel, Dice so small objects count."""
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum") / weight.sum().clamp_min(1)
    return bce + dice_loss(logits, target, weight)


def ssim_map(x: Tensor, y: Tensor, *, sigma: float = 1.5, size: int = 7) -> Tensor:
    """Per-pixel SSIM [B, 1, H, W] of images in [0, 1] (Gaussian window, the usual constants)."""
    g = torch.exp(-((torch.arange(size, dtype=x.dtype, device=x.device) - size // 2) ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    win = (g[:, None] * g[None, :]).expand(x.shape[1], 1, size, size)
    blur = lambda z: F.conv2d(F.pad(z, [size // 2] * 4, mode="reflect"), win, groups=x.shape[1])  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s.mean(1, keepdim=True)


def restore_loss(restored: Tensor, truth: Tensor, hole: Tensor, *, ssim_weight: float) -> Tensor:
    """L1 in the hole (per hole pixel) + 0.1 L1 on the frame + ``ssim_weight`` (1 - SSIM) in the hole."""
    area = hole.flatten(1).sum(1).clamp_min(1)
    l1 = (restored - truth).abs().mean(1, keepdim=True)
    hole_l1 = ((l1 * hole).flatten(1).sum(1) / area).mean()
    ssim = (((1 - ssim_map(restored, truth)) * hole).flatten(1).sum(1) / area).mean()
    return hole_l1 + 0.1 * l1.mean() + ssim_weight * ssim


def dilate(mask: Tensor, px: int = 1) -> Tensor:
    return F.max_pool2d(mask, 2 * px + 1, 1, px) if px > 0 else mask


# ------------------------------------------------------------------------------------------- module

class InpaintingLitModule(HistoryCheckpoint, L.LightningModule):
    """InpaintingNet + AdamW (warm-up, cosine). Validation: ``val_j`` (mean IoU of the targets' masks,
    the checkpoint monitor), ``val_hole_psnr`` (dB in the true hole), ``val_loss``. ``net_config``
    rebuilds the net from a checkpoint."""

    history_val_keys = ("val_j",)

    def __init__(self, net: InpaintingNet | None = None, *, net_config: dict | None = None, lr: float = 2e-3,
                 weight_decay: float = 1e-4, warmup_steps: int = 50, mask_weight: float = 1.0,
                 restore_weight: float = 1.0, ssim_weight: float = 0.3, hole_dilation: int = 1):
        super().__init__()
        if net is None:
            if net_config is None:
                raise ValueError("InpaintingLitModule needs a net or a net_config")
            net = InpaintingNet(**net_config)
        self.save_hyperparameters(ignore=["net"], logger=False)
        self.hparams["net_config"] = net.config
        self.net = net
        self._init_history()  # one row per finished epoch; saved in checkpoints (resume)
        self._val: list[tuple[float, float, float, int]] = []

    # -------------------------------------------------------------------------------- the clip
    def clip_forward(self, batch: dict) -> dict:
        """Segment the clip as the session does, restore every frame from the others; losses + outputs."""
        images, masks, void = batch["images"], batch["masks"], batch["void"]
        b, k = images.shape[:2]
        flat = images.flatten(0, 1)
        keys, feats = self.net.encode_key(flat)
        keys = keys.unflatten(0, (b, k))
        feats = {n: f.unflatten(0, (b, k)) for n, f in feats.items()}
        at = lambda i: {n: f[:, i] for n, f in feats.items()}  # noqa: E731
        logits = [self._reference(images[:, 0], keys[:, 0], at(0), batch["hints"])]
        mem_k = [keys[:, 0]]
        mem_v = [self.net.encode_value(images[:, 0], torch.sigmoid(logits[0]), at(0), batch["hints"][:, :2])]
        zeros = images.new_zeros(b, 3, *images.shape[-2:])
        for i in range(1, k):
            readout, _ = self.net.read(keys[:, i], torch.stack(mem_k, 1), torch.stack(mem_v, 1))
            logits.append(self.net.segment(at(i), readout, zeros))
            mem_k.append(keys[:, i])
            mem_v.append(self.net.encode_value(images[:, i], torch.sigmoid(logits[-1]), at(i)))
        logits = torch.stack(logits, 1)
        weight = 1 - void
        m_loss = mask_loss(logits.flatten(0, 1), masks.flatten(0, 1), weight.flatten(0, 1))
        restored = self._restore_all(images, masks, keys, feats, batch["homs"])
        has = batch["has_background"].view(b, 1, 1, 1, 1).expand(-1, k, 1, 1, 1).flatten(0, 1)
        holes = dilate(masks.flatten(0, 1), self.hparams.hole_dilation)
        r_loss = restore_loss(restored.flatten(0, 1), batch["backgrounds"].flatten(0, 1), holes * has,
                              ssim_weight=self.hparams.ssim_weight)
        loss = self.hparams.mask_weight * m_loss + self.hparams.restore_weight * r_loss
        return {"loss": loss, "mask_loss": m_loss, "restore_loss": r_loss, "logits": logits, "restored": restored}

    def _reference(self, image: Tensor, key: Tensor, feats: dict, hints: Tensor) -> Tensor:
        """The user frame: its scribble-only entry (with the previous mask, on a correction) read by itself."""
        own = self.net.encode_value(image, hints[:, 2:3], feats, hints[:, :2])
        readout, _ = self.net.read(key, key[:, None], own[:, None])
        return self.net.segment(feats, readout, hints)

    def _restore_all(self, images: Tensor, masks: Tensor, keys: Tensor, feats: dict, homs: Tensor) -> Tensor:
        b, k = images.shape[:2]
        holes = dilate(masks.flatten(0, 1), self.hparams.hole_dilation).unflatten(0, (b, k))
        values = self.net.encode_value(images.flatten(0, 1), holes.flatten(0, 1),
                                       {n: f.flatten(0, 1) for n, f in feats.items()}).unflatten(0, (b, k))
        h, w = images.shape[-2:]
        out = []
        for i in range(k):
            others = [j for j in range(k) if j != i]
            warps = sampling_matrix(homs[:, others, i], h, w)  # memory j → this frame i
            readout, _ = self.net.read(keys[:, i], keys[:, others], values[:, others])
            out.append(self.net.restore(images[:, i], holes[:, i], keys[:, i], readout, images[:, others],
                                        holes[:, others], keys[:, others], warps)["restored"])
        return torch.stack(out, 1)

    # ----------------------------------------------------------------------------------- steps
    def training_step(self, batch, batch_idx):
        out = self.clip_forward(batch)
        n = batch["images"].shape[0]
        self._add_train_loss(out["loss"].detach(), n)
        self.log("train_loss", out["loss"], on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        self.log_dict({"train_mask_loss": out["mask_loss"].detach(), "train_restore_loss": out["restore_loss"].detach()},
                      on_step=False, on_epoch=True, batch_size=n)
        return out["loss"]

    def on_validation_epoch_start(self) -> None:
        self._val = []

    def validation_step(self, batch, batch_idx):
        out = self.clip_forward(batch)
        pred = (out["logits"][:, 1:] > 0).float()
        gt, keep = batch["masks"][:, 1:], 1 - batch["void"][:, 1:]
        inter = (pred * gt * keep).flatten(2).sum(-1)
        union = (((pred + gt) > 0).float() * keep).flatten(2).sum(-1)
        j = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union)).mean(1)
        hole = batch["masks"] * batch["has_background"].view(-1, 1, 1, 1, 1)
        se = ((out["restored"] - batch["backgrounds"]) ** 2).mean(2, keepdim=True)
        mse = (se * hole).flatten(1).sum(1) / hole.flatten(1).sum(1).clamp_min(1)
        for jj, m in zip(j.tolist(), mse.tolist()):
            self._val.append((jj, m, float(out["loss"].detach()), 1))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        j = float(np.mean([v[0] for v in self._val]))
        psnr = float(np.mean([10 * np.log10(1 / max(v[1], 1e-10)) for v in self._val]))
        self.log_dict({"val_j": j, "val_hole_psnr": psnr, "val_loss": float(np.mean([v[2] for v in self._val]))},
                      prog_bar=True)
        if not self.trainer.sanity_checking:
            self._last_val = j



# --------------------------------------------------------------------------------------------- data

class _Sequence:
    """One DAVIS-layout sequence at the training size, loaded on first use (frames, labels, truth)."""

    def __init__(self, root: Path, name: str, size: tuple[int, int]):
        self.name, self.size = name, size
        self.frames = sorted(p for p in (root / "JPEGImages" / name).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not self.frames:
            raise ValueError(f"{root / 'JPEGImages' / name}: no frames")
        self.annotations = [root / "Annotations" / name / f"{p.stem}.png" for p in self.frames]
        missing = [a for a in self.annotations if not a.is_file()]
        if missing:
            raise ValueError(f"{missing[0]}: annotation missing (every training frame needs one)")
        bg = [root / "Backgrounds" / name / f"{p.stem}.png" for p in self.frames]
        self.backgrounds = bg if all(b.is_file() for b in bg) else None
        self._data: dict | None = None

    def __len__(self) -> int:
        return len(self.frames)

    def data(self) -> dict:
        import cv2

        if self._data is None:
            h, w = self.size
            rs = lambda a, nearest=False: cv2.resize(a, (w, h), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)  # noqa: E731
            images = np.stack([rs(read_image(p)) for p in self.frames])
            labels = np.stack([rs(read_mask(p), True) for p in self.annotations])
            bgs = np.stack([rs(read_image(p)) for p in self.backgrounds]) if self.backgrounds else images
            objects = [(lab > 0) & (lab != VOID) for lab in labels]  # as the session aligns: objects left out
            self._data = {"images": images, "labels": labels, "backgrounds": bgs,
                          "homs": align.video_homographies(images, objects)}
        return self._data


def clip_indices(rng, n: int, clip_len: int, max_gap: int) -> list[int]:
    """A reference frame then ``clip_len - 1`` frames 1..max_gap apart, all forwards or all backwards."""
    for _ in range(20):
        ref = int(rng.integers(n))
        step = int(rng.choice([-1, 1]))
        idx = ref + step * np.concatenate([[0], np.cumsum(rng.integers(1, max_gap + 1, clip_len - 1))])
        if idx.min() >= 0 and idx.max() < n:
            return idx.tolist()
    return [min(i, n - 1) for i in range(clip_len)]  # a short video: consecutive frames, repeats at the end


def _stroke_map(region: np.ndarray) -> np.ndarray:
    """A user-like stroke along the skeleton of a region, as a bool map (1 px wide: the session's width)."""
    import cv2

    from models.inpainting.scribbles import skeleton_path

    out = np.zeros(region.shape, np.uint8)
    path = skeleton_path(region)
    if len(path) == 1:
        out[path[0, 1], path[0, 0]] = 1
    elif len(path):
        cv2.polylines(out, [path.reshape(-1, 1, 2)], False, 1, 1)
    return out > 0


def _perturbed(rng, gt: np.ndarray) -> np.ndarray:
    """A plausible wrong mask for a correction round: the truth shifted, grown or shrunk, a blob off."""
    import cv2

    m = gt.astype(np.uint8)
    dx, dy = rng.integers(-3, 4, 2)
    m = np.roll(m, (int(dy), int(dx)), (0, 1))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(rng.integers(1, 3)) * 2 + 1,) * 2)
    m = cv2.dilate(m, k) if rng.random() < 0.5 else cv2.erode(m, k)
    h, w = m.shape
    cv2.circle(m, (int(rng.integers(w)), int(rng.integers(h))), int(rng.integers(2, max(3, min(h, w) // 6))),
               int(rng.random() < 0.5), -1)
    return m > 0


def reference_hints(rng, labels: np.ndarray, *, corrective: float) -> np.ndarray:
    """(positive, negative, previous mask) float32 [3, H, W] the simulated user gives the reference
    frame: round 1, a stroke inside each object; with probability ``corrective`` a later round, a wrong
    previous mask with a stroke on its largest missed part and one on its largest false part."""
    from models.inpainting.scribbles import largest_region

    gt = (labels > 0) & (labels != VOID)
    pos = np.zeros(gt.shape, bool)
    for o in np.unique(labels[gt]):
        pos |= _stroke_map(labels == o)
    neg, prev = np.zeros_like(pos), np.zeros_like(pos)
    if gt.any() and rng.random() < corrective:
        prev = _perturbed(rng, gt)
        pos |= _stroke_map(largest_region(gt & ~prev))
        neg = _stroke_map(largest_region(prev & ~gt & (labels != VOID)))
    return np.stack([pos, neg & ~pos, prev]).astype(np.float32)


class ClipDataset(Dataset):
    """Clips of DAVIS-layout sequences: ``images`` [K, 3, H, W], ``masks`` / ``void`` [K, 1, H, W],
    ``backgrounds`` [K, 3, H, W] (the frames themselves when there is no truth; ``has_background``
    0), ``hints`` [3, H, W] for the reference, ``homs`` [K, K, 3, 3] (frame j's pixels → frame i's).
    Item ``i`` is sequence ``i % n``; its randomness comes from ``(seed, i)`` and, unless ``fixed``,
    a draw from torch's generator (seeded per epoch and worker by the DataLoader: new clips every
    epoch, the same ones on a rerun with the same seed)."""

    def __init__(self, root, sequences: Sequence[str], *, size: tuple[int, int] = (64, 96), clip_len: int = 4,
                 max_gap: int = 3, samples: int | None = None, seed: int = 0, corrective: float = 0.5,
                 fixed: bool = False):
        if not sequences:
            raise ValueError("ClipDataset: no sequences")
        if size[0] % 4 or size[1] % 4:
            raise ValueError(f"size sides must be multiples of 4, got {size}")
        root = Path(root)
        self.seqs = [_Sequence(root, s, tuple(size)) for s in sequences]
        self.clip_len, self.max_gap, self.seed, self.corrective = int(clip_len), int(max_gap), int(seed), corrective
        self.samples = int(samples) if samples else len(self.seqs)
        self.fixed = fixed

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, i: int) -> dict:
        draw = 0 if self.fixed else int(torch.randint(2 ** 31 - 1, ()))
        rng = np.random.default_rng([self.seed, int(i), draw])
        d = self.seqs[i % len(self.seqs)].data()
        idx = clip_indices(rng, len(d["images"]), self.clip_len, self.max_gap)
        labels = d["labels"][idx]
        homs = np.stack([[align.relative(d["homs"], j, t) for j in idx] for t in idx])  # [K(t), K(j)]
        img = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255.0  # noqa: E731
        return {"images": img(d["images"][idx]), "backgrounds": img(d["backgrounds"][idx]),
                "masks": torch.from_numpy(((labels > 0) & (labels != VOID)).astype(np.float32))[:, None],
                "void": torch.from_numpy((labels == VOID).astype(np.float32))[:, None],
                "hints": torch.from_numpy(reference_hints(rng, labels[0], corrective=self.corrective)),
                "homs": torch.from_numpy(homs.transpose(1, 0, 2, 3)).float(),  # [j, t] → homs[:, j, t]
                "has_background": torch.tensor(float(self.seqs[i % len(self.seqs)].backgrounds is not None))}


def sequences_of(root) -> list[str]:
    """Sequence names of a DAVIS-layout folder (``JPEGImages/<seq>/``), sorted."""
    return sorted(p.name for p in (Path(root) / "JPEGImages").iterdir() if p.is_dir())


class InpaintingDataModule(L.LightningDataModule):
    """Train / val clips from one DAVIS-layout folder; ``samples_per_epoch`` clips a training epoch."""

    def __init__(self, *, root, train_sequences: Sequence[str], val_sequences: Sequence[str],
                 size: tuple[int, int] = (64, 96), clip_len: int = 4, max_gap: int = 3, batch_size: int = 4,
                 samples_per_epoch: int | None = None, num_workers: int = 0, seed: int = 0, corrective: float = 0.5):
        super().__init__()
        kw = {"size": tuple(size), "clip_len": clip_len, "max_gap": max_gap}
        self.train_set = ClipDataset(root, train_sequences, samples=samples_per_epoch, seed=seed,
                                     corrective=corrective, **kw)
        # validation: one fixed clip per sequence, round 1 only (what the first session round sees)
        self.val_set = ClipDataset(root, val_sequences, seed=seed + 1, corrective=0.0, fixed=True, **kw)
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)

    def _loader(self, dataset: Dataset, *, train: bool) -> DataLoader:
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=train, generator=gen if train else None,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)
