"""The DIR detector end to end on tiny synthetic data: losses, inference variants, a short overfit,
model files, COCO output and the Lightning wrappers."""
import math

import cv2
import lightning as L
import numpy as np
import pytest
import torch

from models.detection.detector import Detector
from models.detection.inference import (
    ImageReadError,
    ModelFileError,
    load_model,
    predict_images,
    read_image,
    save_model,
    to_coco_results,
)
from models.detection.lit import DetectionDataModule, DetectionDataset, DetectionLitModule
from models.detection.ops import box_iou, iou_from_pi
from models.detection.roi_heads import IOU_HEADS, DecoupledIoUHead, jitter_boxes

TINY = dict(num_classes=2, channels=(8, 16, 32, 48), fpn_channels=32, head_dim=64)
LOSSES = {"loss_rpn_cls", "loss_rpn_box", "loss_cls", "loss_box", "loss_iou_direct", "loss_iou_decoupled",
          "loss_iou_dir"}


def synthetic(n=3, size=112, seed=0, per_image=3):
    """Noise images with non-overlapping bright rectangles: class 1 red, class 2 green."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=g) * 0.3
    targets = []
    for i in range(n):
        boxes, labels = [], []
        for j in range(per_image):
            for _ in range(100):
                wh = torch.randint(size // 7, size * 3 // 7, (2,), generator=g).float()
                xy = (torch.rand(2, generator=g) * (size - wh)).round()
                b = torch.cat([xy, xy + wh])
                if not boxes or box_iou(b[None], torch.stack(boxes)).max() == 0:
                    break
            x1, y1, x2, y2 = b.long().tolist()
            images[i, j % 2, y1:y2, x1:x2] = 0.9
            boxes.append(b)
            labels.append(1 + j % 2)
        targets.append({"boxes": torch.stack(boxes), "labels": torch.tensor(labels)})
    return images, targets


def no_gt():
    return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}


# --------------------------------------------------------------------------------------- training

def test_training_losses_finite_backward_and_iou_branch_detached():
    torch.manual_seed(0)
    det = Detector(**TINY).train()
    images, targets = synthetic(n=2, size=64)
    targets[1] = no_gt()
    losses = det(images, targets)
    assert set(losses) == LOSSES
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values())
    # the IoU branch trains its own heads only: the shared detector gets no gradient from it
    sum(v for k, v in losses.items() if k.startswith("loss_iou")).backward(retain_graph=True)
    assert all(p.grad is None for p in [*det.backbone.parameters(), *det.rpn.parameters(),
                                        *det.box_head.parameters()])
    assert all(p.grad is not None for p in det.iou_heads.parameters())
    det.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    grads = [p.grad for p in det.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert det.backbone.body.stem[0].weight.grad.abs().sum() > 0


def test_detector_from_stride_4_trains_and_rebuilds():
    from models.detection.backbone import BackboneFPN

    fpn = BackboneFPN(channels=(8, 16, 32, 48), fpn_channels=16, fpn_levels=(2, 3, 4, 5))
    assert fpn.strides == (4, 8, 16, 32)
    assert [tuple(f.shape[-2:]) for f in fpn(torch.rand(1, 3, 64, 64))] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    torch.manual_seed(0)
    det = Detector(**{**TINY, "fpn_levels": (2, 3, 4, 5), "anchor_sizes": (12, 24, 48, 96)}).train()
    images, targets = synthetic(n=2)
    losses = det(images, targets)
    assert set(losses) == LOSSES and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    # the stride-4 level takes part: its lateral conv gets a gradient
    assert det.backbone.fpn.lateral["2"].weight.grad.abs().sum() > 0
    again = Detector(**det.config)
    again.load_state_dict(det.state_dict())  # the config rebuilds the same architecture


def test_backbone_norm_switch_and_older_models_load_as_groupnorm():
    def norms(d):
        return {type(m) for m in d.backbone.modules()} & {torch.nn.BatchNorm2d, torch.nn.GroupNorm}

    torch.manual_seed(0)
    bn, gn = Detector(**TINY, norm="bn"), Detector(**TINY)
    assert norms(bn) == {torch.nn.BatchNorm2d} and norms(gn) == {torch.nn.GroupNorm}
    assert bn.config["norm"] == "bn" and Detector(**bn.config).config == bn.config
    before = {k: v for k, v in bn.config.items() if k not in ("norm", "box_loss_beta")}  # a model.pt of before
    assert norms(Detector(**before)) == {torch.nn.GroupNorm}
    with pytest.raises(ValueError, match="norm"):
        Detector(**TINY, norm="layer")
    images, targets = synthetic(n=2, size=64)
    losses = bn.train()(images, targets)
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values()) and bn.backbone.body.stem[0].weight.grad.abs().sum() > 0
    # in eval, BatchNorm uses its running statistics: an image's detections do not depend on its batch
    bn.eval()
    alone = bn.candidates(images[:1], score_threshold=0.0)[0]
    paired = bn.candidates(images, score_threshold=0.0)[0]
    assert len(alone["scores"]) > 0 and torch.allclose(alone["scores"], paired["scores"], atol=1e-5)


def test_box_loss_beta_zero_is_l1():
    from models.detection.ops import encode_boxes
    from models.detection.roi_heads import BOX_WEIGHTS, box_losses

    boxes = torch.tensor([[10.0, 10.0, 30.0, 30.0], [0.0, 0.0, 8.0, 8.0]])
    gt = torch.tensor([[14.0, 9.0, 34.0, 33.0], [0.0, 0.0, 8.0, 8.0]])
    labels = torch.tensor([2, 0])  # one foreground RoI, one background
    logits, deltas = torch.zeros(2, 3), torch.zeros(2, 8)  # zero deltas: the loss is that of the target
    t = encode_boxes(boxes[:1], gt[:1], BOX_WEIGHTS)
    assert (t.abs() > 1).any() and (t.abs() < 1).any()  # both pieces of smooth-L1 are exercised
    l1 = box_losses(logits, deltas, boxes, labels, gt, beta=0.0)["loss_box"]
    smooth = box_losses(logits, deltas, boxes, labels, gt)["loss_box"]
    assert torch.isclose(l1, t.abs().sum() / 2)  # averaged over both sampled RoIs
    a = t.abs()
    assert torch.isclose(smooth, torch.where(a < 1, 0.5 * a ** 2, a - 0.5).sum() / 2)


def test_batch_without_any_gt():
    det = Detector(**TINY).train()
    losses = det(torch.rand(2, 3, 64, 64), [no_gt(), no_gt()])
    assert set(losses) == LOSSES and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert losses["loss_box"] == 0 and losses["loss_iou_dir"] == 0 and losses["loss_cls"] > 0


def test_jittered_boxes_spread_over_iou_half_to_one():
    torch.manual_seed(0)
    gt = torch.tensor([[10.0, 20, 60, 50], [0, 0, 20, 80]])
    boxes, idx = jitter_boxes(gt, 500)
    iou = box_iou(boxes, gt)[torch.arange(len(boxes)), idx]
    assert idx.tolist() == [0] * 500 + [1] * 500
    assert (iou > 0.4).float().mean() > 0.98
    hist = torch.histc(iou, bins=5, min=0.5, max=1.0) / len(iou)
    assert (hist > 0.1).all() and (hist < 0.3).all(), hist  # roughly uniform: 0.2 each


def test_iou_samples_take_poor_proposals_only_when_asked():
    """low_fraction > 0: part of the IoU heads' samples are proposals below IoU 0.5 with their
    best-overlapping GT, as inference feeds the heads; 0 keeps the IoU-Net regime (IoU >= ~0.5)."""
    from models.detection.roi_heads import iou_samples

    torch.manual_seed(0)
    gt = torch.tensor([[10.0, 10, 50, 50]])
    far = torch.tensor([[100.0, 100, 140, 140]]).repeat(20, 1)               # IoU 0 with the GT
    near = torch.tensor([[12.0, 12, 52, 52]]).repeat(20, 1)                  # IoU ~0.82
    props = [torch.cat([far, near])]
    targets = [{"boxes": gt, "labels": torch.tensor([3])}]
    for frac, want_low in ((0.0, 0), (0.25, 8)):
        qs, g, labels = iou_samples(props, targets, num=32, low_fraction=frac)
        iou = box_iou(qs[0], g).diagonal()
        assert len(qs[0]) == 32 and (labels == 3).all()
        assert int((iou < 0.3).sum()) == want_low, frac


# -------------------------------------------------------------------------------------- inference

@pytest.fixture(scope="module")
def candidates():
    torch.manual_seed(1)
    det = Detector(**TINY).eval()
    images, _ = synthetic(n=2, size=64)
    return det, det.candidates(images, score_threshold=0.0)


def test_candidates_hold_every_head(candidates):
    det, cands = candidates
    keys = {"boxes", "scores", "labels", "proposals", "iou_direct", "purity_decoupled", "integrity_decoupled",
            "iou_decoupled", "purity_dir", "integrity_dir", "iou_dir"}
    assert len(cands) == 2 and all(set(c) == keys for c in cands)
    c = cands[0]
    assert len(c["boxes"]) > 0 and len({len(v) for v in c.values()}) == 1
    assert ((c["boxes"] >= 0) & (c["boxes"] <= 64)).all() and set(c["labels"].tolist()) <= {1, 2}
    for name in ("decoupled", "dir"):
        p, i = c[f"purity_{name}"], c[f"integrity_{name}"]
        assert torch.allclose(c[f"iou_{name}"], p * i / (p + i - p * i))


@pytest.mark.parametrize("variant", ["none", "direct", "decoupled", "dir", "iou_nms"])
def test_postprocess_ranks_and_suppresses(candidates, variant):
    det, cands = candidates
    out = det.postprocess(cands, variant, nms_threshold=0.5, max_detections=30)
    for d in out:
        assert len(d["boxes"]) <= 30 and (d["rank"].diff() <= 0).all()
        if variant == "iou_nms":  # direct head's IoU, ranked by the inherited class score
            assert torch.equal(d["rank"], d["scores"]) and not torch.isnan(d["iou"]).any()
            assert torch.isnan(d["purity"]).all()
        elif variant == "none":
            assert torch.isnan(d["iou"]).all() and torch.isnan(d["purity"]).all()
            assert torch.equal(d["rank"], d["scores"])
        else:
            assert torch.allclose(d["rank"], d["scores"] * d["iou"])
            assert torch.isnan(d["purity"]).all() == (variant == "direct")
            if variant != "direct":
                assert torch.allclose(d["iou"], iou_from_pi(d["purity"], d["integrity"]))
        same = d["labels"][:, None] == d["labels"][None]
        overlap = box_iou(d["boxes"], d["boxes"]) > 0.5
        assert not (same & overlap & ~torch.eye(len(same), dtype=torch.bool)).any()  # class-wise NMS
    with pytest.raises(ValueError, match="unknown variant"):
        det.postprocess(cands, "bogus")


def test_config_rebuilds_identical_model(candidates):
    det, cands = candidates
    again = Detector(**det.config)
    again.load_state_dict(det.state_dict())
    images, _ = synthetic(n=2, size=64)
    got = again.eval().candidates(images, score_threshold=0.0)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(got, cands) for k in a)
    with pytest.raises(ValueError, match="unknown IoU heads"):
        Detector(num_classes=2, iou_heads=("dir", "mystery"))


def test_max_candidates_keeps_each_images_best(candidates):
    det, cands = candidates
    few = Detector(**{**det.config, "max_candidates": 5})
    few.load_state_dict(det.state_dict())
    got = few.eval().candidates(synthetic(n=2, size=64)[0], score_threshold=0.0)
    for g, c in zip(got, cands):
        assert len(g["scores"]) == 5 and torch.equal(g["scores"], c["scores"].sort(descending=True).values[:5])


def test_a_new_iou_head_plugs_in_through_the_registry(monkeypatch):
    class Refined(DecoupledIoUHead):  # e.g. decoupled, pooled on the refined box: DIR by another name
        pool_on = "refined"
    monkeypatch.setitem(IOU_HEADS, "mine", Refined)
    det = Detector(**{**TINY, "iou_heads": ("mine",)})
    images, targets = synthetic(n=1, size=64)
    assert set(det.train()(images, targets)) == LOSSES - {"loss_iou_direct", "loss_iou_decoupled",
                                                          "loss_iou_dir"} | {"loss_iou_mine"}
    assert det.variants == ("none", "mine") and "iou_mine" in det.eval().candidates(images, score_threshold=0)[0]


# ----------------------------------------------------------------------------------------- overfit

@pytest.fixture(scope="module")
def overfit():
    """~100 AdamW steps on 3 synthetic images (a few seconds on one core)."""
    torch.manual_seed(0)
    images, targets = synthetic()
    det = Detector(**TINY).train()
    steps = 100
    opt = torch.optim.AdamW(det.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps, pct_start=0.1)
    curve = []
    for _ in range(steps):
        losses = det(images, targets)
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        curve.append({k: float(v.detach()) for k, v in losses.items()})
    return det.eval(), images, targets, curve


def test_overfit_losses_drop(overfit):
    _, _, _, curve = overfit
    first = {k: np.mean([c[k] for c in curve[:5]]) for k in curve[0]}
    last = {k: np.mean([c[k] for c in curve[-5:]]) for k in curve[0]}
    assert sum(last.values()) < 0.5 * sum(first.values())
    for k in ("loss_rpn_cls", "loss_cls", "loss_iou_direct", "loss_iou_decoupled", "loss_iou_dir"):
        assert last[k] < 0.9 * first[k], (k, first[k], last[k])


@pytest.mark.parametrize("variant", ["none", "dir"])
def test_overfit_detections_hit_the_gt(overfit, variant):
    det, images, targets, _ = overfit
    hits = total = 0
    for d, t in zip(det.detect(images, variant), targets):
        k = len(t["boxes"])  # the top-k detections should be the k objects, right class, IoU > 0.5
        iou = box_iou(d["boxes"][:k], t["boxes"]) * (d["labels"][:k, None] == t["labels"][None])
        hits += int((iou.max(dim=0).values > 0.5).sum())
        total += k
    assert hits >= 0.8 * total, (hits, total)


def test_overfit_iou_predictions_track_true_iou(overfit):
    det, images, targets, _ = overfit
    cands = det.candidates(images)
    true = torch.cat([box_iou(c["boxes"], t["boxes"]).max(dim=1).values for c, t in zip(cands, targets)])
    keep = true > 0.3  # candidates on an object: the regime the heads are trained for
    corr = {name: float(torch.corrcoef(torch.stack([torch.cat([c[f"iou_{name}"] for c in cands])[keep],
                                                     true[keep]]))[0, 1]) for name in det.iou_heads}
    assert keep.sum() > 30 and all(v > 0.1 for v in corr.values()), corr


@torch.no_grad()
def test_dir_reads_the_refined_box_and_the_others_the_proposal(overfit):
    det, images, _, _ = overfit
    feats = det.features(images)
    c = det.candidates(images)[1]
    rois = {k: torch.cat([torch.ones(len(c[k]), 1), c[k]], dim=1) for k in ("proposals", "boxes")}  # image 1
    assert (c["proposals"] - c["boxes"]).abs().mean() > 1  # trained: R is not Q, the test can tell
    for name, on in (("dir", "boxes"), ("decoupled", "proposals"), ("direct", "proposals")):
        head = det.iou_heads[name]
        pred = head.predict(head(det.pooler(feats, rois[on]), c["labels"]))
        assert torch.allclose(pred["iou"], c[f"iou_{name}"], atol=1e-6), name
        other = head.predict(head(det.pooler(feats, rois[{"boxes": "proposals"}.get(on, "boxes")]), c["labels"]))
        assert (other["iou"] - c[f"iou_{name}"]).abs().max() > 1e-3, name


# ------------------------------------------------------------------------------------ model files

def write_image(path, chw: torch.Tensor, scale: int = 1):
    rgb = (chw.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def test_save_load_round_trip_and_bad_files(overfit, tmp_path):
    det, images, _, _ = overfit
    path = save_model(tmp_path / "m" / "det.pt", det, category_ids=[5, 9], category_names=["red", "green"],
                      image_size=112)
    loaded, meta = load_model(path)
    assert not loaded.training and meta["image_size"] == 112 and [c["id"] for c in meta["categories"]] == [5, 9]
    a, b = det.candidates(images), loaded.candidates(images)
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    for bad in (tmp_path / "bad.pt", tmp_path / "missing.pt"):
        with pytest.raises(ModelFileError, match=bad.name):
            load_model(bad)
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(ImageReadError, match="text.jpg"):
        read_image(tmp_path / "text.jpg", 64)


def test_predict_images_in_original_pixels(overfit, tmp_path):
    det, images, targets, _ = overfit
    path = save_model(tmp_path / "det.pt", det, category_ids=[5, 9], category_names=["a", "b"], image_size=112)
    model, meta = load_model(path)
    write_image(tmp_path / "big.png", images[0], scale=2)  # 224 px on disk, 112 px in the model
    out = predict_images(model, meta, [tmp_path / "big.png"], variants=("none", "dir"))
    assert set(out) == {"none", "dir"} and len(out["dir"]) == 1
    d, t = out["dir"][0], targets[0]
    assert set(d) == {"bbox", "category_id", "score", "iou", "purity", "integrity", "rank"}
    k = len(t["boxes"])
    xyxy = torch.tensor(d["bbox"][:k]).float()
    xyxy[:, 2:] += xyxy[:, :2]
    iou = box_iou(xyxy, t["boxes"] * 2) * torch.tensor(d["category_id"][:k][:, None] == np.array([5, 9])[
        t["labels"].numpy() - 1][None])
    assert (iou.max(dim=0).values > 0.5).all()
    assert np.isnan(out["none"][0]["iou"]).all() and np.allclose(d["rank"], d["score"] * d["iou"])
    res = to_coco_results([42], out["dir"])
    assert len(res) == len(d["rank"]) and res[0]["image_id"] == 42 and res[0]["score"] == pytest.approx(d["rank"][0])
    assert res[0]["bbox"] == pytest.approx(d["bbox"][0].tolist()) and res[0]["category_id"] in (5, 9)
    cands: list = []
    again = predict_images(model, meta, [tmp_path / "big.png"], variants=("dir",), candidates_out=cands)
    np.testing.assert_array_equal(again["dir"][0]["bbox"], d["bbox"])  # asking for candidates changes nothing
    assert len(cands) == 1 and set(cands[0]) == {"bbox", "category_id", "score", "iou_direct", "iou_decoupled",
                                                 "iou_dir"}
    c = cands[0]
    assert len(c["bbox"]) >= len(d["bbox"]) and (c["score"] > 0.05).all() and len({len(v) for v in c.values()}) == 1
    # every kept detection is one of the candidates, in the same original pixels
    assert all(np.isclose(c["bbox"], b).all(axis=1).any() for b in d["bbox"])


# -------------------------------------------------------------------------------------- lightning

def write_split(folder, n, seed):
    images, targets = synthetic(n=n, size=96, seed=seed)
    items = []
    for i, (img, t) in enumerate(zip(images, targets)):
        write_image(folder / f"{seed}_{i}.png", img)
        b = t["boxes"]
        items.append((str(folder / f"{seed}_{i}.png"), torch.cat([b[:, :2], b[:, 2:] - b[:, :2]], 1).tolist(),
                      [[3, 7][int(l) - 1] for l in t["labels"]]))
    return items


@pytest.fixture
def datamodule(tmp_path):
    return DetectionDataModule(train_images=write_split(tmp_path, 3, 0), val_images=write_split(tmp_path, 3, 1),
                               category_ids=[7, 3], image_size=64, batch_size=2, seed=0)


def test_datamodule_items(datamodule):
    image, target, index, info = datamodule.val_set[0]
    assert image.shape == (3, 64, 64) and 0 <= image.min() and image.max() <= 1 and index == 0
    assert info["scale"] == (64 / 96, 64 / 96) and target["labels"].dtype == torch.int64
    assert set(target["labels"].tolist()) <= {1, 2}  # 3 -> 1, 7 -> 2 (sorted category ids)
    assert ((target["boxes"] >= 0) & (target["boxes"] <= 64)).all()
    train = datamodule.train_set  # flip=True: each read is mirrored or not, at random
    torch.manual_seed(0)
    flips = [train[0][1]["boxes"] for _ in range(10)]
    ref = DetectionDataset(train.items, category_ids=[3, 7], image_size=64)[0][1]["boxes"]
    mirrored = torch.stack([64 - ref[:, 2], ref[:, 1], 64 - ref[:, 0], ref[:, 3]], 1)
    assert all(torch.allclose(f, ref) or torch.allclose(f, mirrored) for f in flips)
    assert any(torch.allclose(f, mirrored) for f in flips)
    bad = DetectionDataModule(train_images=[("/nonexistent/x.png", [], [])], val_images=[], category_ids=[1],
                              image_size=64)
    with pytest.raises(ImageReadError, match="x.png"):
        bad.train_set[0]


def test_a_one_image_last_training_batch_is_dropped(tmp_path):
    """BatchNorm cannot train on one value per channel (one image, a 1 x 1 map at stride 32)."""
    val = write_split(tmp_path, 2, 1)
    for n, steps in ((3, 1), (4, 2), (5, 2)):
        dm = DetectionDataModule(train_images=write_split(tmp_path, n, 10 + n), val_images=val,
                                 category_ids=[7, 3], image_size=64, batch_size=2)
        assert len(dm.train_dataloader()) == steps and len(dm.val_dataloader()) == 1


def trainer(**kw):
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, **kw)


def test_lightning_fast_dev_run(datamodule):
    lit = DetectionLitModule(net=Detector(**TINY), lr=1e-3, warmup_steps=2)
    trainer(fast_dev_run=True, enable_checkpointing=False).fit(lit, datamodule=datamodule)
    assert lit.history and math.isfinite(lit.history[0]["train_loss"]) and "val_ap50" in lit.history[0]


def test_validation_covers_the_split_once_across_ranks(datamodule, monkeypatch):
    lit = DetectionLitModule(net=Detector(**TINY))
    single = trainer().validate(lit, datamodule=datamodule, verbose=False)[0]["val_ap50"]
    assert lit.val_images_seen == 3
    # two ranks: DistributedSampler gives rank 0 items 0, 2 and rank 1 items 1, 0 (a padding repeat)
    monkeypatch.setattr(lit, "_gather_objects", lambda rows: [[rows[0], rows[2]], [rows[1], rows[0]]])
    split = trainer().validate(lit, datamodule=datamodule, verbose=False)[0]["val_ap50"]
    assert lit.val_images_seen == 3 and split == pytest.approx(single)


def test_checkpoint_resume_keeps_history_and_rebuilds_net(datamodule, tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    def fit(epochs, ckpt=None):
        lit = DetectionLitModule(net=Detector(**TINY), warmup_steps=1)
        cb = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_ap50", mode="max", save_last=True)
        trainer(max_epochs=epochs, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0,
                callbacks=[cb]).fit(lit, datamodule=datamodule, ckpt_path=ckpt)
        return lit

    fit(1)
    lit = fit(2, tmp_path / "ckpt" / "last.ckpt")
    assert [r["epoch"] for r in lit.history] == [0, 1]
    restored = DetectionLitModule.load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt")  # no net given
    assert restored.net.config == lit.net.config and restored.history == lit.history
    assert all(torch.equal(a, b) for a, b in zip(restored.net.state_dict().values(), lit.net.state_dict().values()))


def test_ap_of_a_class_with_objects_and_no_detection_is_zero():
    """An early epoch may detect nothing of a class that has objects: AP 0, not an error."""
    from models.detection.metrics import average_precision

    assert average_precision(np.zeros(0), np.zeros(0, bool), 3) == 0.0
    assert np.isnan(average_precision(np.zeros(0), np.zeros(0, bool), 0))
    assert average_precision(np.array([0.9, 0.1]), np.array([True, False]), 1) == 1.0
