"""Shared test helpers: the real params.yaml, shrunk (lightning-hydra-template style), in a tmp folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

# Small enough to train in seconds on 2 CPU cores, big enough for every split to hold >= 3 videos.
TINY = {
    "vqa.synthetic.n_contents": 8,
    "vqa.synthetic.versions_per_content": 3,
    "vqa.synthetic.n_frames": 8,
    "vqa.synthetic.height": 32,
    "vqa.synthetic.width": 40,
    "vqa.synthetic.n_raters": 8,
    "vqa.frames.n_clips": 2,
    "vqa.frames.clip_len": 2,
    "vqa.frames.height": 32,
    "vqa.frames.width": 32,
    "vqa.model.backbone_channels": [4, 8],
    "vqa.model.gcn_dim": 8,
    "vqa.model.attention_heads": 2,
    "vqa.model.motion_channels": 4,
    "vqa.model.lstm_hidden": 8,
    "vqa.train.max_epochs": 2,
    "vqa.train.batch_size": 4,
    "vqa.evaluate.bootstrap": 50,
    "vqa.evaluate.sensitivity.n_videos": 2,
    "vqa.evaluate.sensitivity.severities": [0.5, 1.0],
    "vqa.evaluate.sensitivity.kinds": ["blur", "fps", "freeze"],
    # detection: 40 images of 64 px, a detector of a few thousand weights, 2 epochs
    "detection.synthetic.n_train": 24,
    "detection.synthetic.n_val": 8,
    "detection.synthetic.n_test": 8,
    "detection.synthetic.image_size": 64,
    "detection.synthetic.min_object": 6,
    "detection.synthetic.max_objects": 5,
    "detection.model.image_size": 64,
    "detection.model.channels": [8, 16, 16, 16],
    "detection.model.fpn_channels": 16,
    "detection.model.anchor_sizes": [8, 16, 32],
    "detection.model.head_dim": 32,
    "detection.train.max_epochs": 2,
    "detection.train.batch_size": 4,
    "detection.train.warmup_steps": 5,
    "detection.evaluate.bootstrap": 10,
    "detection.report.n_examples": 2,
    # inpainting: 8 videos of 6 frames at 32x48, a narrow network, 1 epoch of 4 clips, 2 robot rounds
    "inpainting.synthetic.n_videos": 8,
    "inpainting.synthetic.n_frames": 6,
    "inpainting.synthetic.height": 32,
    "inpainting.synthetic.width": 48,
    "inpainting.model.width": 8,
    "inpainting.model.key_dim": 8,
    "inpainting.model.value_dim": 16,
    "inpainting.model.internal_size": [32, 48],
    "inpainting.model.max_memory": 3,
    "inpainting.train.max_epochs": 1,
    "inpainting.train.batch_size": 2,
    "inpainting.train.samples_per_epoch": 4,
    "inpainting.train.clip_len": 3,
    "inpainting.train.warmup_steps": 1,
    "inpainting.evaluate.rounds": 2,
    "inpainting.evaluate.bootstrap": 20,
    # relationship: 24 short clips, a network of a few thousand weights, 2 epochs (+ 1 of concat fusion)
    "relationship.synthetic.n_clips": 24,
    "relationship.synthetic.height": 48,
    "relationship.synthetic.width": 64,
    "relationship.synthetic.min_seconds": 1.5,
    "relationship.synthetic.max_seconds": 2.0,
    "relationship.synthetic.labels_per_clip": 3,
    "relationship.features.n_steps": 6,
    "relationship.features.face_size": 8,
    "relationship.features.body_height": 12,
    "relationship.features.body_width": 8,
    "relationship.features.n_mels": 16,
    "relationship.features.mel_steps": 2,
    "relationship.features.max_tokens": 6,
    "relationship.model.dim": 8,
    "relationship.model.channels": 4,
    "relationship.train.max_epochs": 2,
    "relationship.train.batch_size": 8,
    "relationship.train.warmup_steps": 1,
    "relationship.evaluate.ablation_fusions": ["concat"],
    "relationship.evaluate.ablation_epochs": 1,
    "relationship.evaluate.bootstrap": 50,
    "relationship.evaluate.min_clips_for_verdict": 3,
}


def shrunk_params(overrides: dict | None = None) -> dict:
    """The repo's params.yaml with TINY (and ``overrides``) applied; paths stay relative."""
    from tasks.core import set_key

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for k, v in {**TINY, **(overrides or {})}.items():
        set_key(params, k, v)
    return params


def write_tiny_params(folder: Path, overrides: dict | None = None) -> Path:
    """Write shrunk params.yaml into ``folder``: every relative path (data, MLflow SQLite, caches) lands there."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(shrunk_params(overrides), sort_keys=False))
    return path


@pytest.fixture
def tiny_params(tmp_path):
    """Loaded tiny params rooted in tmp_path (what the stage functions take)."""
    from tasks.core import load_params

    return load_params(write_tiny_params(tmp_path))


@pytest.fixture
def fixtures_dir():
    if not FIXTURES.is_dir():
        pytest.skip(f"real fixtures not found at {FIXTURES} (../shared absent)")
    return FIXTURES


def kill_after_first_checkpoint(cmd: list[str], runs_dir: Path, *, timeout: float, settle: float) -> None:
    """Start a train stage (``cmd``, from the repo, this checkout on PYTHONPATH) and SIGKILL it
    ``settle`` s after its first ``<runs_dir>/*/checkpoints/last.ckpt`` appears; fails when no
    checkpoint comes within ``timeout`` s or the run finished before the kill."""
    import signal
    import subprocess
    import time

    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while not list(runs_dir.glob("*/checkpoints/last.ckpt")):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, f"no checkpoint within {timeout:g} s"
            time.sleep(0.02)
        time.sleep(settle)  # a few more steps, so the kill lands mid-run
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
