"""The relationship network: every fusion and modality subset runs (a clip missing modalities too),
masked modalities do not reach the output, modality dropout keeps one, and a tiny fit learns."""
import itertools
import logging
import warnings

import numpy as np
import pytest
import torch

from models.relationship.lit import RelationshipDataModule, RelationshipLitModule, class_weights, scores
from models.relationship.network import FUSIONS, MODALITIES, RelationshipNet, to_batch

T, VOCAB = 6, 20
SMALL = {"vocab_size": VOCAB, "dim": 8, "heads": 2, "n_steps": T, "channels": 4, "n_mels": 8, "mel_steps": 2}
SUBSETS = [c for k in (1, 2, 3) for c in itertools.combinations(MODALITIES, k)]


def _features(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"faces": rng.integers(0, 256, (n, T, 2, 3, 8, 8), dtype=np.uint8),
            "bodies": rng.integers(0, 256, (n, T, 2, 3, 12, 8), dtype=np.uint8),
            "motion": rng.normal(0, 1, (n, T, 4)).astype(np.float32), "visual_mask": np.ones((n, T), bool),
            "mel": rng.normal(-5, 2, (n, T, 2, 8)).astype(np.float32), "audio_mask": np.ones((n, T), bool),
            "tokens": rng.integers(0, VOCAB, (n, T, 5)), "text_mask": np.ones((n, T), bool)}


def _missing(feats: dict) -> dict:
    """Clip 1 without audio, clip 2 without subtitles, clip 3 with neither and half its frames untracked."""
    f = {k: v.copy() for k, v in feats.items()}
    f["audio_mask"][[1, 3]] = False
    f["text_mask"][[2, 3]] = False
    f["visual_mask"][3, : T // 2] = False
    return f


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("mods", SUBSETS, ids="+".join)
def test_forward_every_fusion_and_subset(fusion, mods):
    torch.manual_seed(0)
    net = RelationshipNet(fusion=fusion, modalities=mods, **SMALL)
    batch = to_batch(_missing(_features(4)))
    for train in (True, False):
        net.train(train)
        out = net(batch)
        assert out["fine"].shape == (4, 5) and out["coarse"].shape == (4, 3)
        assert torch.isfinite(out["fine"]).all() and torch.isfinite(out["coarse"]).all()
    out = net(batch, modalities=["visual"])  # asking for one modality, present in the net or not
    assert torch.isfinite(out["fine"]).all()
    assert RelationshipNet(**net.config).config == net.config


@pytest.mark.parametrize("fusion", FUSIONS)
def test_a_masked_modality_does_not_reach_the_output(fusion):
    torch.manual_seed(0)
    net = RelationshipNet(fusion=fusion, **SMALL).eval()
    feats = _missing(_features(4))
    other = {**feats, "mel": feats["mel"] + 3.0, "tokens": (feats["tokens"] + 1) % VOCAB}
    with torch.no_grad():
        a, b = net(to_batch(feats))["fine"], net(to_batch(other))["fine"]
        # clip 3 has neither audio nor text: changing them changes nothing; clip 0 has both: it does
        torch.testing.assert_close(a[3], b[3])
        assert not torch.allclose(a[0], b[0])
        # visual alone, asked at inference: audio and text are ignored for every clip
        va, vb = net(to_batch(feats), modalities=["visual"])["fine"], net(to_batch(other), modalities=["visual"])["fine"]
        torch.testing.assert_close(va, vb)


def test_rebuilt_from_config_and_weights_answers_the_same():
    net = RelationshipNet(fusion="sync", layers=2, **SMALL).eval()
    copy = RelationshipNet(**net.config).eval()
    copy.load_state_dict(net.state_dict())
    batch = to_batch(_features(3))
    with torch.no_grad():
        torch.testing.assert_close(net(batch)["fine"], copy(batch)["fine"])


def test_modality_dropout_keeps_one_present_modality():
    torch.manual_seed(0)
    net = RelationshipNet(modality_dropout=1.0, **SMALL).train()
    batch = to_batch(_missing(_features(64)))
    mask = net.masks(batch)
    kept = mask.any(1).sum(1)
    assert (kept == 1).all()  # all dropped but one
    half = RelationshipNet(modality_dropout=0.5, **SMALL).train().masks(batch).any(1).sum(1)
    assert (half >= 1).all() and (half < 3).any() and (half > 1).any()
    assert RelationshipNet(modality_dropout=1.0, **SMALL).eval().masks(batch).any(1).sum(1).max() == 3


@pytest.mark.parametrize("kwargs, message", [({"fusion": "early"}, "fusion"), ({"modalities": []}, "modalities"),
                                              ({"modalities": ["smell"]}, "modalities"),
                                              ({"modalities": "visual"}, "modalities"),
                                              ({"dim": 9}, "multiple of heads")])
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RelationshipNet(**{**SMALL, **kwargs})


def test_class_weights_and_scores():
    w = class_weights([0, 0, 0, 1, 2, 2], 4)
    assert w[1] > w[2] > w[0] and w[3] == 1.0
    s = scores(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 1]), 5)
    assert s["accuracy"] == 0.75 and 0 < s["macro_f1"] < 1


# ------------------------------------------------------------------------------------------ tiny fit

def _planted(n: int, seed: int):
    """Labels that only show where two modalities agree at the same step: at one random step per clip
    the text says the label (token 3 + label) and the audio is loud there; elsewhere the tokens are
    distractor words of random labels with quiet audio."""
    rng = np.random.default_rng(seed)
    feats = _features(n, seed)
    y = rng.integers(0, 5, n)
    feats["tokens"][:] = 0
    feats["tokens"][:, :, 0] = 3 + rng.integers(0, 5, (n, T))
    feats["mel"][:] = rng.normal(-8, 0.5, feats["mel"].shape)
    at = rng.integers(0, T, n)
    feats["tokens"][np.arange(n), at, 0] = 3 + y
    feats["mel"][np.arange(n), at] += 6.0
    return feats, y


def test_a_tiny_fit_learns_above_chance():
    import lightning as L

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    L.seed_everything(0, verbose=False)
    feats, y = _planted(320, seed=1)
    train, val = np.arange(240), np.arange(240, 320)
    net = RelationshipNet(fusion="sync", modalities=("audio", "text"), modality_dropout=0.0,
                          **{**SMALL, "dim": 16})
    lit = RelationshipLitModule(net, lr=1e-2, warmup_steps=3, fine_weights=class_weights(y[train], 5))
    dm = RelationshipDataModule(features=feats, labels=y, train_index=train, val_index=val, batch_size=32)
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(lit, dm)
    assert [h["epoch"] for h in lit.history] == [0, 1, 2]
    net.eval()
    with torch.no_grad():
        pred = net(to_batch({k: v[val] for k, v in feats.items()}))["fine"].argmax(-1).numpy()
    accuracy = scores(y[val], pred, 5)["accuracy"]
    print(f"tiny fit: val accuracy {accuracy:.3f}")
    assert accuracy > 0.2 + 0.25, accuracy  # chance is 0.2
    assert lit.history[-1]["val_accuracy"] == pytest.approx(accuracy)
