"""Scale-out, proven: Lightning DDP in two CPU processes (gloo) validates on the whole split.

A script run as its own process (Lightning's DDP launcher re-executes it for rank 1): a tiny STDAM
validated with ``devices=2, strategy="ddp"`` on 5 videos, so DistributedSampler pads the split with a
repeat. Rank 0 writes the logged metrics; the test recomputes them in one process over the whole split.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent('''
    import json, os, sys
    import lightning as L, numpy as np, torch
    from models.vqa.lit import VQADataModule, VQALitModule

    items = json.loads(sys.argv[1]); out = sys.argv[2]
    dm = VQADataModule(train_items=items[:2], val_items=items, n_clips=2, clip_len=1, height=16, width=16,
                       cache_dir=os.path.join(os.path.dirname(out), "cache"), batch_size=2)
    torch.manual_seed(0)
    module = VQALitModule(model_kwargs=dict(backbone_channels=[4], gcn_layers=1, gcn_dim=8, attention_heads=2,
                                            motion_channels=4, lstm_hidden=8, dropout=0.0),
                          target_mean=3.0, target_std=2.0)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    logged = trainer.validate(module, datamodule=dm, verbose=False)[0]
    if trainer.is_global_zero:
        torch.save(module.state_dict(), out + ".pt")
        json.dump({"logged": logged, "world_size": trainer.world_size}, open(out, "w"))
''')


def test_ddp_two_cpu_processes_validate_on_the_whole_split(tmp_path):
    import torch

    from models.vqa.lit import VQADataModule, VQALitModule, correlations
    from models.vqa.stdam import to_model_inputs
    from tests.vqa.test_train import _write_video

    items = []
    for i in range(5):  # 5 items over 2 ranks: the sampler pads one repeat
        _write_video(tmp_path / f"v{i}.mp4", noise=0.07 * i, seed=i, n=3, h=16, w=16)
        items.append((str(tmp_path / f"v{i}.mp4"), 5.0 - i))
    script, out = tmp_path / "ddp_validate.py", tmp_path / "result.json"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    proc = subprocess.run([sys.executable, str(script), json.dumps(items), str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["world_size"] == 2

    # the same weights, one process, every item once
    dm = VQADataModule(train_items=items[:2], val_items=items, n_clips=2, clip_len=1, height=16, width=16,
                       cache_dir=tmp_path / "cache1", batch_size=2)
    dm.setup("validate")
    module = VQALitModule(model_kwargs=dict(backbone_channels=[4], gcn_layers=1, gcn_dim=8, attention_heads=2,
                                            motion_channels=4, lstm_hidden=8, dropout=0.0),
                          target_mean=3.0, target_std=2.0)
    module.load_state_dict(torch.load(str(out) + ".pt"))
    ds = dm.val_dataloader().dataset
    with torch.no_grad():
        preds = np.array([float(module.eval().predict_quality(*to_model_inputs(f[None], m[None])))
                          for f, m, _, _ in (ds[i] for i in range(len(ds)))])
    srcc, pearson = correlations(np.array([q for _, q in items]), preds)
    assert np.ptp(preds) > 0
    assert result["logged"]["val_srcc"] == pytest.approx(srcc, abs=1e-6)
    assert result["logged"]["val_pearson"] == pytest.approx(pearson, abs=1e-5)
