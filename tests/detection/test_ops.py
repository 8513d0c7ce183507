"""models.detection.ops against slow, obviously-correct references and box identities; the AP@0.5
proxy and the letterbox mapping back to original pixels."""
import numpy as np
import pytest
import torch

from models.detection.inference import to_original
from models.detection.lit import merge_val_rows
from models.detection.metrics import ap50
from models.detection.ops import (
    batched_nms,
    box_iou,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    iou_from_pi,
    iou_guided_nms,
    iou_guided_nms_reference,
    nms,
    nms_per_image,
    nms_reference,
    purity_integrity,
    roi_align,
    roi_align_reference,
)


def random_boxes(n, size=100.0, min_wh=1.0, gen=None, dtype=torch.float32):
    xy = torch.rand(n, 2, generator=gen, dtype=dtype) * size
    wh = torch.rand(n, 2, generator=gen, dtype=dtype) * size / 2 + min_wh
    return torch.cat([xy, xy + wh], dim=1)


def random_rois(n_img, k, img_size, gen):
    """RoIs anywhere in [-0.3, 1.2] x the image: some partly or wholly outside, a few tiny."""
    xy = torch.rand(k, 2, generator=gen, dtype=torch.float64) * img_size * 1.5 - img_size * 0.3
    wh = torch.rand(k, 2, generator=gen, dtype=torch.float64) * img_size * 0.6
    wh[:3] = torch.rand(3, 2, generator=gen, dtype=torch.float64) * 0.5  # sub-pixel RoIs
    batch = torch.randint(0, n_img, (k, 1), generator=gen).double()
    return torch.cat([batch, xy, xy + wh], dim=1)


# ------------------------------------------------------------------------------------- roi_align

@pytest.mark.parametrize("scale,sr,out,aligned", [(1.0, 2, 3, True), (0.5, 1, (2, 4), True),
                                                  (0.25, 3, 2, True), (0.125, 2, 2, True), (0.5, 2, 3, False)])
def test_roi_align_matches_reference(scale, sr, out, aligned):
    g = torch.Generator().manual_seed(int(scale * 1000) + sr)
    feats = torch.randn(3, 4, 9, 11, generator=g, dtype=torch.float64)
    img = 11 / scale
    rois = random_rois(3, 12, img, g)
    rois[0, 0] = 2.0  # the last image always has a RoI; image 1 may have none
    fast = roi_align(feats, rois, out, scale, sr, aligned)
    ref = roi_align_reference(feats, rois, out, scale, sr, aligned)
    assert fast.shape == ref.shape
    assert torch.allclose(fast, ref, atol=1e-5, rtol=1e-5), (fast - ref).abs().max()
    assert ref.abs().sum() > 0


def test_roi_align_zero_outside_and_float32_close():
    feats = torch.ones(1, 2, 8, 8)
    far = torch.tensor([[0.0, 20.0, 20.0, 30.0, 30.0], [0.0, -30.0, -30.0, -20.0, -20.0]])
    assert roi_align(feats, far, 2, 1.0).abs().sum() == 0
    g = torch.Generator().manual_seed(1)
    f64 = torch.randn(2, 3, 10, 10, generator=g, dtype=torch.float64)
    rois = random_rois(2, 8, 20, g)
    ref = roi_align_reference(f64, rois, 3, 0.5, 2)
    assert torch.allclose(roi_align(f64.float(), rois.float(), 3, 0.5, 2).double(), ref, atol=1e-4)
    assert roi_align(f64, rois[:0], 3, 0.5).shape == (0, 3, 3, 3)


def test_roi_align_gradient():
    g = torch.Generator().manual_seed(2)
    feats = torch.randn(2, 2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    rois = random_rois(2, 5, 6, g)
    assert torch.autograd.gradcheck(lambda f: roi_align(f, rois, 2, 1.0, 2), (feats,))
    # and the same gradient as the reference loop's autograd
    w = torch.randn(5, 2, 2, 2, generator=g, dtype=torch.float64)
    (gf,) = torch.autograd.grad((roi_align(feats, rois, 2, 1.0, 2) * w).sum(), feats)
    (gr,) = torch.autograd.grad((roi_align_reference(feats, rois, 2, 1.0, 2) * w).sum(), feats)
    assert torch.allclose(gf, gr, atol=1e-10) and gf.abs().sum() > 0


# -------------------------------------------------------------------------------------------- NMS

@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_matches_reference(seed, thr):
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(60, 60, gen=g)
    scores = torch.rand(60, generator=g)
    scores[5] = scores[6]  # a tie: the lower index wins in both
    keep = nms(boxes, scores, thr)
    assert keep.tolist() == nms_reference(boxes, scores, thr)
    assert (scores[keep].diff() <= 0).all()
    assert nms(boxes, scores, thr, max_keep=3).tolist() == keep[:3].tolist()


@pytest.mark.parametrize("seed", range(3))
def test_batched_nms_matches_reference(seed):
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(80, 50, gen=g) - 20  # negative coordinates too
    scores, idxs = torch.rand(80, generator=g), torch.randint(0, 4, (80,), generator=g)
    assert batched_nms(boxes, scores, idxs, 0.5).tolist() == nms_reference(boxes, scores, 0.5, idxs)


@pytest.mark.parametrize("thr", [0.3, 0.7])
def test_nms_per_image_matches_reference(thr):
    g = torch.Generator().manual_seed(int(thr * 10))
    boxes = torch.stack([random_boxes(50, 60, gen=g) for _ in range(3)])
    scores = torch.rand(3, 50, generator=g)
    valid = torch.rand(3, 50, generator=g) > 0.2
    valid[2] = False  # an image with nothing to keep
    keep = nms_per_image(boxes, scores, thr, valid=valid)
    for b, s, v, k in zip(boxes, scores, valid, keep):
        idx = v.nonzero().squeeze(1)
        assert k.tolist() == idx[nms_reference(b[idx], s[idx], thr)].tolist()
    top = nms_per_image(boxes, scores, thr, valid=valid, max_keep=4)
    assert [t.tolist() for t in top] == [k[:4].tolist() for k in keep] and len(keep[2]) == 0


def test_nms_groups_do_not_suppress_each_other():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [0]
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.5).tolist() == [0, 1]
    assert nms(boxes[:0], scores[:0], 0.5).numel() == 0


# ---------------------------------------------------------------------------------- box geometry

def test_box_iou_known_values():
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[0.0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 5, 5]])
    assert torch.allclose(box_iou(a, b), torch.tensor([[1.0, 1 / 3, 0.0, 0.25]]))


def test_purity_integrity_identities():
    g = torch.Generator().manual_seed(3)
    b, gt = random_boxes(200, gen=g, dtype=torch.float64), random_boxes(200, gen=g, dtype=torch.float64)
    b[:100] = gt[:100] + torch.randn(100, 4, generator=g, dtype=torch.float64) * 5  # overlapping pairs
    b[:, 2:] = torch.maximum(b[:, 2:], b[:, :2] + 1)
    p, i = purity_integrity(b, gt)
    assert ((p >= 0) & (p <= 1) & (i >= 0) & (i <= 1)).all() and (p > 0).sum() > 50
    assert torch.allclose(iou_from_pi(p, i), box_iou(b, gt).diagonal(), atol=1e-12)
    inner = torch.tensor([[2.0, 2, 5, 6]])
    outer = torch.tensor([[0.0, 0, 10, 10]])
    p, i = purity_integrity(inner, outer)  # B inside G: all of B is object
    assert p.item() == 1 and i.item() == pytest.approx(12 / 100)
    p, i = purity_integrity(outer, inner)  # G inside B: all of the object is covered
    assert i.item() == 1 and p.item() == pytest.approx(12 / 100)
    assert iou_from_pi(torch.zeros(1), torch.zeros(1)).item() == 0


def test_encode_decode_round_trip_and_clamp():
    g = torch.Generator().manual_seed(4)
    src, dst = random_boxes(50, gen=g, dtype=torch.float64), random_boxes(50, gen=g, dtype=torch.float64)
    for w in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
        d = encode_boxes(src, dst, w)
        assert torch.allclose(decode_boxes(d, src, w), dst, atol=1e-9)
    per_class = decode_boxes(torch.cat([encode_boxes(src, dst), torch.zeros(50, 4, dtype=torch.float64)], 1), src)
    assert torch.allclose(per_class[:, :4], dst) and torch.allclose(per_class[:, 4:], src)
    huge = decode_boxes(torch.tensor([[0.0, 0, 100, 100]]), torch.tensor([[0.0, 0, 10, 10]]))
    assert torch.isfinite(huge).all() and (huge[0, 2] - huge[0, 0]) == pytest.approx(10 * 1000 / 16, rel=1e-4)


def test_clip_boxes():
    b = torch.tensor([[-5.0, -1, 50, 20], [3, 4, 5, 6]])
    assert clip_boxes(b, (10, 30)).tolist() == [[0, 0, 30, 10], [3, 4, 5, 6]]


# ------------------------------------------------------------------------------ metrics, letterbox

def test_letterbox_mapping_back():
    info = {"orig_size": (50, 200), "scale": (0.5, 0.52)}
    boxes = torch.tensor([[10.0, 5.2, 60.0, 26.0], [90.0, 20.0, 120.0, 40.0]])
    want = torch.tensor([[20.0, 10.0, 120.0, 50.0], [180, 20 / 0.52, 200, 50]])  # x clipped to the width 200
    assert torch.allclose(to_original(boxes, info), want)


def test_ap50_and_val_merge():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    row = {"gt_boxes": gt, "gt_labels": np.array([1, 2])}
    perfect = {**row, "boxes": gt, "scores": np.array([0.9, 0.8]), "labels": np.array([1, 2])}
    assert ap50([perfect], 2) == pytest.approx(1.0)
    wrong_class = {**perfect, "labels": np.array([2, 1])}
    assert ap50([wrong_class], 2) == 0.0
    # class 1: a false positive ranked above the hit -> precision 1/2 at full recall
    fp_first = {**row, "boxes": np.array([[50, 50, 60, 60], [0, 0, 10, 10], [20, 20, 30, 30]], float),
                "scores": np.array([0.9, 0.5, 0.5]), "labels": np.array([1, 1, 2])}
    assert ap50([fp_first], 2) == pytest.approx((0.5 + 1.0) / 2)
    dup = {**perfect, "boxes": np.concatenate([gt[:1], gt]), "scores": np.array([0.95, 0.9, 0.8]),
           "labels": np.array([1, 1, 2])}  # the duplicate of a matched box is a false positive
    assert ap50([dup], 2) == pytest.approx(1.0)  # ... ranked below the hit: AP unchanged
    assert ap50([], 2) == 0.0
    shards = [[{"index": 0, "v": "a"}, {"index": 2, "v": "c"}], [{"index": 1, "v": "b"}, {"index": 0, "v": "x"}]]
    assert [r["v"] for r in merge_val_rows(shards)] == ["a", "b", "c"]


@pytest.mark.parametrize("seed", range(6))
def test_iou_guided_nms_matches_the_reference(seed):
    gen = torch.Generator().manual_seed(seed)
    n = 60
    boxes = random_boxes(n, gen=gen, dtype=torch.float64)
    ious = torch.rand(n, generator=gen, dtype=torch.float64)
    scores = torch.rand(n, generator=gen, dtype=torch.float64)
    labels = torch.randint(1, 4, (n,), generator=gen)
    for thr in (0.3, 0.5, 0.7):
        keep, new = iou_guided_nms(boxes, ious, scores, labels, thr)
        ref = iou_guided_nms_reference(boxes, ious, scores, labels, thr)
        assert keep.tolist() == [i for i, _ in ref]
        np.testing.assert_allclose(new.numpy(), [s for _, s in ref], rtol=0, atol=1e-12)
        assert (new.diff() <= 0).all() and (new >= scores[keep]).all()
        top, top_new = iou_guided_nms(boxes, ious, scores, labels, thr, max_keep=5)
        assert torch.equal(top, keep[:5]) and torch.equal(top_new, new[:5])


def test_iou_guided_nms_keeps_the_higher_iou_box_with_the_higher_score():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1.0, 0, 11, 10], [50.0, 50, 60, 60], [0.0, 0, 10, 10]])
    ious = torch.tensor([0.6, 0.9, 0.5, 0.95])  # box 1 overlaps box 0 (IoU 9/11); box 3 is another class
    scores = torch.tensor([0.8, 0.3, 0.4, 0.2])
    labels = torch.tensor([1, 1, 1, 2])
    keep, new = iou_guided_nms(boxes, ious, scores, labels, 0.5)
    # box 1 (higher predicted IoU) is kept and inherits box 0's 0.8; box 3 is not suppressed (class 2)
    assert keep.tolist() == [1, 2, 3] and new.tolist() == pytest.approx([0.8, 0.4, 0.2])
    keep, new = iou_guided_nms(boxes, ious, scores, labels, 0.9)  # IoU 9/11 < 0.9: nothing suppressed
    assert keep.tolist() == [0, 2, 1, 3] and new.tolist() == pytest.approx([0.8, 0.4, 0.3, 0.2])
    keep, new = iou_guided_nms(boxes[:0], ious[:0], scores[:0], labels[:0], 0.5)
    assert keep.numel() == 0 and new.numel() == 0
