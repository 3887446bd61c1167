"""Clustering of message embeddings, and what names a cluster. Pure functions of arrays and texts.

k-means on L2-normalised vectors with k chosen by the silhouette (cosine) — deterministic for a seed,
no noise label, so every problem turn lands in a cluster and shares add up to 1. A cluster is named
by its class-based TF-IDF terms (words frequent in it and rare in the others) and by its
representative message, the one closest to its centroid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from otel_chatbot.quality.embed import Vectors, normalise_rows

# Silhouette is quadratic in the number of points: score a fixed-size sample beyond this.
_SILHOUETTE_SAMPLE = 3000
# Beyond this many points, mini-batch k-means (same objective, fitted on batches): full k-means
# took 51 s for 9,600 messages and k = 2..15 on the 2-core development machine.
_MINI_BATCH_FROM = 5000


@dataclass(frozen=True)
class Clustering:
    labels: NDArray[np.intp]       # cluster index per vector, 0 = largest cluster
    centroids: Vectors             # L2-normalised, one row per cluster
    silhouette: float | None       # of the chosen k; None when k was not chosen (fewer than 3 points)

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])


def cluster_vectors(vectors: Vectors, *, max_clusters: int, seed: int = 0) -> Clustering:
    """k-means for k in 2..max_clusters (at most n-1), keeping the k with the best silhouette."""
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.metrics import silhouette_score
    from threadpoolctl import threadpool_limits

    n = vectors.shape[0]
    if n == 0:
        raise ValueError("no vectors to cluster")
    distinct = np.unique(vectors, axis=0).shape[0]
    top = min(max_clusters, n - 1, distinct)
    if top < 2:
        return _ordered(np.zeros(n, dtype=np.intp), vectors, None)
    best: tuple[float, NDArray[np.intp]] | None = None
    sample = _SILHOUETTE_SAMPLE if n > _SILHOUETTE_SAMPLE else None
    # One thread: k-means' OpenMP threads spin-wait, and on a busy machine (the processor beside it,
    # other jobs) that made the same run 5-15x slower than single-threaded in our measurements.
    with threadpool_limits(limits=1):
        for k in range(2, top + 1):
            model = (MiniBatchKMeans(n_clusters=k, n_init=3, batch_size=2048, random_state=seed)
                     if n >= _MINI_BATCH_FROM else KMeans(n_clusters=k, n_init=4, random_state=seed))
            labels = model.fit_predict(vectors).astype(np.intp)
            if np.unique(labels).size < 2:
                continue
            score = float(silhouette_score(vectors, labels, metric="cosine", sample_size=sample,
                                           random_state=seed))
            if best is None or score > best[0]:
                best = (score, labels)
    if best is None:
        return _ordered(np.zeros(n, dtype=np.intp), vectors, None)
    return _ordered(best[1], vectors, best[0])


def _ordered(labels: NDArray[np.intp], vectors: Vectors, silhouette: float | None) -> Clustering:
    """Renumber clusters by size (largest first, ties by first member) and compute their centroids."""
    present, first, counts = np.unique(labels, return_index=True, return_counts=True)
    order = sorted(range(present.size), key=lambda i: (-counts[i], first[i]))
    mapping = np.empty(int(present.max()) + 1, dtype=np.intp)
    for new, old in enumerate(order):
        mapping[present[old]] = new
    relabelled = mapping[labels]
    centroids = np.stack([vectors[relabelled == c].mean(axis=0) for c in range(present.size)])
    return Clustering(relabelled, normalise_rows(centroids), silhouette)


def closest_members(vectors: Vectors, clustering: Clustering, cluster: int, count: int) -> list[int]:
    """Indices of ``cluster``'s members, most central first (the first one is its representative)."""
    members = np.flatnonzero(clustering.labels == cluster)
    similarity = vectors[members] @ clustering.centroids[cluster]
    order = sorted(range(members.size), key=lambda i: (-float(similarity[i]), int(members[i])))
    return [int(members[i]) for i in order[:count]]


def assign_to_clusters(vectors: Vectors, clustering: Clustering, others: Vectors) -> list[int]:
    """How many of ``others`` (e.g. the previous window's messages) fall in each cluster.

    A cluster takes one that is at least as close to its centroid as its own farthest member (within
    the cluster's extent, whatever the embedder's scale); of several such clusters the one with the
    closest centroid, of none, none. So a repeat of a current message always counts for its cluster.
    """
    counts = [0] * clustering.k
    if others.shape[0] == 0:
        return counts
    radius = np.array([float((vectors[clustering.labels == c] @ clustering.centroids[c]).min())
                       for c in range(clustering.k)]) - 1e-5
    similarity = others @ clustering.centroids.T
    admitted = np.where(similarity >= radius, similarity, -np.inf)
    for row in range(others.shape[0]):
        cluster = int(admitted[row].argmax())
        if np.isfinite(admitted[row, cluster]):
            counts[cluster] += 1
    return counts


def characteristic_terms(texts: Sequence[str], labels: NDArray[np.intp], k: int, top: int = 4
                         ) -> list[list[str]]:
    """Per cluster, the ``top`` terms by class-based TF-IDF: a term's frequency in the cluster's
    messages taken together, times log(1 + average words per cluster / the term's total count)."""
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(stop_words="english", ngram_range=(1, 2),
                                 token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
    try:
        counts = vectorizer.fit_transform(list(texts))
    except ValueError:  # no words at all
        return [[] for _ in range(k)]
    vocabulary = vectorizer.get_feature_names_out()
    per_cluster = np.stack([np.asarray(counts[labels == c].sum(axis=0)).ravel() for c in range(k)])
    per_cluster = per_cluster.astype(np.float64)
    words = per_cluster.sum(axis=1, keepdims=True)
    tf = per_cluster / np.where(words == 0, 1, words)
    average_words = float(words.mean())
    idf = np.log1p(average_words / np.maximum(per_cluster.sum(axis=0), 1))
    scores = tf * idf
    names: list[list[str]] = []
    for c in range(k):
        ranked = sorted(range(vocabulary.size), key=lambda j: (-scores[c, j], str(vocabulary[j])))
        chosen: list[str] = []
        for j in ranked:
            if scores[c, j] <= 0 or len(chosen) == top:
                break
            term = str(vocabulary[j])
            # A pair adds nothing when its words are already there ("refund", "refund order").
            if not any(term in picked or picked in term for picked in chosen):
                chosen.append(term)
        names.append(chosen)
    return names


def trend(size: int, previous_size: int) -> float | None:
    """size / previous size; None when the cluster had nothing in the previous window (new)."""
    return None if previous_size == 0 else round(size / previous_size, 4)


def purity(labels: Sequence[int], truth: Sequence[str]) -> float:
    """Share of items whose cluster's most common true label is their own (1.0: every cluster pure)."""
    by_cluster: dict[int, dict[str, int]] = {}
    for label, true in zip(labels, truth, strict=True):
        counts = by_cluster.setdefault(int(label), {})
        counts[true] = counts.get(true, 0) + 1
    total = sum(max(counts.values()) for counts in by_cluster.values())
    return total / len(truth) if truth else math.nan
