"""``otel-chatbot failures``: cluster the problem turns of a window and compare with the window before.

select (problem turns with a user message) → redact → embed both windows in one call → k-means →
name each cluster → count the previous window's messages per cluster → store the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from otel_chatbot.privacy import redact
from otel_chatbot.quality.cluster import (
    assign_to_clusters,
    characteristic_terms,
    closest_members,
    cluster_vectors,
    trend,
)
from otel_chatbot.quality.embed import Embedder, Progress
from otel_chatbot.quality.select import (
    DEFAULT_SCORE_THRESHOLD,
    REASONS,
    problem_condition,
    select_problem_turns,
)
from otel_chatbot.quality.window import TurnWindow

# What of a message is embedded and stored as representative: a pasted log or e-mail can be 100 KB,
# past an embeddings endpoint's input limit and useless on a dashboard; its start says what it is about.
MAX_MESSAGE_CHARS = 2000
MAX_CLUSTERS = 100


def clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


@dataclass(frozen=True)
class FailureOptions:
    window: TurnWindow
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    max_clusters: int = 15
    examples: int = 5
    seed: int = 0
    max_turns: int = 50_000
    store: bool = True
    reasons: tuple[str, ...] = REASONS

    def __post_init__(self) -> None:
        problem_condition(self.reasons)  # names a bad --reason
        for key, value, high in (("--max-clusters", self.max_clusters, MAX_CLUSTERS),
                                 ("--examples", self.examples, 100), ("--max-turns", self.max_turns, 10**6)):
            if not 1 <= value <= high:
                raise ValueError(f"{key}: expected a whole number from 1 to {high}, got {value}")
        if not 0 <= self.score_threshold <= 10:
            raise ValueError(f"--score-threshold: expected a judge score between 0 and 10, "
                             f"got {self.score_threshold}")


@dataclass(frozen=True)
class FailureCluster:
    cluster_id: int
    label: str
    terms: tuple[str, ...]
    representative_turn_id: str
    representative_message: str
    size: int
    share: float
    previous_size: int
    trend: float | None
    example_turn_ids: tuple[str, ...]
    member_turn_ids: tuple[str, ...] = field(repr=False)


@dataclass(frozen=True)
class FailureReport:
    window: TurnWindow
    embedder: str
    problem_turns: int
    previous_problem_turns: int
    clusters: tuple[FailureCluster, ...]
    silhouette: float | None
    run_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        previous = self.window.previous()
        return {
            "run_id": self.run_id,
            "window": {"since": _iso(self.window.since), "until": _iso(self.window.until),
                       "services": list(self.window.services), "sources": list(self.window.sources)},
            "previous_window": {"since": _iso(previous.since), "until": _iso(previous.until)},
            "embedder": self.embedder,
            "problem_turns": self.problem_turns,
            "previous_problem_turns": self.previous_problem_turns,
            "silhouette": None if self.silhouette is None else round(self.silhouette, 4),
            "clusters": [{
                "cluster_id": c.cluster_id, "label": c.label, "terms": list(c.terms),
                "representative_turn_id": c.representative_turn_id,
                "representative_message": c.representative_message, "size": c.size,
                "share": c.share, "previous_size": c.previous_size, "trend": c.trend,
                "example_turn_ids": list(c.example_turn_ids),
            } for c in self.clusters],
        }


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def find_failure_clusters(conn: psycopg.Connection[Any], embedder: Embedder, options: FailureOptions,
                          progress: Progress) -> FailureReport:
    """Cluster the window's problem turns; stores the run unless ``options.store`` is off."""
    window = options.window
    current = select_problem_turns(conn, window, score_threshold=options.score_threshold,
                                   require_message=True, limit=options.max_turns, reasons=options.reasons)
    previous = select_problem_turns(conn, window.previous(), score_threshold=options.score_threshold,
                                    require_message=True, limit=options.max_turns, reasons=options.reasons)
    progress(f"{len(current)} problem turns with a user message in the window, {len(previous)} in the "
             f"previous one")
    if len(current) == options.max_turns:
        progress(f"kept the latest {options.max_turns} problem turns (--max-turns)")
    if not current:
        return FailureReport(window, embedder.name, 0, len(previous), (), None)

    # Messages leave the database redacted: they may go to an embeddings endpoint and end up on a dashboard.
    texts = [clip(redact(turn.user_message or "")) for turn in current]
    previous_texts = [clip(redact(turn.user_message or "")) for turn in previous]
    vectors_all = embedder.embed(texts + previous_texts, progress)
    vectors, previous_vectors = vectors_all[:len(texts)], vectors_all[len(texts):]

    progress(f"clustering {len(texts)} messages (k-means, k = 2..{options.max_clusters} by silhouette)")
    clustering = cluster_vectors(vectors, max_clusters=options.max_clusters, seed=options.seed)
    silhouette = "" if clustering.silhouette is None else f" (silhouette {clustering.silhouette:.3f})"
    progress(f"{clustering.k} clusters{silhouette}")
    terms = characteristic_terms(texts, clustering.labels, clustering.k)
    previous_sizes = assign_to_clusters(vectors, clustering, previous_vectors)

    clusters: list[FailureCluster] = []
    for c in range(clustering.k):
        size = int((clustering.labels == c).sum())
        central = closest_members(vectors, clustering, c, size)
        clusters.append(FailureCluster(
            cluster_id=c + 1, label=", ".join(terms[c]) or texts[central[0]][:60], terms=tuple(terms[c]),
            representative_turn_id=current[central[0]].turn_id, representative_message=texts[central[0]],
            size=size, share=round(size / len(current), 4), previous_size=previous_sizes[c],
            trend=trend(size, previous_sizes[c]),
            example_turn_ids=tuple(current[i].turn_id for i in central[:options.examples]),
            member_turn_ids=tuple(current[i].turn_id for i in central)))
    report = FailureReport(window, embedder.name, len(current), len(previous), tuple(clusters),
                           clustering.silhouette)
    if options.store:
        from otel_chatbot.quality.cluster_store import save_run

        run_id = save_run(conn, report)
        progress(f"stored as failure cluster run {run_id}")
        report = FailureReport(report.window, report.embedder, report.problem_turns,
                               report.previous_problem_turns, report.clusters, report.silhouette, run_id)
    return report
