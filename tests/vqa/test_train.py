"""Train stage end to end on tiny fake videos: outputs, MLflow run, resume after SIGKILL."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tasks.core import MokuflowError, dvc_dir_hash, load_params
from tasks.core.provenance import data_version
from tests.conftest import kill_after_first_checkpoint

REPO = Path(__file__).resolve().parents[2]
N_TRAIN, BATCH = 8, 4


def _write_video(path: Path, *, noise: float, seed: int, n=6, h=32, w=32):
    import cv2

    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, (h, w, 3)).astype(np.float32)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 8, (w, h))
    for _ in range(n):
        frame = base + rng.normal(0, 255 * noise, (h, w, 3))
        writer.write(np.clip(frame, 0, 255).astype(np.uint8))
    writer.release()


def make_dataset(root: Path, n_val=2, n_test=2):
    """raw/videos.csv + raw/videos/*.mp4 + clean/scores.csv; quality falls with noise."""
    raw, clean = root / "raw", root / "clean"
    (raw / "videos").mkdir(parents=True)
    clean.mkdir(parents=True)
    rows, scores = [], []
    splits = ["train"] * N_TRAIN + ["val"] * n_val + ["test"] * n_test
    for i, split in enumerate(splits):
        noise = 0.3 * (i % 5) / 4
        vid = f"v{i:02d}"
        _write_video(raw / "videos" / f"{vid}.mp4", noise=noise, seed=i)
        rows.append({"video_id": vid, "path": f"videos/{vid}.mp4", "content_id": f"c{i}", "split": split})
        scores.append({"video_id": vid, "quality": 5.0 - 10 * noise, "quality_std": 0.3})
    pd.DataFrame(rows).to_csv(raw / "videos.csv", index=False)
    pd.DataFrame(scores).to_csv(clean / "scores.csv", index=False)


def make_params(root: Path, **overrides) -> Path:
    params = load_params(REPO / "params.yaml")
    params = {k: v for k, v in params.items() if not k.startswith("_")}
    params["mlflow"]["tracking_uri"] = f"sqlite:///{root / 'mlflow.db'}"
    params["mlflow"]["artifact_location"] = "mlartifacts"
    v = params["vqa"]
    v["data"].update(raw_dir="raw", clean_dir="clean")
    v["frames"].update(n_clips=4, clip_len=1, height=32, width=32, motion="diff", cache_dir="cache")
    v["model"].update(backbone_channels=[4, 8], gcn_layers=1, gcn_dim=8, attention_heads=2,
                      motion_channels=4, lstm_hidden=8, dropout=0.0, pretrained=None)
    v["train"].update(max_epochs=2, batch_size=BATCH, num_workers=0, accelerator="cpu", devices=1,
                      strategy="auto", precision="auto", checkpoint_every_n_steps=0,
                      runs_dir="runs", out_dir="out")
    for k, val in overrides.items():
        node = params
        *parents, leaf = k.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = val
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture
def tiny(tmp_path):
    make_dataset(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_train_end_to_end(tiny):
    import mlflow
    from mlflow.tracking import MlflowClient

    from models.vqa.inference import load_model, predict_paths
    from tasks.vqa import train

    params = load_params(make_params(tiny))
    info = train.run(params)
    out = tiny / "out"
    assert {"model.pt", "history.csv", "run.json"} <= {p.name for p in out.iterdir()}
    history = pd.read_csv(out / "history.csv")
    assert list(history.columns) == ["epoch", "train_loss", "val_loss", "val_srcc", "val_pearson"]
    assert history["epoch"].tolist() == [0, 1] and history.notna().all().all()
    run_info = json.loads((out / "run.json").read_text())
    assert run_info == info
    assert run_info["global_step"] == 2 * (N_TRAIN // BATCH) and run_info["resumed_from_step"] == 0
    assert not Path(run_info["run_dir"]).is_absolute()  # DVC hashes run.json: no absolute path
    assert (tiny / run_info["run_dir"] / "COMPLETED").is_file()

    mlflow.set_tracking_uri(f"sqlite:///{tiny / 'mlflow.db'}")
    client = MlflowClient()
    run = client.get_run(run_info["mlflow_run_id"])
    assert run.data.params["vqa.train.max_epochs"] == "2"
    hashes = {"raw": dvc_dir_hash(tiny / "raw"), "clean": dvc_dir_hash(tiny / "clean")}
    assert run.data.tags["dvc.md5.raw"] == hashes["raw"] and run.data.tags["dvc.md5.clean"] == hashes["clean"]
    assert run.data.tags["data_version"] == data_version(hashes)  # raw (media) + clean
    for key in ("train_loss", "val_loss", "val_srcc", "val_pearson"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 2, key

    model, cfg = load_model(out / "model.pt")
    assert cfg == {"n_clips": 4, "clip_len": 1, "height": 32, "width": 32, "motion": "diff"}
    scores = predict_paths(model, cfg, sorted((tiny / "raw" / "videos").glob("*.mp4")))
    assert np.isfinite(scores).all()
    # Predictions come back on the quality scale (targets span 2..5), not the normalised one.
    assert 0.0 < float(np.mean(scores)) < 8.0

    # A finished run is not resumed: the same params start a new run folder.
    again = train.run(params)
    assert again["run_dir"] != info["run_dir"] and again["resumed_from_step"] == 0


def test_missing_and_empty_inputs(tmp_path):
    from tasks.vqa import train

    params = load_params(make_params(tmp_path))
    with pytest.raises(MokuflowError, match="videos.csv"):
        train.run(params)
    make_dataset(tmp_path, n_val=0)
    with pytest.raises(MokuflowError, match="no 'val' videos"):
        train.run(params)


def _train_cmd(args: list[str]) -> list[str]:
    """`python -m tasks.cli vqa train ...` (the command dvc.yaml runs)."""
    return [sys.executable, "-m", "tasks.cli", "vqa", "train", *args]


@pytest.mark.slow
def test_resume_after_kill(tiny):
    epochs = 20
    params_file = make_params(tiny)
    cmd = _train_cmd(["--params", str(params_file), "--set", "vqa.train.checkpoint_every_n_steps=1",
                      "--set", f"vqa.train.max_epochs={epochs}"])
    kill_after_first_checkpoint(cmd, tiny / "runs", timeout=120, settle=0.1)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    assert not (tiny / "out").exists()
    (run_dir,) = (tiny / "runs").iterdir()
    first_run_id = json.loads((run_dir / "run.json").read_text())["mlflow_run_id"]

    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((tiny / "out" / "run.json").read_text())
    assert info["resumed_from_step"] > 0
    assert info["mlflow_run_id"] == first_run_id and info["run_dir"] == run_dir.relative_to(tiny).as_posix()
    assert info["global_step"] == epochs * (N_TRAIN // BATCH)  # what an uninterrupted run reaches
    history = pd.read_csv(tiny / "out" / "history.csv")
    assert history["epoch"].tolist() == list(range(epochs))
    assert history["train_loss"].notna().all()
    # Every epoch but at most the one cut off at its end by the kill was validated.
    assert history["val_srcc"].isna().sum() <= 1 and not np.isnan(history["val_srcc"].iloc[-1])


def test_prepare_data_caches_train_and_val_once(tmp_path):
    """prepare_data decodes every train / val video into the cache; loaders then read the cache."""
    from models.vqa.lit import VQADataModule

    videos = []
    for i in range(3):
        videos.append(tmp_path / f"v{i}.mp4")
        _write_video(videos[-1], noise=0.1 * i, seed=i, n=3, h=16, w=16)
    dm = VQADataModule(train_items=[(str(videos[0]), 1.0), (str(videos[1]), 2.0)],
                       val_items=[(str(videos[2]), 3.0)],
                       n_clips=2, clip_len=1, height=16, width=16, cache_dir=tmp_path / "cache", batch_size=2)
    dm.prepare_data()
    cache = dm.cache()
    assert all(cache.cached(v) for v in videos)
    assert len(list((tmp_path / "cache").rglob("*.frames.npy"))) == 3
    frames, motion, quality, index = next(iter(dm.val_dataloader()))
    assert frames.shape == (1, 2, 16, 16, 3) and float(quality[0]) == 3.0 and index.tolist() == [0]


def test_merge_shards_drops_distributed_sampler_padding():
    """Two simulated ranks over 5 val items: the sampler pads to 3 + 3 with a repeat; merging the
    gathered shards gives the whole split once, so SRCC / PLCC are those of the full split."""
    import torch
    from torch.utils.data import DistributedSampler

    from models.vqa.lit import correlations, merge_shards

    rng = np.random.default_rng(0)
    targets, preds = rng.normal(size=5), rng.normal(size=5)
    shards = [list(DistributedSampler(range(5), num_replicas=2, rank=r, shuffle=False)) for r in range(2)]
    assert sum(len(s) for s in shards) == 6  # one padding repeat
    index = torch.tensor(shards)
    got_t, got_p = merge_shards(index, torch.from_numpy(targets)[index], torch.from_numpy(preds)[index])
    np.testing.assert_array_equal(got_t, targets)
    np.testing.assert_array_equal(got_p, preds)
    assert correlations(got_t, got_p) == correlations(targets, preds)


def test_validation_metrics_are_those_of_the_whole_split(tmp_path):
    """Single process through Trainer.validate: the gathered path gives the split's SRCC / PLCC."""
    import lightning as L
    import torch

    from models.vqa.lit import VQADataModule, VQALitModule, correlations
    from models.vqa.stdam import to_model_inputs

    items = []
    for i in range(5):
        _write_video(tmp_path / f"v{i}.mp4", noise=0.07 * i, seed=i, n=3, h=16, w=16)
        items.append((str(tmp_path / f"v{i}.mp4"), 5.0 - i))
    dm = VQADataModule(train_items=items[:2], val_items=items, n_clips=2, clip_len=1, height=16, width=16,
                       cache_dir=tmp_path / "cache", batch_size=2)
    torch.manual_seed(0)
    module = VQALitModule(model_kwargs=dict(backbone_channels=[4], gcn_layers=1, gcn_dim=8, attention_heads=2,
                                            motion_channels=4, lstm_hidden=8, dropout=0.0),
                          target_mean=3.0, target_std=2.0)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    logged = trainer.validate(module, datamodule=dm, verbose=False)[0]
    ds = dm.val_dataloader().dataset
    with torch.no_grad():
        preds = np.array([float(module.eval().predict_quality(*to_model_inputs(f[None], m[None])))
                          for f, m, _, _ in (ds[i] for i in range(len(ds)))])
    srcc, plcc = correlations(np.array([q for _, q in items]), preds)
    assert np.ptp(preds) > 0  # not the degenerate 0, 0
    assert logged["val_srcc"] == pytest.approx(srcc, abs=1e-6)
    assert logged["val_pearson"] == pytest.approx(plcc, abs=1e-5)
