"""Hand-crafted-feature baseline for no-reference VQA: classic distortion measures + ridge regression.

The point of the baseline is to show what STDAM adds over cheap, interpretable signal statistics.
Features are computed on the same sampled frames STDAM sees (``models.vqa.video.read_clip``), averaged
over frames. Temporal features use the motion ``read_clip`` returns when given (every step of each run
of consecutive frames): the sampled spatial frames are seconds apart in long videos, so comparing them
would measure the sampling, not the video.
Variance-like quantities are ``log1p`` compressed so that a linear model over standardised features is
not dominated by a few extreme videos.
"""
from __future__ import annotations

import cv2
import numpy as np

FEATURE_NAMES = (
    "sharpness_lapvar",      # log1p variance of the Laplacian: blur lowers it
    "sharpness_hf_energy",   # share of spectral energy above half the Nyquist frequency
    "noise_sigma",           # robust std (MAD) of the residual of a 3x3 median denoise
    "noise_residual_energy", # log1p mean squared residual of a Gaussian denoise
    "blockiness",            # 8-px-periodic edge energy vs the other phases (1 = no blocks)
    "exposure_mean",         # mean luminance in [0, 1]
    "exposure_dark_clip",    # fraction of pixels <= 5 / 255 (crushed blacks)
    "exposure_bright_clip",  # fraction of pixels >= 250 / 255 (clipped highlights)
    "contrast_rms",          # std of luminance in [0, 1]
    "colourfulness",         # Hasler & Suesstrunk colourfulness / 255
    "temporal_flicker",      # global luminance change between frames (/ 255), see _motion_temporal
    "temporal_activity",     # mean absolute frame difference (/ 255); flow motion: mean |flow| (widths)
    "frozen_fraction",       # fraction of frames (almost) identical to the next one
)

FROZEN_THRESHOLD = 0.5   # mean |diff| in grey levels below which two frames count as repeated
FROZEN_FLOW_PX = 0.05    # mean flow magnitude in pixels below which two frames count as repeated
                         # (Farneback gives ~0.002 px on identical frames, ~0.015 px with sigma-1 noise)
BLOCK = 8


class FeatureInputError(ValueError):
    """Frames that are not a uint8 [T, H, W, 3] clip large enough for the features."""


class BaselineFormatError(ValueError):
    """A baseline dict / JSON that does not describe a fitted BaselineRegressor."""


# ------------------------------------------------------------------------------------- features

def _luma(frames: np.ndarray) -> np.ndarray:
    """[T, H, W] float32 luminance in grey levels (BT.601 weights, as cv2 RGB2GRAY)."""
    w = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return frames.astype(np.float32) @ w


def _lapvar(y: np.ndarray) -> float:
    return float(np.log1p(cv2.Laplacian(y, cv2.CV_32F, ksize=3).var()))


def _hf_energy(y: np.ndarray) -> float:
    # Energy above half the Nyquist radius over the total AC energy: a contrast-invariant sharpness.
    power = np.abs(np.fft.fft2(y - y.mean())) ** 2
    fy = np.fft.fftfreq(y.shape[0])[:, None]
    fx = np.fft.fftfreq(y.shape[1])[None, :]
    high = np.sqrt(fx**2 + fy**2) > 0.25
    total = power.sum()
    return float(power[high].sum() / total) if total > 0 else 0.0


def _noise_sigma(y: np.ndarray) -> float:
    # The median filter keeps edges, so its residual is mostly noise; the MAD ignores the few edge
    # pixels that remain (1.4826 makes it a std for Gaussian noise).
    med = cv2.medianBlur(np.clip(y, 0, 255).astype(np.uint8), 3).astype(np.float32)
    r = (y - med)[1:-1, 1:-1]
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


def _gauss_residual(y: np.ndarray) -> float:
    r = (y - cv2.GaussianBlur(y, (3, 3), 0.8))[1:-1, 1:-1]
    return float(np.log1p(np.mean(r * r)))


def _blockiness(y: np.ndarray) -> float:
    """Mean |gradient| on the strongest 8-px phase over the mean of the other phases, both axes.

    Phase-invariant (the block grid need not start at pixel 0, e.g. after cropping); about 1 for
    natural content, above 1 when block edges stand out.
    """
    ratios = []
    for d in (np.abs(np.diff(y, axis=1)).mean(axis=0), np.abs(np.diff(y, axis=0)).mean(axis=1)):
        n = (d.size // BLOCK) * BLOCK
        if n < 2 * BLOCK:
            continue
        phase = d[:n].reshape(-1, BLOCK).mean(axis=0)
        k = int(np.argmax(phase))
        rest = np.delete(phase, k).mean()
        ratios.append(phase[k] / rest if rest > 1e-6 else 1.0)
    return float(np.mean(ratios)) if ratios else 1.0


def _colourfulness(rgb: np.ndarray) -> float:
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float((np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())) / 255.0)


def _temporal(y: np.ndarray) -> tuple[float, float, float]:
    """(flicker, activity, frozen fraction) from consecutive frames of ``y``; zeros for a single frame."""
    if y.shape[0] < 2:
        return 0.0, 0.0, 0.0
    means = y.mean(axis=(1, 2))
    # std, not mean, of the differences: a steady fade has constant differences and is not flicker.
    flicker = float(np.std(np.diff(means)) / 255.0)
    mad = np.abs(np.diff(y, axis=0)).mean(axis=(1, 2))
    return flicker, float(mad.mean() / 255.0), float(np.mean(mad < FROZEN_THRESHOLD))


def _motion_temporal(motion: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(flicker, activity, frozen fraction) from each sampled frame's motion to its successor.

    diff (C=1, signed grey difference / 255): activity = mean |diff|; frozen = per-frame mean |diff|
    below FROZEN_THRESHOLD grey levels; flicker = mean |per-frame mean diff|, i.e. the change of
    mean luminance from each sampled frame to the very next frame. Flicker is a frame-rate effect,
    so only adjacent frames show it (sampled frames alias it, or are repeats). The mean absolute
    change rather than its std: with a sampling stride of an even number of frames every sample
    sees the same phase of an alternating flicker, and the std of equal values is 0. Moving content
    averages out of the per-frame mean, so this is global (lighting / exposure) change, not motion.
    flow (C=2, in frame widths): activity = mean magnitude; frozen = per-frame mean magnitude below
    FROZEN_FLOW_PX pixels; flow carries no luminance, so flicker falls back to the sampled frames.
    """
    if motion.shape[-1] == 1:
        d = motion[..., 0].astype(np.float64)
        per_frame = np.abs(d).mean(axis=(1, 2))
        flicker = float(np.abs(d.mean(axis=(1, 2))).mean())
        return flicker, float(per_frame.mean()), float(np.mean(per_frame * 255.0 < FROZEN_THRESHOLD))
    mag = np.hypot(motion[..., 0].astype(np.float64), motion[..., 1].astype(np.float64))
    per_frame = mag.mean(axis=(1, 2))
    frozen = per_frame * motion.shape[2] < FROZEN_FLOW_PX  # widths -> pixels
    return _temporal(y)[0], float(per_frame.mean()), float(np.mean(frozen))


def _check_frames(frames) -> np.ndarray:
    f = np.asarray(frames)
    if f.ndim != 4 or f.shape[-1] != 3:
        raise FeatureInputError(f"frames: expected [T, H, W, 3], got shape {f.shape}")
    if f.dtype != np.uint8:
        raise FeatureInputError(f"frames: expected uint8 RGB, got {f.dtype}")
    if f.shape[0] < 1 or f.shape[1] < 8 or f.shape[2] < 8:
        raise FeatureInputError(f"frames: need >= 1 frame of at least 8x8 pixels, got shape {f.shape}")
    return f


def _check_motion(motion, frames: np.ndarray) -> np.ndarray:
    m = np.asarray(motion)
    if (m.ndim != 4 or m.shape[-1] not in (1, 2) or m.shape[1:3] != frames.shape[1:3]
            or m.shape[0] < 1 or m.shape[0] % frames.shape[0]):
        raise FeatureInputError(f"motion: expected [S, H, W, 1 (diff) or 2 (flow)], S a multiple of the "
                                f"{frames.shape[0]} frames, of their size {frames.shape[1:3]}, got shape {m.shape}")
    if not np.issubdtype(m.dtype, np.floating) or not np.isfinite(m).all():
        raise FeatureInputError(f"motion: expected finite floats, got {m.dtype}")
    return m


def handcrafted_features(frames, motion=None) -> np.ndarray:
    """Feature vector (float64, ordered as ``FEATURE_NAMES``) of a uint8 RGB clip [T, H, W, 3].

    ``motion``: the clip's motion as ``read_clip`` / ``FrameCache`` return it ([n_clips * clip_len, H,
    W, C], every step of each run); without it the temporal features compare consecutive sampled
    frames, which is only right when the frames are consecutive in the video.
    """
    f = _check_frames(frames)
    y = _luma(f)
    spatial = np.array([[
        _lapvar(yt), _hf_energy(yt), _noise_sigma(yt), _gauss_residual(yt), _blockiness(yt),
        yt.mean() / 255.0, np.mean(yt <= 5.0), np.mean(yt >= 250.0), yt.std() / 255.0,
        _colourfulness(ft),
    ] for yt, ft in zip(y, f)], dtype=np.float64).mean(axis=0)
    temporal = _temporal(y) if motion is None else _motion_temporal(_check_motion(motion, f), y)
    return np.concatenate([spatial, np.array(temporal, dtype=np.float64)])


# ------------------------------------------------------------------------------------- regressor

class BaselineRegressor:
    """scikit-learn's ``StandardScaler`` + ``Ridge``, stored as plain numbers (JSON, no pickle).

    The intercept is not penalised; features with zero variance in training get scale 1 (they then
    contribute nothing). Prediction is the same affine map sklearn applies, in numpy.
    """

    def __init__(self, *, alpha: float = 1.0, feature_names: tuple[str, ...] | list[str] | None = None):
        if not np.isfinite(alpha) or alpha < 0:
            raise ValueError(f"ridge alpha must be a finite number >= 0, got {alpha}")
        self.alpha = float(alpha)
        self.feature_names = list(feature_names) if feature_names is not None else None
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.coef_: np.ndarray | None = None
        self.intercept_: float | None = None

    def _check_x(self, x, n_features: int | None = None) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"features: expected a 2-D [n_videos, n_features] array, got shape {x.shape}")
        if n_features is not None and x.shape[1] != n_features:
            raise ValueError(f"features: the model has {n_features} features, got {x.shape[1]}")
        if not np.isfinite(x).all():
            raise ValueError("features: contain NaN / inf")
        return x

    def fit(self, x, y) -> BaselineRegressor:
        n_feat = len(self.feature_names) if self.feature_names is not None else None
        x = self._check_x(x, n_feat)
        y = np.asarray(y, dtype=np.float64).ravel()
        if y.shape[0] != x.shape[0] or not np.isfinite(y).all():
            raise ValueError(f"targets: expected {x.shape[0]} finite values, got {y.shape[0]}")
        if x.shape[0] < 2:
            raise ValueError(f"need at least 2 videos to fit, got {x.shape[0]}")
        from sklearn.linear_model import Ridge
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(x)
        # svd: alpha = 0 with collinear features stays well defined (minimum-norm solution).
        ridge = Ridge(alpha=self.alpha, solver="svd").fit(scaler.transform(x), y)
        self.mean_, self.scale_ = scaler.mean_, scaler.scale_
        self.coef_, self.intercept_ = np.asarray(ridge.coef_, np.float64), float(ridge.intercept_)
        return self

    def predict(self, x) -> np.ndarray:
        if self.coef_ is None:
            raise ValueError("BaselineRegressor: predict() before fit()")
        x = self._check_x(x, self.coef_.shape[0])
        return ((x - self.mean_) / self.scale_) @ self.coef_ + self.intercept_

    def to_dict(self) -> dict:
        if self.coef_ is None:
            raise ValueError("BaselineRegressor: to_dict() before fit()")
        return {
            "kind": "standardised_ridge",
            "alpha": self.alpha,
            "feature_names": self.feature_names,
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_,
        }

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "baseline") -> BaselineRegressor:
        """Rebuild from :meth:`to_dict`; ``source`` (e.g. the file) names the input in errors."""
        if not isinstance(d, dict) or d.get("kind") != "standardised_ridge":
            raise BaselineFormatError(f"{source}: not a standardised_ridge baseline (kind={d.get('kind') if isinstance(d, dict) else None!r})")
        missing = [k for k in ("alpha", "mean", "scale", "coef", "intercept") if k not in d]
        if missing:
            raise BaselineFormatError(f"{source}: missing key(s) {missing}")
        m = cls(alpha=d["alpha"], feature_names=d.get("feature_names"))
        m.mean_ = np.asarray(d["mean"], dtype=np.float64)
        m.scale_ = np.asarray(d["scale"], dtype=np.float64)
        m.coef_ = np.asarray(d["coef"], dtype=np.float64)
        m.intercept_ = float(d["intercept"])
        sizes = {m.mean_.shape, m.scale_.shape, m.coef_.shape}
        if len(sizes) != 1 or m.coef_.ndim != 1 or (m.feature_names is not None
                                                     and len(m.feature_names) != m.coef_.shape[0]):
            raise BaselineFormatError(f"{source}: mean / scale / coef / feature_names lengths differ")
        return m
