"""Why the relationship model's audio branch fails: does its input carry the cue at all?

The synthetic audio carries the pair's relationship in the music (mode: major / minor; tempo 72-150
bpm; loudness; it fits the scene in 60 % of clips) and in the voices' level and pitch movement (mixed
with the other characters' lines). A linear probe (logistic regression, scikit-learn) is fitted on the
train clips with audio and scored on the test clips with audio (true labels from truth.csv), on:

- ``model input``: the log-mel the network reads (``mel`` [T, M, n_mels] from the feature cache), flattened;
- ``model input, pooled``: its mean and standard deviation per mel band;
- ``music descriptors``: computed here from the decoded waveform at a resolution the log-mel does not
  keep: a 12-bin chroma from a 0.5 s STFT (major vs minor third over the strongest root), the tempo
  from the autocorrelation of the onset envelope, and RMS loudness;
- ``both``: model input pooled + music descriptors.

Beside them, on the same test clips: the trained model's own audio-only prediction (the others masked,
as evaluate's ``audio`` variant), and the same network with the audio encoder alone, trained on the
same features, labels and schedule (``--epochs``: the train stage's).

If the descriptors beat the model input, the cue is lost in the features (32 mel bands cannot tell a
minor third from a major one below 500 Hz, and pooling to ``mel_steps`` bins per step blurs the beat),
not in the attention unit.

    make run STUDY=relationship
    python benchmarks/relationship_audio_probe.py --out benchmarks/results/relationship_audio_probe.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def chroma(x: np.ndarray, sr: int, n_fft: int = 8192) -> np.ndarray:
    """12-bin pitch-class energy of 55-1000 Hz (where the synthetic triads lie), from a long-window STFT."""
    hop = n_fft // 2
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    spec = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).sum(0)
    f = np.fft.rfftfreq(n_fft, 1 / sr)
    keep = (f >= 55) & (f <= 1000)
    pc = np.round(12 * np.log2(f[keep] / 440.0)).astype(int) % 12
    c = np.bincount(pc, weights=spec[keep], minlength=12)
    return c / (c.sum() + 1e-12)


def music_descriptors(x: np.ndarray, sr: int) -> np.ndarray:
    c = chroma(x, sr)
    major = max(c[r] + c[(r + 4) % 12] + c[(r + 7) % 12] for r in range(12))
    minor = max(c[r] + c[(r + 3) % 12] + c[(r + 7) % 12] for r in range(12))
    hop = sr // 100  # 10 ms energy frames
    e = np.sqrt(np.add.reduceat(x ** 2, np.arange(0, len(x), hop)) / hop)
    onset = np.maximum(np.diff(np.log(e + 1e-4)), 0)
    onset = onset - onset.mean()
    ac = np.correlate(onset, onset, "full")[len(onset) - 1:]
    ac = ac / (ac[0] + 1e-12)
    bpms = np.arange(60, 161, 5)
    lags = np.round(6000 / bpms).astype(int)  # 10 ms frames per beat
    strength = np.array([ac[k] if k < len(ac) else 0.0 for k in lags])
    rms = 20 * np.log10(e + 1e-6)
    return np.concatenate([[major - minor, major, minor, bpms[int(strength.argmax())], rms.mean(), rms.std(),
                            np.percentile(rms, 90)], strength, np.roll(c, -int(c.argmax()))])


def scores(y, p, seed: int = 0) -> tuple[float, float, tuple[float, float]]:
    """Accuracy, macro-F1 and its 95 % bootstrap interval (scikit-learn)."""
    from sklearn.metrics import accuracy_score, f1_score

    from models.common.stats import percentile_interval, resample_indices

    labels = np.unique(np.concatenate([y, p]))
    idx = resample_indices(len(y), 1000, seed)
    boot = np.array([f1_score(y[i], p[i], average="macro", labels=labels) for i in idx])
    return accuracy_score(y, p), f1_score(y, p, average="macro", labels=labels), percentile_interval(boot)


def probe(xtr, ytr, xte, yte) -> tuple[float, float, tuple[float, float]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000, class_weight="balanced"))
    clf.fit(xtr, ytr)
    return scores(yte, clf.predict(xte))


def audio_alone_network(params: dict, model, tr: dict, *, epochs: int | None):
    """The pipeline's network and training recipe with ``modalities=["audio"]`` (Lightning, seeded)."""
    import lightning as L

    from models.relationship.lit import RelationshipDataModule, RelationshipLitModule, class_weights
    from models.relationship.network import COARSE_OF_FINE, RelationshipNet
    from tasks.relationship.train import net_config

    t = params["relationship"]["train"]
    L.seed_everything(int(t["seed"]), workers=True, verbose=False)
    y, n_train = tr["y"], tr["n_train"]
    config = {**net_config(params, len(model.vocab)), "modalities": ["audio"]}
    lit = RelationshipLitModule(RelationshipNet(**config), lr=float(t["lr"]), weight_decay=float(t["weight_decay"]),
                                warmup_steps=int(t["warmup_steps"]), fine_weights=class_weights(y[:n_train], 5),
                                coarse_weights=class_weights(np.asarray(COARSE_OF_FINE)[y[:n_train]], 3),
                                coarse_loss_weight=float(t["coarse_loss_weight"]))
    dm = RelationshipDataModule(features=tr["features"], labels=y, train_index=np.arange(n_train),
                                val_index=np.arange(n_train, len(y)), batch_size=int(t["batch_size"]), seed=int(t["seed"]))
    L.Trainer(accelerator="cpu", devices=1, max_epochs=int(epochs or t["max_epochs"]), logger=False,
              enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
              num_sanity_val_steps=0).fit(lit, datamodule=dm)
    return lit.net.eval()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--epochs", type=int, default=None, help="default: relationship.train.max_epochs")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    from models.relationship.audio import load_audio
    from models.relationship.inference import load_model
    from tasks.core import load_params
    from tasks.relationship import dataset

    params = load_params(args.params)
    model = load_model(dataset.model_file(params))
    raw = dataset.raw_root(params)
    labels = list(model.labels)
    sets = {}
    for split in ("train", "test"):
        rows = dataset.labelled_rows(params, split) + (dataset.labelled_rows(params, "val") if split == "train" else [])
        feats = dataset.features(params, rows, model.vocab, model.features)  # from the cache after make run
        has = feats["audio_mask"].any(1)
        rows = [r for r, h in zip(rows, has) if h]
        mel = feats["mel"][has].astype(np.float64)
        desc = np.stack([music_descriptors(load_audio(raw / r["video_path"], sample_rate=16000), 16000) for r in rows])
        y = np.array([labels.index(r["label"]) for r in rows])  # the clean labels, as the pipeline scores
        flat = mel.reshape(len(rows), -1)
        pooled = np.concatenate([mel.mean((1, 2)), mel.std((1, 2))], 1)
        sets[split] = {"y": y, "model input": flat, "model input, pooled": pooled, "music descriptors": desc,
                       "both": np.concatenate([pooled, desc], 1),
                       "features": {k: v[has] for k, v in feats.items()}, "n_train": sum(r["split"] == "train" for r in rows)}
    tr, te = sets["train"], sets["test"]
    res = {}
    lines = [f"{len(tr['y'])} train+val / {len(te['y'])} test clips with audio, clean labels "
             f"(5 classes; chance macro-F1 about 0.2).", "",
             "| audio input | test accuracy | test macro-F1 [95 % CI] |", "|---|---|---|"]
    for k in ("model input", "model input, pooled", "music descriptors", "both"):
        acc, f1, (lo, hi) = probe(tr[k], tr["y"], te[k], te["y"])
        res[k] = {"accuracy": acc, "macro_f1": f1, "ci": [lo, hi], "dims": int(tr[k].shape[1])}
        lines.append(f"| linear probe: {k} ({tr[k].shape[1]} dims) | {acc:.3f} | {f1:.3f} [{lo:.3f}, {hi:.3f}] |")
    from models.relationship.inference import predict_proba

    fused = predict_proba(model.net, te["features"], modalities=["audio"])[0].argmax(1)
    alone = audio_alone_network(params, model, tr, epochs=args.epochs)
    own = predict_proba(alone, te["features"])[0].argmax(1)
    for k, pred in (("the trained model, audio only (others masked)", fused),
                    ("the network with the audio encoder alone, same schedule", own)):
        acc, f1, (lo, hi) = scores(te["y"], pred)
        res[k] = {"accuracy": acc, "macro_f1": f1, "ci": [lo, hi]}
        lines.append(f"| {k} | {acc:.3f} | {f1:.3f} [{lo:.3f}, {hi:.3f}] |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return res


if __name__ == "__main__":
    main()
