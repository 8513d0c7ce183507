"""STDAM network, losses and inference helpers (tiny sizes, CPU)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from models.vqa.losses import QualityLoss, plcc_loss, rank_loss
from models.vqa.stdam import STDAM, PretrainedWeightsError, grid_adjacency

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "vqa"
TINY = dict(backbone_channels=[4, 8], gcn_layers=2, gcn_dim=8, attention_heads=2, motion_in_channels=1,
            motion_channels=4, lstm_hidden=8, dropout=0.0)


def _inputs(b=3, t=4, h=32, w=32, c=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, 3, h, w, generator=g), torch.randn(b, t, c, h, w, generator=g) * 0.1


def test_forward_shape_and_any_input_size():
    torch.manual_seed(0)
    model = STDAM(**TINY).eval()
    frames, motion = _inputs()
    assert model(frames, motion).shape == (3,)
    frames, motion = _inputs(b=2, t=3, h=24, w=40)  # non-square, not a multiple of the stride
    out = model(frames, motion)
    assert out.shape == (2,) and torch.isfinite(out).all()


def test_rejects_mismatched_inputs():
    model = STDAM(**TINY)
    frames, motion = _inputs(t=4)
    with pytest.raises(ValueError):
        model(frames, motion[:, :3])  # 3 motion steps cannot be runs of 4 clips
    with pytest.raises(ValueError):
        model(frames[:2], motion)
    with pytest.raises(ValueError):
        STDAM(**dict(TINY, gcn_dim=9, attention_heads=2))
    with pytest.raises(ValueError, match="spatial"):
        STDAM(**dict(TINY, spatial="transformer"))


def test_runs_of_motion_steps_beside_each_clip_frame():
    """K spatial frames and K*L motion steps: the LSTM reads K*L steps; each step carries its own
    motion, so reordering the steps inside a run changes the score (order over time is read)."""
    torch.manual_seed(0)
    model = STDAM(**TINY).eval()
    g = torch.Generator().manual_seed(1)
    frames, motion = torch.rand(2, 3, 3, 32, 32, generator=g), torch.randn(2, 12, 1, 32, 32, generator=g) * 0.1
    with torch.no_grad():
        steps = model.steps(frames, motion)
        a = model(frames, motion)
        b = model(frames, motion.flip(1))
    assert steps.shape == (2, 12, TINY["lstm_hidden"]) and a.shape == (2,)
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("switch,gone", [({"motion_branch": False}, ("motion.",)),
                                         ({"spatial": "pool"}, ("gcn.", "node_pool.")),
                                         ({"temporal": "mean"}, ("lstm.", "time_score."))])
def test_ablation_switches_remove_their_module(switch, gone):
    torch.manual_seed(0)
    full, ablated = STDAM(**TINY), STDAM(**TINY, **switch)
    names = {n for n, _ in ablated.named_parameters()}
    assert not any(n.startswith(gone) for n in names)
    assert sum(p.numel() for p in ablated.parameters()) < sum(p.numel() for p in full.parameters())
    assert ablated.config | switch == ablated.config  # saved with the model: it rebuilds as trained
    g = torch.Generator().manual_seed(2)
    frames, motion = torch.rand(3, 2, 3, 32, 32, generator=g), torch.randn(3, 6, 1, 32, 32, generator=g) * 0.1
    in_run_reversed = motion.view(3, 2, 3, 1, 32, 32).flip(2).reshape(motion.shape)  # runs of 3 steps
    ablated.eval()
    with torch.no_grad():
        out = ablated(frames, motion)
        moved = ablated(frames, motion * 5 + 0.3)
        shuffled = ablated(frames, in_run_reversed)
    assert out.shape == (3,) and torch.isfinite(out).all()
    if "motion_branch" in switch:  # no motion branch: the motion input is not read at all
        torch.testing.assert_close(out, moved)
    else:
        assert not torch.allclose(out, moved)
    if "temporal" in switch:  # mean over steps: their order does not matter
        torch.testing.assert_close(out, shuffled, rtol=1e-5, atol=1e-6)


def test_gradients_reach_every_branch():
    torch.manual_seed(0)
    model = STDAM(**TINY)
    frames, motion = _inputs()
    model(frames, motion).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert no_grad == []
    for prefix in ("backbone.", "gcn.", "node_pool.", "motion.", "lstm.", "time_score.", "head."):
        assert any(n.startswith(prefix) for n, _ in model.named_parameters())


def test_graph_adjacency_is_row_stochastic():
    torch.manual_seed(0)
    model = STDAM(**TINY)
    frames, _ = _inputs()
    x, grid = model.nodes(frames.flatten(0, 1))
    assert grid.shape == (64, 64)  # 32x32 input, two stride-2 stages -> 8x8 nodes
    for layer in model.gcn:
        a = layer.adjacency(x, grid)
        assert a.shape == (x.shape[0], 64, 64)
        assert torch.all(a >= 0)
        torch.testing.assert_close(a.sum(-1), torch.ones(a.shape[:2]))
        x = layer(x, grid)
    g = grid_adjacency(3, 4)
    torch.testing.assert_close(g.sum(1), torch.ones(12))
    assert g[0, 1] > 0 and g[0, 4] > 0 and g[0, 5] == 0  # right and down neighbours, not diagonal


def test_motion_branch_changes_output():
    torch.manual_seed(0)
    model = STDAM(**TINY).eval()
    frames, motion = _inputs()
    with torch.no_grad():
        a = model(frames, motion)
        b = model(frames, motion * 5 + 0.3)
    assert not torch.allclose(a, b)


def test_pretrained_backbone_loading(tmp_path):
    torch.manual_seed(0)
    src = STDAM(**TINY)
    ckpt = tmp_path / "backbone.pt"
    torch.save(src.state_dict(), ckpt)  # whole-model state dict: "backbone." keys are picked
    dst = STDAM(**TINY, pretrained=str(ckpt))
    for k, v in src.backbone.state_dict().items():
        torch.testing.assert_close(dst.backbone.state_dict()[k], v)
    with pytest.raises(PretrainedWeightsError, match="not found"):
        STDAM(**TINY, pretrained=str(tmp_path / "missing.pt"))
    with pytest.raises(PretrainedWeightsError, match=str(ckpt.name)):
        STDAM(**dict(TINY, backbone_channels=[4, 16]), pretrained=str(ckpt))


# ------------------------------------------------------------------------------------------- losses

def test_plcc_loss():
    t = torch.tensor([1.0, 2.0, 3.0, 5.0])
    assert float(plcc_loss(2 * t + 1, t)) == pytest.approx(0.0, abs=1e-6)
    assert float(plcc_loss(-t, t)) == pytest.approx(2.0, abs=1e-6)
    assert float(plcc_loss(torch.tensor([1.0, 3.0, 2.0, 0.0]), t)) > 0.1
    assert torch.isfinite(plcc_loss(torch.ones(4), t))  # constant prediction: no NaN


def test_rank_loss():
    t = torch.tensor([0.1, 0.5, 0.9, 0.3])
    assert float(rank_loss(t * 3, t)) == 0.0
    assert float(rank_loss(-t, t)) > 0
    assert float(rank_loss(-t, t, kind="logistic")) > float(rank_loss(t * 3, t, kind="logistic"))
    with pytest.raises(ValueError):
        rank_loss(t, t, kind="nope")


def test_quality_loss_weights():
    pred, t = torch.tensor([0.3, 0.1, 0.9]), torch.tensor([0.2, 0.5, 0.8])
    terms = QualityLoss(plcc_weight=1.0, rank_weight=2.0, mse_weight=0.5)(pred, t)
    expected = terms["plcc"] + 2.0 * terms["rank"] + 0.5 * terms["mse"]
    torch.testing.assert_close(terms["loss"], expected)
    assert float(terms["rank"]) > 0


def test_stdam_overfits_tiny_set():
    """Quality = how noisy the clip is; a working network learns to rank 8 clips."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    base = torch.rand(1, 4, 3, 32, 32, generator=g).expand(8, -1, -1, -1, -1)
    noise_level = torch.linspace(0.0, 0.35, 8)
    frames = (base + noise_level.view(8, 1, 1, 1, 1) * torch.randn(8, 4, 3, 32, 32, generator=g)).clamp(0, 1)
    motion = frames[:, 1:, :1] - frames[:, :-1, :1]
    motion = torch.cat([motion, motion[:, -1:]], dim=1)
    target = 1.0 - 2.0 * noise_level / noise_level.max()
    model = STDAM(**TINY)
    loss_fn = QualityLoss(plcc_weight=1.0, rank_weight=1.0, mse_weight=0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        loss_fn(model(frames, motion), target)["loss"].backward()
        opt.step()
    with torch.no_grad():
        pred = model.eval()(frames, motion)
    assert stats.spearmanr(pred.numpy(), target.numpy())[0] > 0.9


# ---------------------------------------------------------------------------------------- inference

def _write_video(path: Path, *, n=6, h=32, w=32, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 8, (w, h))
    for _ in range(n):
        writer.write(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    writer.release()
    return path


def test_save_load_round_trip_identical_predictions(tmp_path):
    from models.vqa.inference import load_model, predict_paths, save_model
    from models.vqa.video import FrameCache

    torch.manual_seed(0)
    model = STDAM(**TINY).eval()
    frames_cfg = {"n_clips": 4, "clip_len": 1, "height": 32, "width": 32, "motion": "diff"}
    paths = [_write_video(tmp_path / f"v{i}.mp4", seed=i, h=24 + 8 * i, w=40) for i in range(3)]
    save_model(tmp_path / "m" / "model.pt", model, frames_cfg, {"mean": 3.0, "std": 0.5})
    loaded, cfg = load_model(tmp_path / "m" / "model.pt")
    assert cfg == frames_cfg and not loaded.training
    cache = FrameCache(tmp_path / "cache", **frames_cfg)
    got = predict_paths(loaded, cfg, paths, batch_size=2, cache=cache)
    assert got.shape == (3,) and np.isfinite(got).all()
    # Same as the original network mapped to the quality scale by hand.
    from models.vqa.video import read_clip
    clips = [read_clip(p, **frames_cfg) for p in paths]
    f = torch.from_numpy(np.stack([c[0] for c in clips])).permute(0, 1, 4, 2, 3).float() / 255
    m = torch.from_numpy(np.stack([c[1] for c in clips])).permute(0, 1, 4, 2, 3)
    with torch.no_grad():
        expected = model(f, m).numpy() * 0.5 + 3.0
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # Re-saving the loaded model and loading again is lossless.
    save_model(tmp_path / "m2.pt", loaded, cfg, None)
    again, _ = load_model(tmp_path / "m2.pt")
    np.testing.assert_array_equal(predict_paths(again, cfg, paths), got)


def test_load_model_errors(tmp_path):
    from models.vqa.inference import ModelFileError, load_model

    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(ModelFileError, match="bad.pt"):
        load_model(bad)


def test_predict_paths_on_real_videos(tmp_path):
    videos = sorted(FIXTURES.glob("*.mp4")) if FIXTURES.is_dir() else []
    if not videos:
        pytest.skip(f"real fixture videos not found in {FIXTURES}")
    from models.vqa.inference import load_model, predict_paths, save_model

    torch.manual_seed(0)
    frames_cfg = {"n_clips": 4, "clip_len": 1, "height": 48, "width": 64, "motion": "diff"}
    save_model(tmp_path / "model.pt", STDAM(**TINY), frames_cfg, {"mean": 3.0, "std": 0.7})
    model, cfg = load_model(tmp_path / "model.pt")
    scores = predict_paths(model, cfg, videos, batch_size=2)
    assert scores.shape == (len(videos),) and np.isfinite(scores).all()


# ------------------------------------------------------------------------------- review fixes

def test_lstm_runs_in_fp32_under_autocast():
    # CUDA autocast runs cuDNN RNNs in fp16 even in bf16-mixed (no GradScaler): the LSTM opts out.
    torch.manual_seed(0)
    model = STDAM(**TINY)
    seen = []
    model.lstm.register_forward_hook(lambda mod, args, out: seen.append((args[0].dtype, out[0].dtype)))
    frames, motion = _inputs()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = model(frames, motion)
    assert seen == [(torch.float32, torch.float32)]
    assert torch.isfinite(out).all()
    out.float().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.lstm.parameters())


@pytest.mark.parametrize("channels", [[12, 20], [6, 10]])
def test_group_norm_accepts_channel_counts_not_divisible_by_8(channels):
    model = STDAM(**dict(TINY, backbone_channels=channels, motion_channels=12))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_channels % m.num_groups == 0 for m in norms)
    frames, motion = _inputs(b=2, t=2)
    assert torch.isfinite(model(frames, motion)).all()


def test_to_model_inputs_channel_first_float():
    from models.vqa.stdam import to_model_inputs

    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (2, 3, 8, 10, 3), dtype=torch.uint8, generator=g)
    for c in (1, 2):
        motion = torch.randn(2, 3, 8, 10, c, generator=g)
        f, m = to_model_inputs(frames, motion)
        assert f.dtype == m.dtype == torch.float32 and f.is_contiguous() and m.is_contiguous()
        torch.testing.assert_close(f, frames.permute(0, 1, 4, 2, 3).double().div(255).float())
        torch.testing.assert_close(m, motion.permute(0, 1, 4, 2, 3))
    assert frames.dtype == torch.uint8  # the input batch is left alone


def test_inference_does_not_import_lightning():
    import subprocess
    import sys

    code = "import sys, models.vqa.inference; sys.exit('lightning' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


def test_predict_paths_batch_size_below_one(tmp_path):
    from models.vqa.inference import predict_paths

    torch.manual_seed(0)
    model = STDAM(**TINY).eval()
    cfg = {"n_clips": 2, "clip_len": 1, "height": 16, "width": 16, "motion": "diff"}
    paths = [_write_video(tmp_path / f"v{i}.mp4", n=3, h=16, w=16, seed=i) for i in range(3)]
    one = predict_paths(model, cfg, paths, batch_size=1)
    np.testing.assert_allclose(predict_paths(model, cfg, paths, batch_size=0), one, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predict_paths(model, cfg, paths, batch_size=2), one, rtol=1e-5, atol=1e-6)


def test_losses_read_nothing_back_to_the_host():
    # Meta tensors have no data: any float()/bool()/boolean-index on a value raises, just like a
    # place where a CUDA step would stall for a GPU->CPU sync.
    pred = torch.randn(6, device="meta", requires_grad=True)
    target = torch.randn(6, device="meta")
    terms = QualityLoss(rank_kind="logistic")(pred, target)
    assert terms["loss"].shape == () and terms["loss"].device.type == "meta"
    assert rank_loss(pred, target, kind="hinge").device.type == "meta"


def test_losses_match_reference_formulas():
    g = torch.Generator().manual_seed(3)
    pred, target = torch.randn(7, generator=g), torch.randn(7, generator=g)
    r = stats.pearsonr(pred.numpy(), target.numpy())[0]
    assert float(plcc_loss(pred, target)) == pytest.approx(1 - r, abs=1e-5)
    p, t = pred.tolist(), target.tolist()
    pairs = [(p[i] - p[j]) for i in range(7) for j in range(7) if t[i] > t[j]]
    assert float(rank_loss(pred, target, margin=0.3)) == pytest.approx(
        np.mean([max(0.0, 0.3 - d) for d in pairs]), abs=1e-5)
    assert float(rank_loss(pred, target, kind="logistic")) == pytest.approx(
        np.mean([np.log1p(np.exp(-d)) for d in pairs]), abs=1e-5)


def test_degenerate_losses_are_zero_with_finite_gradients():
    pred = torch.randn(5, requires_grad=True)
    const = torch.full((5,), 2.0)
    terms = {"plcc": plcc_loss(pred, const), "rank": rank_loss(pred, const)}  # no pair is ordered
    for name, value in terms.items():
        assert float(value.detach()) == 0.0, name
        (grad,) = torch.autograd.grad(value, pred)
        assert torch.isfinite(grad).all() and torch.all(grad == 0), name
    assert float(plcc_loss(torch.ones(5), torch.arange(5.0))) == 0.0  # constant prediction
