"""Per-kind sensitivity: does a model rank graded versions of one video by how distorted they are?

For each source video and each distortion kind (:mod:`tasks.vqa.distortions`), the video is decoded
at the model's frame size, distorted in memory at every severity of the series (0 = the video
itself), sampled exactly as a file would be (``models.vqa.video.sample_clip``) and scored. The
video's sensitivity to the kind is Spearman's rho of severity against *minus* the predicted
quality: 1 = the more distorted, the lower the score, all the way; 0 = no order (or a constant
prediction); -1 = inverted. The kind's figure is the mean over source videos, with a bootstrap 95 %
interval over them. The same generator draws every severity of one (video, kind) series, so noise,
drop and freeze positions grow with the severity instead of changing.

Used by the evaluate stage (held-out test videos) and by benchmarks/vqa_distortion_sensitivity.py
(the real fixture videos).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence


def graded_clips(frames, *, kinds: Sequence[str], severities: Sequence[float], seed: int,
                 frames_cfg: dict) -> dict[str, list]:
    """``{kind: [(frames, motion) per severity, 0 first]}`` of one decoded video (uint8 [N, H, W, 3])."""
    import numpy as np

    from models.vqa.video import sample_clip
    from tasks.vqa.distortions import distort_one

    out: dict[str, list] = {}
    original = sample_clip(frames, **frames_cfg)
    for j, kind in enumerate(kinds):
        series = [original]
        for sev in severities:
            rng = np.random.default_rng([seed, j])  # one generator per series: graded, not re-drawn
            series.append(sample_clip(distort_one(frames, kind, sev, rng), **frames_cfg))
        out[kind] = series
    return out


def rank_sensitivity(severities: Sequence[float], scores: Sequence[float]) -> float:
    """Spearman of severity vs minus the score; 0 when the scores are constant."""
    import numpy as np
    from scipy import stats

    s = np.asarray(scores, float)
    if np.ptp(s) == 0 or not np.isfinite(s).all():
        return 0.0
    return float(stats.spearmanr(np.asarray(severities, float), -s)[0])


def measure(videos: Sequence[tuple[str, object]], predict: Callable[[list], Sequence[float]], *,
            kinds: Sequence[str], severities: Sequence[float], seed: int, frames_cfg: dict,
            n_boot: int, progress: Callable | None = None) -> dict:
    """``videos``: (video_id, decoded frames); ``predict``: list of clips -> scores.

    Returns ``{"kinds": {kind: {"value", "ci_low", "ci_high", "per_video": {id: rho}}},
    "severities": [0, ...], "n_videos": n, "scores": {id: {kind: [score per severity]}}}``.
    """
    import numpy as np

    from models.common.stats import percentile_interval, resample_indices

    levels = [0.0, *[float(s) for s in severities]]
    rho: dict[str, dict[str, float]] = {k: {} for k in kinds}
    scores: dict[str, dict[str, list[float]]] = {}
    items = progress(list(videos), "distortion probes") if progress else videos
    for vid, frames in items:
        series = graded_clips(frames, kinds=kinds, severities=severities, seed=seed, frames_cfg=frames_cfg)
        flat = [clip for k in kinds for clip in series[k]]
        pred = np.asarray(predict(flat), float).reshape(len(kinds), len(levels))
        scores[vid] = {k: [round(float(v), 5) for v in pred[i]] for i, k in enumerate(kinds)}
        for i, k in enumerate(kinds):
            rho[k][vid] = rank_sensitivity(levels, pred[i])
    out = {}
    for k in kinds:
        vals = np.array(list(rho[k].values()), float)
        lo, hi = (None, None)
        if n_boot > 0 and len(vals) > 1:
            lo, hi = percentile_interval(vals[resample_indices(len(vals), n_boot, seed)].mean(axis=1))
        out[k] = {"value": float(vals.mean()) if len(vals) else None, "ci_low": lo, "ci_high": hi,
                  "per_video": {v: round(r, 4) for v, r in rho[k].items()}}
    return {"kinds": out, "severities": levels, "n_videos": len(scores), "scores": scores}
