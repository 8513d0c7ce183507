"""Crowd label aggregation: Dawid-Skene EM (one full confusion matrix per annotator) and majority vote.

Model (Dawid & Skene 1979): every item ``i`` has one true class ``z_i ~ Categorical(prior)``;
annotator ``j`` who labels it gives class ``c`` with probability ``confusion[j, z_i, c]``, labels
independent given the truth. EM alternates

- E-step: ``posterior[i, k] ∝ prior[k] * prod_{labels (j, c) of i} confusion[j, k, c]``;
- M-step: ``prior`` and every row ``confusion[j, k, :]`` from the posterior-weighted label counts,

starting from the majority vote (the vote shares as the first posterior, as in the paper and
crowd-kit), and stops when the log-likelihood gains less than ``tol`` (relative) or after
``max_iter`` iterations.

Smoothing (why): an annotator with a handful of labels, or a lazy one who always answers the same
class, has confusion rows estimated from almost nothing; unsmoothed, a row seen once is a 0/1
vector, so one label vetoes every other class (log 0) and EM locks onto it. Each row gets
``smoothing`` pseudo-labels spread like the annotator's own *one-coin* model (their overall
accuracy on the diagonal, errors spread evenly): where an annotator has few labels of a true class
they are assumed to be as good there as they are overall; where they have many, their labels
decide. Measured (tests, benchmarks/label_aggregation.py): on simulated crowds of careful, lazy
and spamming annotators this adds 2-5 points of accuracy over unsmoothed DS (a prior shrinking to
the pooled crowd matrix, or a uniform one, adds less); on the five real crowds the accuracy is
crowd-kit's within 0.01 on four, and 0.751 vs 0.766 on adult_content2 (5 of its 333 gold items;
crowd-kit stops there after 2 iterations, at its majority vote; unsmoothed, ours reaches 0.763).

Why it is fast: labels are kept in long form (item, annotator, class); the E-step is one sparse
(items x labels) product with the per-label log-probabilities, the M-step one sparse
((annotator, class) x labels) product with the per-label posteriors. 100,000 labels, 5 classes: a
few milliseconds per iteration.

numpy + scipy only (no torch: the clean stage runs without it).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

SMOOTHING = 2.0  # pseudo-labels per confusion row, spread like the annotator's one-coin model


class AnnotationError(ValueError):
    """Labels that cannot be aggregated (the message says which)."""


@dataclass
class Aggregation:
    items: np.ndarray        # [I] item ids, sorted
    annotators: np.ndarray   # [J] annotator ids, sorted
    classes: np.ndarray      # [K] class labels, in the order given
    posterior: np.ndarray    # [I, K] P(true class | labels)
    labels: np.ndarray       # [I] the most probable class (ties: the first in ``classes``)
    confidence: np.ndarray   # [I] its posterior
    prior: np.ndarray        # [K] class priors
    confusion: np.ndarray    # [J, K, K] P(given = c | true = k), rows true, columns given
    accuracy: np.ndarray     # [J] expected share of the annotator's labels that are correct
    n_labels: np.ndarray     # [J] labels per annotator
    n_iter: int
    converged: bool
    log_likelihood: float    # log P(observed labels | prior, confusion), summed over items (NaN: majority vote)


@dataclass
class _Labels:
    """Labels in long form, every id replaced by its index."""
    item: np.ndarray       # [n]
    annotator: np.ndarray  # [n]
    given: np.ndarray      # [n] class index
    cell: np.ndarray       # [n] annotator * K + given: the label's row of a flattened confusion
    items: np.ndarray
    annotators: np.ndarray
    classes: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.items), len(self.annotators), len(self.classes)


# ------------------------------------------------------------------------------------- inputs

def _encode(items, annotators, labels, classes) -> _Labels:
    items, annotators, labels = (np.asarray(a) for a in (items, annotators, labels))
    if not (items.ndim == annotators.ndim == labels.ndim == 1) or not len(items) == len(annotators) == len(labels):
        raise AnnotationError(f"items, annotators and labels: expected three 1-D arrays of one length, got "
                              f"shapes {items.shape}, {annotators.shape}, {labels.shape}")
    if len(labels) == 0:
        raise AnnotationError("no labels")
    if classes is None:
        classes = np.unique(labels)
    classes = np.asarray(classes)
    if len(np.unique(classes)) != len(classes):
        raise AnnotationError(f"classes: duplicates in {classes.tolist()}")
    if len(classes) < 2:
        raise AnnotationError(f"classes: at least two are needed, got {classes.tolist()}")
    order = np.argsort(classes, kind="stable")
    pos = np.searchsorted(classes[order], labels)
    pos = np.minimum(pos, len(classes) - 1)
    known = classes[order][pos] == labels
    if not known.all():
        raise AnnotationError(f"labels outside the classes {classes.tolist()}: "
                              f"{np.unique(labels[~known])[:5].tolist()}")
    item_ids, item = np.unique(items, return_inverse=True)
    annotator_ids, annotator = np.unique(annotators, return_inverse=True)
    given = order[pos]
    return _Labels(item=item, annotator=annotator, given=given, cell=annotator * len(classes) + given,
                   items=item_ids, annotators=annotator_ids, classes=classes)


def _incidence(rows: np.ndarray, n_rows: int) -> sparse.csr_matrix:
    """The 0/1 (n_rows x n_labels) matrix that sums per-label values into their row."""
    n = len(rows)
    return sparse.csr_matrix((np.ones(n), (rows, np.arange(n))), shape=(n_rows, n))


def _vote_shares(d: _Labels) -> np.ndarray:
    I, _, K = d.shape
    counts = np.bincount(d.item * K + d.given, minlength=I * K).reshape(I, K).astype(float)
    return counts / counts.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------------- EM steps

def _m_step(d: _Labels, by_cell: sparse.csr_matrix, posterior: np.ndarray, smoothing: float):
    """Priors and confusion matrices from the posterior-weighted label counts (smoothed, see the module doc)."""
    _, J, K = d.shape
    # by_cell sums per (annotator, given class): counts[j, c, k] = posterior mass of true k; -> [j, k, c]
    counts = np.asarray(by_cell @ posterior[d.item]).reshape(J, K, K).transpose(0, 2, 1)
    confusion = counts + smoothing * _one_coin(counts)
    total = confusion.sum(axis=2, keepdims=True)
    # unsmoothed, a true class an annotator never met has no row at all: uniform, it says nothing
    confusion = np.where(total > 0, confusion / np.where(total > 0, total, 1.0), 1.0 / K)
    prior = posterior.sum(axis=0) + 1.0  # one pseudo-item per class: no class prior reaches 0
    return prior / prior.sum(), confusion


def _one_coin(counts: np.ndarray) -> np.ndarray:
    """[J, K, K] each annotator's one-coin confusion: their overall accuracy on the diagonal, the
    errors spread evenly over the other classes. The accuracy is (right + 1) / (labels + K): chance
    (1 / K) for an annotator with no labels, so one who gave a label or two, maybe a spammer, is
    not trusted as if they were good."""
    K = counts.shape[1]
    acc = (np.einsum("jkk->j", counts) + 1.0) / (counts.sum(axis=(1, 2)) + K)
    base = np.repeat(((1.0 - acc) / (K - 1))[:, None, None], K, axis=1).repeat(K, axis=2)
    base[:, np.arange(K), np.arange(K)] = acc[:, None]
    return base


def _e_step(d: _Labels, by_item: sparse.csr_matrix, prior, confusion):
    """Posterior per item and the log-likelihood of all labels."""
    _, J, K = d.shape
    # rows (annotator, given class) x columns true class: one row gather per label
    log_conf = np.log(np.maximum(confusion, 1e-300)).transpose(0, 2, 1).reshape(J * K, K)
    joint = np.log(prior)[None, :] + np.asarray(by_item @ log_conf[d.cell])  # [I, K]
    top = joint.max(axis=1, keepdims=True)
    weights = np.exp(joint - top)
    total = weights.sum(axis=1, keepdims=True)
    return weights / total, float((top + np.log(total)).sum())


# ------------------------------------------------------------------------------------------ API

def aggregate(items: Sequence, annotators: Sequence, labels: Sequence, classes: Sequence | None = None, *,
              max_iter: int = 100, tol: float = 1e-6, smoothing: float = SMOOTHING) -> Aggregation:
    """Dawid-Skene estimate of every item's true class from crowd labels given in long form.

    ``items[n]``, ``annotators[n]``, ``labels[n]``: the ``n``-th label (any hashable ids of one
    dtype each); ``classes``: every possible label, in the order the outputs use (default: the
    labels seen, sorted). Stops when the log-likelihood gains less than ``tol * |log-likelihood|``
    or after ``max_iter`` iterations. See the module docstring for the model.
    """
    if max_iter < 1:
        raise AnnotationError(f"max_iter: expected >= 1, got {max_iter}")
    if not smoothing >= 0:
        raise AnnotationError(f"smoothing: expected >= 0, got {smoothing}")
    d = _encode(items, annotators, labels, classes)
    I, J, K = d.shape
    by_item = _incidence(d.item, I)
    by_cell = _incidence(d.cell, J * K)
    posterior = _vote_shares(d)
    prev, converged, n_iter = -np.inf, False, 0
    while n_iter < max_iter and not converged:
        prior, confusion = _m_step(d, by_cell, posterior, smoothing)
        posterior, ll = _e_step(d, by_item, prior, confusion)
        n_iter += 1
        converged = abs(ll - prev) <= tol * abs(ll)
        prev = ll
    return _result(d, posterior, prior, confusion, n_iter=n_iter, converged=converged, log_likelihood=ll)


def majority_vote(items: Sequence, annotators: Sequence, labels: Sequence,
                  classes: Sequence | None = None) -> Aggregation:
    """The baseline: each item's most frequent label (ties: the first in ``classes``), vote shares as
    its posterior; annotator confusion and accuracy measured against those shares."""
    d = _encode(items, annotators, labels, classes)
    _, J, K = d.shape
    posterior = _vote_shares(d)
    prior, confusion = _m_step(d, _incidence(d.cell, J * K), posterior, 0.0)
    return _result(d, posterior, prior, confusion, n_iter=0, converged=True, log_likelihood=float("nan"))


def _result(d: _Labels, posterior, prior, confusion, **fit) -> Aggregation:
    _, J, _ = d.shape
    best = posterior.argmax(axis=1)
    n_labels = np.bincount(d.annotator, minlength=J)
    right = np.bincount(d.annotator, weights=posterior[d.item, d.given], minlength=J)
    return Aggregation(items=d.items, annotators=d.annotators, classes=d.classes, posterior=posterior,
                       labels=d.classes[best], confidence=posterior[np.arange(len(best)), best],
                       prior=prior, confusion=confusion, accuracy=right / np.maximum(n_labels, 1),
                       n_labels=n_labels, **fit)
