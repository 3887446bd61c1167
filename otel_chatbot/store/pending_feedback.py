"""Feedback that arrives before its turn: park it, attach it when the turn is stored, expire it.

A chat widget posts a rating right after showing the reply, while the app's exporter may hold the
turn's span for seconds. Such feedback waits in ``pending_feedback`` (migration 0005) and moves to
``feedback`` in the transaction that stores its turn; only then is it counted in
``chatbot_feedback_total``, under the turn's service. The writer runs :class:`FeedbackStep` inside its
transaction, holding the advisory locks of the batch's turn ids and feedback turn ids, so a rating and
its turn committed at the same moment by two writers (or two replicas) meet in exactly one of them.
:class:`PendingFeedbackSweeper` deletes what waited longer than the age limit; the count limit is kept
by the writer as it parks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import psycopg

from otel_chatbot.records import CommitResult, FeedbackRow, TurnRow
from otel_chatbot.store.copyrows import feedback_json
from otel_chatbot.store.turnplan import pick_feedback

_log = logging.getLogger(__name__)

AGE, CAP = "age", "cap"  # the reasons of otel_chatbot_feedback_expired_total

# The service a turn is stored under (an SDK turn before an auto turn of the same id).
_TURN_SERVICE = """JOIN LATERAL (
        SELECT c.service FROM chat_turns c WHERE c.turn_id = {0}.turn_id
        ORDER BY c.auto, c.started_at LIMIT 1) t ON true"""

# Upsert into feedback (latest given_at wins) from the relation ``ready`` (feedback columns, with the
# turn's service); selects the turns whose stored rating changed, which is what the counter counts.
_UPSERT_READY = """, prior AS (
    SELECT f.turn_id, f.rating FROM feedback f JOIN ready USING (turn_id)
), upserted AS (
    INSERT INTO feedback AS f (turn_id, rating, comment, origin, given_at, service)
    SELECT turn_id, rating, comment, origin, given_at, service FROM ready ORDER BY turn_id
    ON CONFLICT (turn_id) DO UPDATE
    SET rating = excluded.rating, comment = excluded.comment, origin = excluded.origin,
        given_at = excluded.given_at, service = excluded.service
    WHERE excluded.given_at > f.given_at
    RETURNING f.turn_id, f.rating, f.comment, f.origin, f.given_at, f.service
), changed AS (
    SELECT u.* FROM upserted u LEFT JOIN prior p USING (turn_id) WHERE p.rating IS DISTINCT FROM u.rating
)"""

# A batch's feedback events, json [{turn_id, rating, comment, origin, given_us, service}, …]: events of
# stored turns go to feedback, the others are parked. Rows: (turn_id, turn service, parked).
STORE_FEEDBACK = """
WITH incoming AS (
    SELECT DISTINCT ON (turn_id) turn_id, rating, comment, origin,
           timestamptz 'epoch' + given_us * interval '1 microsecond' AS given_at, service
    FROM json_to_recordset(%s::json)
         AS e(turn_id text, rating text, comment text, origin text, given_us bigint, service text)
    ORDER BY turn_id, given_at DESC
), ready AS (
    SELECT i.turn_id, i.rating, i.comment, i.origin, i.given_at, t.service
    FROM incoming i """ + _TURN_SERVICE.format("i") + """
), parked AS (
    INSERT INTO pending_feedback AS p (turn_id, rating, comment, origin, given_at, service)
    SELECT i.turn_id, i.rating, i.comment, i.origin, i.given_at, i.service FROM incoming i
    WHERE NOT EXISTS (SELECT 1 FROM ready r WHERE r.turn_id = i.turn_id)
    ORDER BY i.turn_id
    ON CONFLICT (turn_id) DO UPDATE
    SET rating = excluded.rating, comment = excluded.comment, origin = excluded.origin,
        given_at = excluded.given_at, service = COALESCE(excluded.service, p.service)
    WHERE excluded.given_at > p.given_at
    RETURNING p.turn_id
)""" + _UPSERT_READY + """
SELECT turn_id, service, false FROM changed
UNION ALL
SELECT turn_id, NULL, true FROM parked"""

# Pending feedback of turns that are stored now (this transaction's or earlier ones): text[] of turn
# ids. Rows: the feedback events that changed a turn's rating, with the turn's service.
ATTACH_PENDING = """
WITH moved AS (
    DELETE FROM pending_feedback p
    WHERE p.turn_id = ANY(%s::text[]) AND EXISTS (SELECT 1 FROM chat_turns c WHERE c.turn_id = p.turn_id)
    RETURNING p.turn_id, p.rating, p.comment, p.origin, p.given_at
), ready AS (
    SELECT m.turn_id, m.rating, m.comment, m.origin, m.given_at, t.service
    FROM moved m """ + _TURN_SERVICE.format("m") + """
)""" + _UPSERT_READY + """
SELECT turn_id, rating, comment, origin, (extract(epoch FROM given_at) * 1000000)::bigint, service
FROM changed"""

# Keep at most %s pending rows: the oldest beyond go (counted as expired, reason "cap").
EXPIRE_OVER_CAP = """
DELETE FROM pending_feedback WHERE turn_id IN (
    SELECT turn_id FROM pending_feedback ORDER BY received_at DESC, turn_id DESC OFFSET %s)
RETURNING turn_id"""

# Rows that waited longer than %s seconds (reason "age").
EXPIRE_OLD = """
DELETE FROM pending_feedback WHERE received_at < now() - %s * interval '1 second' RETURNING turn_id"""


def lock_ids(turns: Iterable[TurnRow]) -> list[str]:
    """The turn ids the writer must lock besides trace ids: attaching reads and deletes by turn id."""
    return [t.turn_id for t in turns]


class FeedbackStep:
    """The writer's feedback work in its last pipelined round trip: ``send`` queues the statements
    (after the turns are written), ``apply`` reads their results into the CommitResult."""

    def __init__(self, max_pending: int) -> None:
        self._max_pending = max_pending
        self._attach: psycopg.Cursor[Any] | None = None
        self._store: psycopg.Cursor[Any] | None = None
        self._cap: psycopg.Cursor[Any] | None = None
        self._feedback: list[FeedbackRow] = []

    def send(self, conn: psycopg.Connection[Any], turn_ids: str | list[str],
             feedback: list[FeedbackRow]) -> None:
        """``turn_ids``: the batch's turn ids as a text[] literal (cheaper to send than a list) or list."""
        self._feedback = feedback
        if turn_ids and turn_ids != "{}":
            self._attach = conn.execute(ATTACH_PENDING, (turn_ids,))
        if feedback:
            self._store = conn.execute(STORE_FEEDBACK, (feedback_json(feedback),))
            self._cap = conn.execute(EXPIRE_OVER_CAP, (self._max_pending,))

    def apply(self, result: CommitResult) -> None:
        attached = [FeedbackRow(str(turn_id), str(rating), None if comment is None else str(comment),
                                str(origin), int(given_us) * 1000, str(service))
                    for turn_id, rating, comment, origin, given_us, service in self._fetch(self._attach)]
        services: dict[str, str] = {}
        for turn_id, service, parked in self._fetch(self._store):
            if parked:
                result.parked_feedback += 1
            else:
                services[str(turn_id)] = str(service)
        result.expired_feedback += len(self._fetch(self._cap))
        result.new_feedback = attached + [replace(row, service=services[row.turn_id])
                                          for row in pick_feedback(self._feedback, list(services))]

    @staticmethod
    def _fetch(cur: psycopg.Cursor[Any] | None) -> list[tuple[Any, ...]]:
        return cur.fetchall() if cur is not None else []


Connect = Callable[[], Any]  # a context manager yielding an autocommit psycopg connection
OnExpired = Callable[[str, int], None]  # (reason, count)


# Outcomes that named a turn not stored yet and waited longer than %s seconds since they happened:
# their turn will not come (same age limit as feedback).
EXPIRE_OLD_OUTCOMES = """
DELETE FROM outcomes WHERE pending AND recorded_at < now() - %s * interval '1 second' RETURNING id"""


class PendingFeedbackSweeper:
    """Deletes pending feedback (and pending outcomes) older than ``max_age_s`` every ``interval_s``
    and reports the counts (outcomes to ``on_outcomes_expired``).

    Several replicas may sweep one database: a DELETE … RETURNING hands each row to one of them.
    """

    def __init__(self, connect: Connect, *, max_age_s: float, max_rows: int, interval_s: float,
                 on_expired: OnExpired, on_outcomes_expired: Callable[[int], None] | None = None) -> None:
        self._connect = connect
        self._on_outcomes_expired = on_outcomes_expired
        self._max_age_s = max_age_s
        self._max_rows = max_rows
        self._interval_s = interval_s
        self._on_expired = on_expired
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="otel-chatbot-pending-feedback", daemon=True)
        self._thread.start()

    def shutdown(self, timeout: float = 10.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout)

    def sweep(self) -> dict[str, int]:
        """One pass: expire by age, then by count. Returns {reason: rows deleted}."""
        with self._connect() as conn:
            old = len(conn.execute(EXPIRE_OLD, (self._max_age_s,)).fetchall())
            over = len(conn.execute(EXPIRE_OVER_CAP, (self._max_rows,)).fetchall())
            outcomes = len(conn.execute(EXPIRE_OLD_OUTCOMES, (self._max_age_s,)).fetchall())
        if outcomes and self._on_outcomes_expired is not None:
            self._on_outcomes_expired(outcomes)
        counts = {AGE: old, CAP: over}
        for reason, n in counts.items():
            if n:
                self._on_expired(reason, n)
        return counts

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.sweep()
            except Exception as exc:  # the database is down: try again next round
                _log.warning("pending feedback sweep failed: %s", exc)
