"""Failure clusters in Postgres: failure_cluster_runs, failure_clusters, failure_cluster_members."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg

if TYPE_CHECKING:
    from otel_chatbot.quality.failures import FailureReport


def save_run(conn: psycopg.Connection[Any], report: FailureReport) -> int:
    """Store one run with its clusters and members in one transaction; returns its run id."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "INSERT INTO failure_cluster_runs (window_start, window_end, embedder, problem_turns) "
            "VALUES (%s, %s, %s, %s) RETURNING run_id",
            (report.window.since, report.window.until, report.embedder, report.problem_turns))
        row = cur.fetchone()
        assert row is not None
        run_id = int(row[0])
        cur.executemany(
            "INSERT INTO failure_clusters (run_id, cluster_id, label, representative_turn_id, "
            "representative_message, size, share, previous_size, trend, example_turn_ids) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [(run_id, c.cluster_id, c.label, c.representative_turn_id, c.representative_message, c.size,
              c.share, c.previous_size, c.trend, list(c.example_turn_ids)) for c in report.clusters])
        with cur.copy("COPY failure_cluster_members (run_id, cluster_id, turn_id) FROM STDIN") as copy:
            for c in report.clusters:
                for turn_id in c.member_turn_ids:
                    copy.write_row((run_id, c.cluster_id, turn_id))
    return run_id


@dataclass(frozen=True)
class StoredCluster:
    run_id: int
    cluster_id: int
    label: str
    representative_message: str | None
    size: int
    member_turn_ids: tuple[str, ...]


def latest_run_clusters(conn: psycopg.Connection[Any]) -> list[StoredCluster]:
    """The clusters of the most recent run (by creation, then id), largest first; [] when none."""
    rows = conn.execute(
        "WITH latest AS (SELECT run_id FROM failure_cluster_runs ORDER BY created_at DESC, run_id DESC "
        "LIMIT 1) "
        "SELECT c.run_id, c.cluster_id, c.label, c.representative_message, c.size, "
        "       coalesce(array_agg(m.turn_id ORDER BY m.turn_id) FILTER (WHERE m.turn_id IS NOT NULL), '{}') "
        "FROM failure_clusters c JOIN latest USING (run_id) "
        "LEFT JOIN failure_cluster_members m ON m.run_id = c.run_id AND m.cluster_id = c.cluster_id "
        "GROUP BY c.run_id, c.cluster_id ORDER BY c.cluster_id").fetchall()
    return [StoredCluster(int(r[0]), int(r[1]), str(r[2]), r[3], int(r[4]), tuple(r[5])) for r in rows]
