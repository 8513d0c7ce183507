"""What the evaluate stage measures, as plain functions: interactive rounds with the simulated user,
restoration against the true background, baselines on the same videos, bootstrap intervals, the claim.

For each video (DAVIS layout + ``Backgrounds/<seq>/`` truth, as the synthetic acquire writes it):

- **segmentation**: an :class:`~models.inpainting.session.InpaintingSession` with the robot
  (:class:`~models.inpainting.robot.Robot`) for ``rounds`` rounds (round 1: the sequence's
  ``Scribbles/<seq>/001.json`` when there is one, else the robot's first scribble; then one
  corrective scribble a round on the worst frame; propagation after each). J, F and J&F after every
  round (all objects are one object to remove: the session is binary), the AUC of J&F vs round, J&F
  at round 1 and at the last round.
- **restoration** after the last round, at the input's resolution, against the true background:
  PSNR and SSIM (scikit-image; PSNR in the hole from the MSE over the hole's pixels, SSIM in the
  hole the mean of SSIM's map there) in the true hole (object pixels) and on the whole frame, for
  the model and the baselines: ``telea_true_mask`` / ``telea_pred_mask`` (OpenCV Telea per frame on
  the true / the model's predicted mask: segment-then-inpaint per frame) and ``temporal_true_mask`` /
  ``temporal_pred_mask`` (background copied from the nearest frames, aligned by homographies, where
  they saw it; Telea for what none saw).

:func:`summarise` turns per-video records into the metrics dict: each statistic is the mean over
videos with a percentile bootstrap 95 % interval over videos (:mod:`models.common.stats`; one set of
resamples for every statistic, so differences are paired), and a ``claim`` section saying whether
the shared-memory model beats segment-then-inpaint per frame and whether corrective rounds raise J&F.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tasks.core import MokuflowError

VOID = 255
BASELINES = ("telea_true_mask", "telea_pred_mask", "temporal_true_mask", "temporal_pred_mask")
METHODS = ("model", *BASELINES)
RESTORATION = ("hole_psnr", "hole_ssim", "frame_psnr", "frame_ssim")
PER_FRAME_BASELINE = "telea_pred_mask"  # segment (the same masks), then inpaint each frame alone
TELEA_RADIUS = 3
MIN_VIDEOS_FOR_VERDICT = 5  # fewer videos: a bootstrap over them says nothing; the verdict is "not shown"


# -------------------------------------------------------------------------------------------- data

def load_video(root, name: str) -> dict:
    """One DAVIS-layout sequence in memory: ``frames`` uint8 [T, H, W, 3], ``labels`` uint8 [T, H, W]
    (object ids, 255 void), ``gt`` (1 object, 0 background, 255 void), ``backgrounds`` (uint8 like
    ``frames``, or None without ``Backgrounds/<seq>/``), ``scribbles`` (round 1's dict or None)."""
    import json

    from models.common.frames import FrameReadError, read_image
    from tasks.inpainting import layouts

    root = Path(root)
    seq = layouts.load_davis(root, sequences=[name]).sequences[0]
    missing = [f.name for f, m in zip(seq.frames, seq.masks) if m is None]
    if missing:
        raise MokuflowError(f"{root / 'Annotations'}/{name}: no annotation for frame {missing[0]} "
                            "(evaluation needs one per frame)")
    try:
        frames = np.stack([read_image(p) for p in seq.frames])
        labels = np.stack([layouts.read_object_ids(m)[0] for m in seq.masks])
        bg_files = [root / "Backgrounds" / name / f"{p.stem}.png" for p in seq.frames]
        backgrounds = np.stack([read_image(p) for p in bg_files]) if all(p.is_file() for p in bg_files) else None
    except FrameReadError as e:
        raise MokuflowError(str(e)) from None
    if labels.shape != frames.shape[:3] or (backgrounds is not None and backgrounds.shape != frames.shape):
        raise MokuflowError(f"{root}/{name}: frames, annotations and backgrounds differ in size")
    first = root / "Scribbles" / name / "001.json"
    scribbles = json.loads(first.read_text(encoding="utf-8")) if first.is_file() else None
    gt = np.where(labels == VOID, VOID, labels > 0).astype(np.uint8)
    return {"name": name, "frames": frames, "labels": labels, "gt": gt, "backgrounds": backgrounds,
            "scribbles": scribbles}


# ------------------------------------------------------------------------------------- baselines

def hole_dilation(height: int, width: int) -> int:
    """The px a hole is grown by before filling (as the session does at its size): JPEG edges bleed."""
    return max(1, round(0.006 * math.hypot(height, width)))


def _grow(mask: np.ndarray, px: int) -> np.ndarray:
    import cv2

    m = np.asarray(mask).astype(np.uint8)
    if px > 0:
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1,) * 2))
    return m > 0


def telea(frames, holes, *, dilation: int | None = None, radius: int = TELEA_RADIUS) -> np.ndarray:
    """OpenCV Telea on each frame alone: uint8 [T, H, W, 3]; ``holes`` bool [T, H, W] (grown by ``dilation``)."""
    import cv2

    frames = np.asarray(frames)
    d = hole_dilation(*frames.shape[1:3]) if dilation is None else dilation
    out = np.empty_like(frames)
    for t, (rgb, hole) in enumerate(zip(frames, holes)):
        m = _grow(hole, d).astype(np.uint8) * 255
        out[t] = cv2.inpaint(np.ascontiguousarray(rgb), m, radius, cv2.INPAINT_TELEA) if m.any() else rgb
    return out


def temporal_fill(frames, holes, *, dilation: int | None = None, max_refs: int = 12,
                  radius: int = TELEA_RADIUS) -> np.ndarray:
    """Each hole filled from the nearest other frames (up to ``max_refs``, nearest first) warped onto
    it by chained homographies (:mod:`models.inpainting.align`, holes left out), wherever they saw
    background; what no frame saw is Telea-filled. uint8 [T, H, W, 3]."""
    import cv2

    from models.inpainting import align

    frames = np.asarray(frames)
    n, h, w = frames.shape[:3]
    d = hole_dilation(h, w) if dilation is None else dilation
    grown = np.stack([_grow(m, d) for m in holes])
    homs = align.video_homographies(frames, grown)
    out = frames.copy()
    for t in range(n):
        need = grown[t].copy()
        if not need.any():
            continue
        for j in sorted((j for j in range(n) if j != t), key=lambda j: (abs(j - t), j))[:max_refs]:
            hom = align.relative(homs, j, t)
            warped = cv2.warpPerspective(frames[j], hom, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            seen = cv2.warpPerspective((~grown[j]).astype(np.uint8) * 255, hom, (w, h), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_CONSTANT, borderValue=0) >= 250
            take = need & seen
            out[t][take] = warped[take]
            need &= ~take
            if not need.any():
                break
        if need.any():
            out[t] = cv2.inpaint(out[t], need.astype(np.uint8) * 255, radius, cv2.INPAINT_TELEA)
    return out


# ---------------------------------------------------------------------------------- restoration

def _psnr(mse: float) -> float:
    return float(10 * math.log10(255.0 ** 2 / max(mse, 1e-6)))  # identical images: capped at ~108 dB


def restoration_scores(restored, backgrounds, holes) -> dict:
    """Mean over frames of PSNR / SSIM against the truth: ``frame_*`` on whole frames, ``hole_*``
    in the hole (frames with one; NaN when no frame has a hole)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rows = {k: [] for k in RESTORATION}
    for out, truth, hole in zip(restored, backgrounds, holes):
        out, truth = np.asarray(out), np.asarray(truth)
        win = min(7, *(s - (1 - s % 2) for s in truth.shape[:2]))  # odd, at most the frame's side
        _, smap = structural_similarity(truth, out, channel_axis=2, data_range=255, full=True, win_size=win)
        smap = smap.mean(axis=2)
        with warnings.catch_warnings():  # identical frames: skimage warns and returns inf
            warnings.simplefilter("ignore")
            rows["frame_psnr"].append(min(float(peak_signal_noise_ratio(truth, out, data_range=255)), _psnr(0)))
        rows["frame_ssim"].append(float(smap.mean()))
        hole = np.asarray(hole, bool)
        if hole.any():
            err = (truth.astype(np.float64) - out.astype(np.float64))[hole]
            rows["hole_psnr"].append(_psnr(float((err ** 2).mean())))
            rows["hole_ssim"].append(float(smap[hole].mean()))
    return {k: float(np.mean(v)) if v else float("nan") for k, v in rows.items()}


# ----------------------------------------------------------------------------------- one video

def run_rounds(net, video: dict, *, rounds: int = 8, internal_size=None, max_memory: int = 8, seed: int = 0,
               device="cpu", robot_min_area: float = 0.0) -> dict:
    """The session with the robot on one video: ``per_round`` [{J, F, JF, frame, kind}], the masks
    after round 1 and after the last round (bool [T, H, W]) and the model's restored frames."""
    from models.inpainting import metrics
    from models.inpainting.robot import Robot
    from models.inpainting.scribbles import parse_scribbles
    from models.inpainting.session import InpaintingSession

    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    frames, gt = video["frames"], video["gt"]
    n = len(frames)
    robot = Robot(seed=seed, min_area=robot_min_area)
    per_round, first_masks = [], None
    with InpaintingSession(net, list(frames), internal_size=internal_size, max_memory=max_memory,
                           device=device) as session:
        preds = None
        for r in range(rounds):
            data = (video.get("scribbles") or robot.first(gt, sequence=video["name"])) if r == 0 \
                else robot.correct(preds, gt, sequence=video["name"])
            if data is None:  # the worst frame has nothing left worth a stroke: the score stands
                per_round.append({**per_round[-1], "frame": None, "kind": "none"})
                continue
            scribbles = parse_scribbles(data, source=video["name"], n_frames=n)
            for t in scribbles.annotated_frames:
                session.add_scribbles(t, scribbles.frames[t])
            session.propagate()
            preds = np.stack([session.masks(t) for t in range(n)]).astype(np.uint8)
            s = metrics.video_scores(preds, gt, objects=[1], void_label=VOID)
            kinds = {st.object_id > 0 for st in scribbles}
            per_round.append({"J": s["J"], "F": s["F"], "JF": s["JF"], "frame": scribbles.annotated_frames[0],
                              "kind": "first" if r == 0 else ("object" if True in kinds else "background")})
            if r == 0:
                first_masks = preds.astype(bool)
        restored = np.stack([f.image for f in session.inpaint()])
        peak = session.peak_memory
    return {"per_round": per_round, "masks_first": first_masks, "masks": preds.astype(bool),
            "restored": restored, "peak_memory_frames": int(peak)}


def evaluate_video(net, video: dict, *, rounds: int = 8, internal_size=None, max_memory: int = 8, seed: int = 0,
                   device="cpu", keep_arrays: bool = False) -> dict:
    """One video's record: per-round scores, AUC, restoration of the model and every baseline (when the
    video has a true background). ``keep_arrays`` also returns the masks and restored frames (``arrays``)."""
    from models.inpainting import metrics

    res = run_rounds(net, video, rounds=rounds, internal_size=internal_size, max_memory=max_memory,
                     seed=seed, device=device)
    jf = [r["JF"] for r in res["per_round"]]
    record = {"name": video["name"], "n_frames": int(len(video["frames"])), "per_round": res["per_round"],
              "J": [r["J"] for r in res["per_round"]], "F": [r["F"] for r in res["per_round"]], "JF": jf,
              "auc_jf": metrics.auc(jf), "jf_first": jf[0], "jf_last": jf[-1],
              "peak_memory_frames": res["peak_memory_frames"], "restoration": None}
    arrays = {"masks": res["masks"], "masks_first": res["masks_first"], "model": res["restored"]}
    if video.get("backgrounds") is not None:
        true_holes = video["labels"] != 0  # objects and void (DAVIS marks objects' edges void)
        pred_holes = res["masks"]
        arrays.update({
            "telea_true_mask": telea(video["frames"], true_holes),
            "telea_pred_mask": telea(video["frames"], pred_holes),
            "temporal_true_mask": temporal_fill(video["frames"], true_holes),
            "temporal_pred_mask": temporal_fill(video["frames"], pred_holes),
        })
        record["restoration"] = {m: restoration_scores(arrays[m], video["backgrounds"], true_holes) for m in METHODS}
    if keep_arrays:
        record["arrays"] = arrays
    return record


# --------------------------------------------------------------------------------------- summary

def _stat(values, idx: np.ndarray | None) -> dict:
    """{value, ci_low, ci_high}: the mean over videos (NaNs left out) and its bootstrap interval."""
    from models.common.stats import percentile_interval

    v = np.asarray(values, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN resamples are dropped by the interval
        value = float(np.nanmean(v)) if np.isfinite(v).any() else None
        lo, hi = percentile_interval(np.nanmean(v[idx], axis=1)) if idx is not None and len(idx) else (None, None)
    return {"value": value, "ci_low": lo, "ci_high": hi}


def _verdict(diff: dict, n: int) -> str:
    """"holds" (interval above 0), "reversed" (below 0), "not shown" (it contains 0, no interval, or
    fewer than MIN_VIDEOS_FOR_VERDICT videos)."""
    from models.common.stats import interval_verdict

    return interval_verdict(diff, n=n, min_n=MIN_VIDEOS_FOR_VERDICT)


def summarise(records: list[dict], *, n_boot: int = 1000, seed: int = 0) -> dict:
    """The metrics dict of per-video records (:func:`evaluate_video`); module docstring."""
    from models.common.stats import resample_indices

    if not records:
        raise ValueError("no videos to summarise")
    n, rounds = len(records), len(records[0]["JF"])
    idx = resample_indices(n, int(n_boot), int(seed)) if n_boot else None
    col = lambda key: np.array([r[key] for r in records], dtype=np.float64)  # noqa: E731
    per_round = {k: [_stat(col(k)[:, i], idx) for i in range(rounds)] for k in ("J", "F", "JF")}
    out = {"n_videos": n, "rounds": rounds, "n_boot": int(n_boot), "seed": int(seed), "per_round": per_round,
           "auc_jf": _stat(col("auc_jf"), idx), "jf_round_1": _stat(col("jf_first"), idx),
           f"jf_round_{rounds}": _stat(col("jf_last"), idx),
           "J": per_round["J"][-1], "F": per_round["F"][-1], "JF": per_round["JF"][-1]}
    with_truth = [r for r in records if r["restoration"] is not None]
    nan = {k: float("nan") for k in RESTORATION}
    rest = lambda m, k: np.array([(r["restoration"] or {}).get(m, nan)[k] if r["restoration"] else np.nan  # noqa: E731
                                  for r in records], dtype=np.float64)
    out["n_videos_with_truth"] = len(with_truth)
    out["restoration"] = {m: {k: _stat(rest(m, k), idx) for k in RESTORATION} for m in METHODS} if with_truth else None
    gain = {}
    if with_truth:
        for b in BASELINES:
            gain[f"model-{b}"] = {k: _stat(rest("model", k) - rest(b, k), idx) for k in RESTORATION}
    out["gain"] = gain
    corr = _stat(col("jf_last") - col("jf_first"), idx)
    claim = {"corrections_raise_jf": {
        "statement": f"corrective rounds raise J&F: J&F after round {rounds} minus after round 1 (paired, over videos)",
        "round_1": out["jf_round_1"], f"round_{rounds}": out[f"jf_round_{rounds}"], "difference": corr,
        "verdict": _verdict(corr, n) if rounds > 1 else "not shown"}}
    claim["corrections_raise_jf"]["holds"] = claim["corrections_raise_jf"]["verdict"] == "holds"
    if with_truth:
        d_psnr, d_ssim = gain[f"model-{PER_FRAME_BASELINE}"]["hole_psnr"], gain[f"model-{PER_FRAME_BASELINE}"]["hole_ssim"]
        verdict = _verdict(d_psnr, len(with_truth))
        claim["shared_memory_vs_per_frame"] = {
            "statement": "the shared-memory model restores the hole better than segment-then-inpaint per frame "
                         f"(OpenCV Telea on the same predicted masks, {PER_FRAME_BASELINE}); hole PSNR, paired over videos",
            "metric": "hole_psnr", "model": out["restoration"]["model"]["hole_psnr"],
            "baseline": out["restoration"][PER_FRAME_BASELINE]["hole_psnr"], "difference": d_psnr,
            "hole_ssim_difference": d_ssim, "verdict": verdict, "holds": verdict == "holds"}
    else:
        claim["shared_memory_vs_per_frame"] = {"verdict": "not shown", "holds": False,
                                               "statement": "no video has a true background: restoration not measured"}
    claim["min_videos_for_verdict"] = MIN_VIDEOS_FOR_VERDICT
    out["claim"] = claim
    out["per_video"] = {r["name"]: {k: r[k] for k in ("n_frames", "J", "F", "JF", "auc_jf", "restoration",
                                                      "peak_memory_frames")} for r in records}
    return out


def evaluate_videos(net, root, sequences=None, *, rounds: int = 8, internal_size=None, max_memory: int = 8,
                    n_boot: int = 1000, seed: int = 0, device="cpu",
                    progress: Callable[[list, str], list] | None = None) -> dict:
    """:func:`summarise` of :func:`evaluate_video` on ``sequences`` (default: every sequence) of a
    DAVIS-layout folder ``root``; the robot's seed is ``seed + k`` for the k-th video."""
    from tasks.inpainting import layouts

    names = list(sequences) if sequences is not None else layouts.load_davis(root).names
    if not names:
        raise MokuflowError(f"{root}: no sequences to evaluate")
    wrap = progress or (lambda items, desc: items)
    records = [evaluate_video(net, load_video(root, name), rounds=rounds, internal_size=internal_size,
                              max_memory=max_memory, seed=seed + k, device=device)
               for k, name in wrap(list(enumerate(names)), "evaluate videos")]
    return summarise(records, n_boot=n_boot, seed=seed)
