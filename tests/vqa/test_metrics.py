"""VQA metrics: agreement with scipy, the VQEG logistic mapping, bootstrap intervals, input checks."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from models.vqa import metrics as M


def noisy(n: int, seed: int, noise: float = 0.3):
    rng = np.random.default_rng(seed)
    t = rng.normal(3.0, 0.8, n)
    return t, np.tanh(t - 3.0) + rng.normal(0, noise, n)


# --------------------------------------------------------------------------------- point values

def test_rank_metrics_match_scipy_with_ties():
    rng = np.random.default_rng(0)
    t = rng.integers(1, 6, 40).astype(float)        # many ties, like MOS on a 5-point scale
    p = np.round(t + rng.normal(0, 1.0, 40), 1)
    assert M.srcc(t, p) == pytest.approx(stats.spearmanr(t, p).statistic, abs=1e-12)
    assert M.krcc(t, p) == pytest.approx(stats.kendalltau(t, p).statistic, abs=1e-12)


def test_perfect_monotone_nonlinear_relation():
    x = np.linspace(-2, 2, 25)
    y = 1.0 + 4.0 / (1.0 + np.exp(-(x - 0.3) / 0.4))   # exactly a VQEG logistic of x
    assert M.srcc(y, x) == pytest.approx(1.0)
    assert M.krcc(y, x) == pytest.approx(1.0)
    assert M.plcc(y, x) == pytest.approx(1.0, abs=1e-6)
    assert M.rmse(y, x) == pytest.approx(0.0, abs=1e-3)
    # the mapping is what makes PLCC reach 1: the raw linear correlation does not
    assert stats.pearsonr(y, x).statistic < 0.99


def test_exponential_relation_is_linearised_by_the_mapping():
    x = np.linspace(0, 1, 30)
    y = np.exp(4 * x)
    assert M.srcc(y, x) == pytest.approx(1.0)
    assert M.plcc(y, x) > stats.pearsonr(y, x).statistic + 0.02


def test_reversed_predictions():
    t, p = noisy(30, 1, noise=0.0)
    assert M.srcc(t, -p) == pytest.approx(-1.0)
    assert M.krcc(t, -p) == pytest.approx(-1.0)
    # VQEG: the fitted logistic may decrease, so PLCC / RMSE judge the fit after the best monotone
    # map and do not see the direction (SRCC / KRCC do)
    assert M.plcc(t, -p) == pytest.approx(M.plcc(t, p), abs=1e-4)


@pytest.mark.parametrize("seed", range(5))
def test_mapping_is_never_worse_than_linear(seed):
    t, p = noisy(40, seed, noise=0.5)
    linear = np.polyval(np.polyfit(p, t, 1), p)
    assert M.rmse(t, p) <= np.sqrt(np.mean((linear - t) ** 2)) + 1e-12
    assert M.plcc(t, p) >= abs(stats.pearsonr(t, p).statistic) - 1e-9


def test_logistic_fit_falls_back_to_a_line_when_the_fit_fails(monkeypatch):
    t, p = noisy(30, 2)

    def boom(*a, **k):
        raise RuntimeError("Optimal parameters not found")

    monkeypatch.setattr(M.optimize, "curve_fit", boom)
    m = M.logistic_fit(p, t)
    assert m.kind == "linear"
    assert M.plcc(t, p) == pytest.approx(abs(stats.pearsonr(t, p).statistic), abs=1e-12)


def test_constant_predictions_give_undefined_correlations():
    t = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.full(4, 0.5)
    assert M.logistic_fit(p, t).kind == "constant"
    assert np.isnan(M.plcc(t, p)) and np.isnan(M.srcc(t, p))
    assert M.rmse(t, p) == pytest.approx(np.std(t))  # the best constant map is the mean


# ---------------------------------------------------------------------------------------- inputs

@pytest.mark.parametrize("t, p, msg", [
    ([1, 2, 3], [1, 2], "3 values but y_pred has 2"),
    ([1, 2], [1, 2], "at least 3"),
    ([1, np.nan, 3, 4], [1, 2, 3, 4], "non-finite"),
    ([1, 2, 3, 4], [1, 2, np.inf, 4], "non-finite"),
    ([[1, 2, 3]], [[1, 2, 3]], "1-D"),
])
@pytest.mark.parametrize("fn", [M.srcc, M.krcc, M.plcc, M.rmse, M.score_all])
def test_bad_input_is_a_clear_value_error(fn, t, p, msg):
    with pytest.raises(ValueError, match=msg):
        fn(t, p)


def test_bad_bootstrap_settings():
    t, p = noisy(10, 0)
    with pytest.raises(M.MetricInputError, match="n_boot"):
        M.score_all(t, p, n_boot=-1)
    with pytest.raises(M.MetricInputError, match="level"):
        M.score_all(t, p, n_boot=10, level=1.5)


# ------------------------------------------------------------------------------------- bootstrap

def test_vectorised_rank_correlations_match_scipy_on_resamples():
    rng = np.random.default_rng(3)
    t = rng.integers(1, 6, 25).astype(float)
    p = rng.normal(size=25)
    idx = rng.integers(0, 25, size=(40, 25))     # resamples repeat videos: ties in both columns
    bt, bp = t[idx], p[idx]
    ref_s = [stats.spearmanr(a, b).statistic for a, b in zip(bt, bp)]
    ref_k = [stats.kendalltau(a, b).statistic for a, b in zip(bt, bp)]
    np.testing.assert_allclose(M.batch_srcc(bt, bp), ref_s, atol=1e-12)
    np.testing.assert_allclose(M.batch_krcc(bt, bp), ref_k, atol=1e-12)
    np.testing.assert_allclose(M.batch_krcc(bt, bp, max_elems=700), ref_k, atol=1e-12)  # 1 row / chunk
    np.testing.assert_allclose(M.batch_krcc(bt, bp, max_elems=10), ref_k, atol=1e-12)   # scipy path


def test_score_all_structure_values_and_intervals():
    t, p = noisy(60, 4)
    out = M.score_all(t, p, n_boot=200, seed=1)
    assert set(out) == set(M.METRICS)
    assert out["srcc"]["value"] == pytest.approx(M.srcc(t, p))
    assert out["krcc"]["value"] == pytest.approx(M.krcc(t, p))
    assert out["plcc"]["value"] == pytest.approx(M.plcc(t, p))
    assert out["rmse"]["value"] == pytest.approx(M.rmse(t, p))
    for k, v in out.items():
        assert set(v) == {"value", "ci_low", "ci_high"}
        assert v["ci_low"] < v["value"] < v["ci_high"], k


def test_intervals_narrow_with_more_videos():
    small, large = (M.score_all(*noisy(n, 5), n_boot=200, seed=0) for n in (25, 250))
    for k in M.METRICS:
        w_small = small[k]["ci_high"] - small[k]["ci_low"]
        w_large = large[k]["ci_high"] - large[k]["ci_low"]
        assert w_large < 0.7 * w_small, k


def test_bootstrap_is_reproducible_and_seeded():
    t, p = noisy(30, 6)
    a = M.score_all(t, p, n_boot=100, seed=3)
    assert a == M.score_all(t, p, n_boot=100, seed=3)
    assert a["srcc"]["ci_low"] != M.score_all(t, p, n_boot=100, seed=4)["srcc"]["ci_low"]


def test_fixed_mapping_option_and_no_bootstrap():
    t, p = noisy(40, 7)
    fixed = M.score_all(t, p, n_boot=100, seed=0, refit=False)
    refit = M.score_all(t, p, n_boot=100, seed=0, refit=True)
    assert fixed["srcc"] == refit["srcc"]                  # rank metrics do not use the mapping
    assert fixed["plcc"]["value"] == refit["plcc"]["value"]
    assert fixed["plcc"]["ci_low"] != refit["plcc"]["ci_low"]
    none = M.score_all(t, p, n_boot=0)
    assert all(v["ci_low"] is None and v["ci_high"] is None for v in none.values())
    assert none["plcc"]["value"] == refit["plcc"]["value"]
