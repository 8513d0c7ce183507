"""Simulated crowds with known truth: careful, lazy and spamming annotators labelling items.

For tests, benchmarks and the synthetic data of the relationship study. Classes are ordinal
(hostile < tense < neutral < mild < intimate), so a careful annotator's mistakes fall mostly on a
neighbouring class, not evenly on all (real annotators confuse *tense* with *hostile*, rarely with
*intimate*); that also keeps the simulation from being the one-coin model the aggregator's
smoothing assumes.

- careful: right with probability ``accuracy`` (drawn in [0.65, 0.9]); a mistake is a neighbouring
  class with probability 0.8, any other class otherwise;
- lazy: answers the middle class ("neutral") 85 % of the time, a careful answer otherwise;
- spammer: a class drawn uniformly, whatever the item.

A long tail of occasional annotators (a few labels each, careful) is added when ``tail`` > 0: real
crowds have many of them (adult_content2: a quarter of its 825 annotators gave <= 5 labels).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("careful", "lazy", "spammer", "occasional")


@dataclass
class Crowd:
    items: np.ndarray       # [n] item index of each label
    annotators: np.ndarray  # [n] annotator index
    labels: np.ndarray      # [n] class index given
    truth: np.ndarray       # [n_items] true class index
    kind: np.ndarray        # [n_annotators] one of KINDS
    accuracy: np.ndarray    # [n_annotators] the share of the annotator's labels that are right (measured)


def simulate_crowd(n_items: int = 2000, labels_per_item: int = 5, n_classes: int = 5, *,
                   n_careful: int = 15, n_lazy: int = 5, n_spammers: int = 20, tail: int = 200,
                   seed: int = 0, truth: np.ndarray | None = None) -> Crowd:
    """``n_items`` items, each labelled by ``labels_per_item`` distinct annotators; the occasional
    (tail) annotators are drawn 50x less often than the others. ``truth`` (class indices, one per
    item) labels items whose truth is already known (a synthetic data set's); it fixes ``n_items``."""
    rng = np.random.default_rng(seed)
    K = n_classes
    if truth is not None:
        n_items = len(truth)
    prior = np.exp(-0.5 * ((np.arange(K) - (K - 1) / 2) / (K / 4)) ** 2)  # most relationships are near neutral
    drawn = rng.choice(K, n_items, p=prior / prior.sum())  # drawn even when given: same stream for every seed
    truth = drawn if truth is None else np.asarray(truth, dtype=np.int64)
    if truth.shape != (n_items,) or truth.min(initial=0) < 0 or truth.max(initial=0) >= K:
        raise ValueError(f"truth: expected {n_items} class indices in [0, {K})")
    kind = np.array(["careful"] * n_careful + ["lazy"] * n_lazy + ["spammer"] * n_spammers + ["occasional"] * tail)
    if len(kind) < labels_per_item:
        raise ValueError(f"{len(kind)} annotators cannot give {labels_per_item} labels per item")
    skill = rng.uniform(0.65, 0.9, len(kind))
    weight = np.where(kind == "occasional", 0.02, 1.0)
    # labels_per_item distinct annotators per item, drawn by weight (Gumbel top-k, vectorised)
    keys = np.log(weight)[None, :] - np.log(-np.log(rng.random((n_items, len(kind)))))
    who = np.argpartition(-keys, labels_per_item - 1, axis=1)[:, :labels_per_item]
    items = np.repeat(np.arange(n_items), labels_per_item)
    annotators = who.ravel()
    z = truth[items]
    labels = _careful(rng, z, skill[annotators], K)
    lazy = (kind[annotators] == "lazy") & (rng.random(len(z)) < 0.85)
    labels[lazy] = (K - 1) // 2
    spam = kind[annotators] == "spammer"
    labels[spam] = rng.integers(0, K, int(spam.sum()))
    right = np.bincount(annotators, weights=labels == z, minlength=len(kind))
    accuracy = right / np.maximum(np.bincount(annotators, minlength=len(kind)), 1)
    return Crowd(items=items, annotators=annotators, labels=labels, truth=truth, kind=kind, accuracy=accuracy)


def _careful(rng, z: np.ndarray, skill: np.ndarray, K: int) -> np.ndarray:
    """The true class with probability ``skill``; otherwise a neighbour (80 %) or any other class."""
    labels = z.copy()
    wrong = rng.random(len(z)) >= skill
    step = np.where(rng.random(len(z)) < 0.5, -1, 1)
    near = np.clip(z + step, 0, K - 1)
    near = np.where(near == z, z - step, near)  # at either end the only neighbour is inward
    other = (z + rng.integers(1, K, len(z))) % K
    labels[wrong] = np.where(rng.random(len(z)) < 0.8, near, other)[wrong]
    return labels
