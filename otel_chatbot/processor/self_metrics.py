"""The processor's own metrics (``otel_chatbot_*``): receivers, queue, writes, database, judge,
pending feedback and outcomes, the rollup job. Plain prometheus_client metrics, each label set created
at 0 at start so that ``increase()`` sees a first burst; the chat metrics are processor/metrics.py's.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from otel_chatbot.errors import (
    CommitTimeout,
    InternalError,
    PermanentError,
    QueueFull,
    RetryableError,
    Unavailable,
)

WRITE_DURATION_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WRITE_BATCH_BUCKETS: Final = (1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000)

# The self-metrics' label values (receivers and pipeline refusals), created at 0 at start.
TRANSPORTS: Final = ("http", "grpc")
REFUSAL_REASONS: Final = tuple(error.reason for error in (
    RetryableError, QueueFull, Unavailable, CommitTimeout, PermanentError, InternalError))

FEEDBACK_EXPIRY_REASONS: Final = ("age", "cap")


class SelfMetrics:
    """The processor's health and work counters, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self._accepted = Counter("otel_chatbot_spans_accepted_total",
                                 "Spans accepted (committed) by a receiver.", ["transport"], registry=r)
        self._refused = Counter("otel_chatbot_spans_refused_total",
                                "Spans refused, by transport and reason.", ["transport", "reason"],
                                registry=r)
        # livesum: with worker processes (serve --workers) the queues of the running workers add up.
        self._queue = Gauge("otel_chatbot_queue_spans", "Spans waiting for the writer.", registry=r,
                            multiprocess_mode="livesum")
        self._write = Histogram("otel_chatbot_write_duration_seconds", "Duration of one database write.",
                                buckets=WRITE_DURATION_BUCKETS, registry=r)
        self._write_batch = Histogram("otel_chatbot_write_batch_spans", "Spans per database write.",
                                      buckets=WRITE_BATCH_BUCKETS, registry=r)
        self._db_errors = Counter("otel_chatbot_database_errors_total",
                                  "Failed database writes or connections.", registry=r)
        self._committed = Counter("otel_chatbot_spans_committed_total",
                                  "Spans stored for the first time.", registry=r)
        self._duplicates = Counter("otel_chatbot_spans_duplicate_total",
                                   "Spans received again (Collector retries), not stored twice.", registry=r)
        self._out_of_range = Counter(
            "otel_chatbot_spans_out_of_range_total",
            "Spans whose start lies outside the daily partition window (today - 31 days .. tomorrow), "
            "stored in the default partition.", registry=r)
        self._judge_dropped = Counter("otel_chatbot_judge_dropped_total",
                                      "Turns sampled for the online judge but dropped: its queue was full.",
                                      registry=r)
        self._judge_failed = Counter("otel_chatbot_judge_failures_total",
                                     "Turns the online judge could not score (endpoint errors, invalid "
                                     "answers, database errors).", registry=r)
        self._feedback_pending = Counter(
            "otel_chatbot_feedback_pending_total",
            "Feedback events that arrived before their turn and wait for it (pending_feedback).", registry=r)
        self._feedback_expired = Counter(
            "otel_chatbot_feedback_expired_total",
            "Pending feedback dropped: its turn did not arrive in time (age) or the table was full (cap).",
            ["reason"], registry=r)
        self._outcomes_pending = Counter(
            "otel_chatbot_outcomes_pending_total",
            "Outcomes that named a turn not stored yet: kept, counted when the turn arrives.", registry=r)
        self._outcomes_expired = Counter(
            "otel_chatbot_outcomes_expired_total",
            "Pending outcomes dropped: the turn they named did not arrive within pending_feedback_max_age.",
            registry=r)
        self._rollup_runs = Counter(
            "otel_chatbot_rollup_runs_total",
            "Runs of the rollup job (closed days rebuilt for the dashboards and stats), by result.",
            ["result"], registry=r)
        for reason in FEEDBACK_EXPIRY_REASONS:
            self._feedback_expired.labels(reason)
        for result in ("ok", "failed"):
            self._rollup_runs.labels(result)
        # Every label set exists at 0 from the start, so increase() sees a first burst of refusals.
        for transport in TRANSPORTS:
            self._accepted.labels(transport)
            for reason in REFUSAL_REASONS:
                self._refused.labels(transport, reason)

    def judge_dropped(self, n: int) -> None:
        self._judge_dropped.inc(n)

    def judge_failed(self) -> None:
        self._judge_failed.inc()

    def spans_accepted(self, n: int, transport: str) -> None:
        self._accepted.labels(transport).inc(n)

    def spans_refused(self, n: int, transport: str, reason: str) -> None:
        self._refused.labels(transport, reason).inc(n)

    def set_queue_depth(self, spans: int) -> None:
        self._queue.set(spans)

    def observe_write(self, seconds: float, spans: int) -> None:
        self._write.observe(seconds)
        self._write_batch.observe(spans)

    def database_error(self) -> None:
        self._db_errors.inc()

    def outcomes_expired(self, n: int) -> None:
        """``n`` pending outcomes deleted by the sweeper (their turn never arrived)."""
        self._outcomes_expired.inc(n)

    def rollup_run(self, ok: bool) -> None:
        """One run of the rollup job ended (``ok``: every changed closed day rebuilt)."""
        self._rollup_runs.labels("ok" if ok else "failed").inc()

    def feedback_expired(self, reason: str, n: int) -> None:
        """``n`` pending feedback events deleted by the sweeper (``reason``: age or cap)."""
        self._feedback_expired.labels(reason).inc(n)
