"""Pure parts of the failure clustering: windows, k choice, names, previous-window matching, reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from otel_chatbot.quality.cluster import (
    Clustering,
    assign_to_clusters,
    characteristic_terms,
    closest_members,
    cluster_vectors,
    purity,
    trend,
)
from otel_chatbot.quality.cluster_report import render
from otel_chatbot.quality.embed import TfidfEmbedder, normalise_rows
from otel_chatbot.quality.failures import FailureCluster, FailureReport
from otel_chatbot.quality.window import TurnWindow, WindowError, parse_time, window_from_options

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("30m", NOW - timedelta(minutes=30)), ("24h", NOW - timedelta(hours=24)), ("7d", NOW - timedelta(days=7)),
    ("2w", NOW - timedelta(weeks=2)), ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
    ("2026-11-01T08:00Z", datetime(2026, 11, 1, 8, tzinfo=UTC)),
    ("2026-11-01T10:00+02:00", datetime(2026, 11, 1, 8, tzinfo=UTC)),
])
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time("--since", text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "7 days", "-3d", "2026-02-30", ""])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(WindowError, match=r"^--since: expected a duration like 7d or 24h, or an ISO "):
        parse_time("--since", text, NOW)


def test_window_defaults_and_previous() -> None:
    window = window_from_options(None, None, ["bot"], None, default_days=7, now=NOW)
    assert (window.since, window.until, window.services) == (NOW - timedelta(days=7), NOW, ("bot",))
    previous = window.previous()
    assert (previous.since, previous.until, previous.services) == (NOW - timedelta(days=14),
                                                                   NOW - timedelta(days=7), ("bot",))
    with pytest.raises(WindowError, match="is not before --until"):
        window_from_options("1h", "2h", None, None, default_days=7, now=NOW)


def _blobs(sizes: list[int], seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Tight groups around orthogonal directions (true group per row)."""
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    for group, size in enumerate(sizes):
        centre = np.zeros(16)
        centre[group] = 1.0
        rows.append(centre + rng.normal(0, 0.05, (size, 16)))
        truth += [group] * size
    return normalise_rows(np.vstack(rows)), truth


def test_cluster_vectors_finds_the_groups_largest_first() -> None:
    vectors, truth = _blobs([5, 12, 8])
    clustering = cluster_vectors(vectors, max_clusters=8, seed=0)
    assert clustering.k == 3 and clustering.silhouette is not None and clustering.silhouette > 0.8
    assert [int((clustering.labels == c).sum()) for c in range(3)] == [12, 8, 5]
    assert purity(clustering.labels.tolist(), [str(t) for t in truth]) == 1.0
    assert np.allclose(np.linalg.norm(clustering.centroids, axis=1), 1.0)
    again = cluster_vectors(vectors, max_clusters=8, seed=0)
    assert again.labels.tolist() == clustering.labels.tolist()  # deterministic for a seed


def test_large_sets_use_mini_batches_and_still_find_the_groups() -> None:
    vectors, truth = _blobs([3000, 2000, 1000])  # 6,000 points: past the mini-batch threshold
    clustering = cluster_vectors(vectors, max_clusters=4, seed=0)
    assert clustering.k == 3
    assert [int((clustering.labels == c).sum()) for c in range(3)] == [3000, 2000, 1000]
    assert purity(clustering.labels.tolist(), [str(t) for t in truth]) == 1.0


@pytest.mark.parametrize(("count", "max_clusters"), [(1, 10), (2, 10), (6, 1)])
def test_cluster_vectors_one_cluster_when_k_cannot_be_chosen(count: int, max_clusters: int) -> None:
    vectors, _ = _blobs([count])
    clustering = cluster_vectors(vectors, max_clusters=max_clusters)
    assert clustering.k == 1 and clustering.silhouette is None and clustering.labels.tolist() == [0] * count


def test_identical_vectors_make_one_cluster() -> None:
    vectors = normalise_rows(np.ones((5, 4)))
    assert cluster_vectors(vectors, max_clusters=4).k == 1


def test_closest_members_and_previous_window_assignment() -> None:
    vectors = normalise_rows(np.array([[1, 0.1, 0], [1, 0, 0], [1, -0.3, 0], [0, 1, 0.05], [0, 1, -0.05]]))
    clustering = Clustering(np.array([0, 0, 0, 1, 1], dtype=np.intp),
                            normalise_rows(np.array([[1, -0.0667, 0], [0, 1, 0]])), 0.5)
    assert closest_members(vectors, clustering, 0, 3) == [1, 0, 2]
    assert closest_members(vectors, clustering, 1, 1) == [3]
    others = normalise_rows(np.array([
        [1, 0.05, 0],     # well inside cluster 0
        [1, -0.3, 0],     # a repeat of cluster 0's farthest member: still inside
        [1, 1, 0],        # between both, inside neither
        [0, 0, 1],        # elsewhere
        [0, 1, 0.05],     # a repeat of a cluster-1 member
    ]))
    assert assign_to_clusters(vectors, clustering, others) == [2, 1]
    assert assign_to_clusters(vectors, clustering, np.zeros((0, 3), dtype=np.float32)) == [0, 0]


def test_characteristic_terms_prefer_words_of_one_cluster() -> None:
    texts = ["refund my order", "where is my refund", "refund money back order",
             "reset my password", "password reset link", "forgot password order"]
    labels = np.array([0, 0, 0, 1, 1, 1], dtype=np.intp)
    terms = characteristic_terms(texts, labels, 2, top=2)
    assert terms[0][0] == "refund" and terms[1][0] == "password"
    assert "order" not in terms[0][:1]
    assert characteristic_terms(["the a", "of it"], np.array([0, 1], dtype=np.intp), 2) == [[], []]


def test_trend_and_purity() -> None:
    assert trend(6, 3) == 2.0 and trend(1, 3) == 0.3333 and trend(4, 0) is None
    assert purity([0, 0, 1, 1], ["a", "a", "b", "a"]) == 0.75


def test_tfidf_embedder_is_normalised_and_handles_stop_words_only() -> None:
    vectors = TfidfEmbedder().embed(["refund my order", "reset my password", "refund please"], lambda _: None)
    assert vectors.shape[0] == 3 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert float(vectors[0] @ vectors[2]) > float(vectors[0] @ vectors[1])
    assert TfidfEmbedder().embed(["the", "a"], lambda _: None).tolist() == [[0.0], [0.0]]


def _report() -> FailureReport:
    window = TurnWindow(datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC))
    clusters = (
        FailureCluster(1, "refund, money", ("refund", "money"), "t1", "where is my | refund", 3, 0.75, 1, 3.0,
                       ("t1", "t2", "t3"), ("t1", "t2", "t3")),
        FailureCluster(2, "password", ("password",), "t4", "forgot password", 1, 0.25, 0, None, ("t4",),
                       ("t4",)),
    )
    return FailureReport(window, "tfidf", 4, 1, clusters, 0.42, run_id=7)


def test_render_json_markdown_table() -> None:
    data = json.loads(render(_report(), "json"))
    assert data["window"] == {"since": "2026-11-23T00:00:00Z", "until": "2026-11-30T00:00:00Z",
                              "services": [], "sources": []}
    assert data["previous_window"] == {"since": "2026-11-16T00:00:00Z", "until": "2026-11-23T00:00:00Z"}
    assert (data["run_id"], data["problem_turns"], data["silhouette"]) == (7, 4, 0.42)
    assert data["clusters"][1] == {
        "cluster_id": 2, "label": "password", "terms": ["password"], "representative_turn_id": "t4",
        "representative_message": "forgot password", "size": 1, "share": 0.25, "previous_size": 0,
        "trend": None, "example_turn_ids": ["t4"]}
    markdown = render(_report(), "markdown").splitlines()
    assert markdown[6] == ("| 1 | 3 | 75.0% | x3.00 (1) | refund, money | where is my \\| refund | "
                           "`t1`, `t2`, `t3` |")
    table = render(_report(), "table").splitlines()
    assert table[0] == ("4 problem turns from 2026-11-23T00:00:00Z to 2026-11-30T00:00:00Z (1 in the "
                        "previous window), 2 clusters, embedder tfidf, run 7")
    assert table[4].split() == ["2", "1", "25.0%", "new", "password", "forgot", "password", "t4"]
    with pytest.raises(ValueError, match="--format: expected one of table, json, markdown"):
        render(_report(), "xml")
