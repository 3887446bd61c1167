"""BatchWriter: one NormalisedBatch → one Postgres transaction → what was new (CommitResult).

write() in four round trips (daily partitions are created before, in their own transaction):
  1. Store the spans in the configured layout (store/span_storage.py) and learn which are new: rows
     (COPY into ``spans``; a retry's primary-key conflict sends the batch through a staging table and
     INSERT … ON CONFLICT DO NOTHING RETURNING) or blocks (store/block_storage.py: the advisory locks
     below are taken first, then the trace index says which spans are stored already).
  2. Pipelined: advisory locks on the slots of the touched trace/turn ids (sorted: no deadlock; already
     held in the blocks layout);
     add the new LLM spans' usage and the flags of this batch's spans to ``turn_parts`` (usage exactly
     once: only spans new in 1.; ``trace_usage`` is a view over it); probe the turns already stored
     for the traces of this batch's turns and parts; read the other parts the new turns need.
  3. COPY the turns of traces with none stored (the common case) straight into ``chat_turns`` with
     the usage and flags of their parts (store/parts.py). The others (rare) go to a staging table.
  4. Pipelined, with the COMMIT: the settle reminders of the turns COPYed in 3., merges (SDK turns
     displace auto turns; the first auto candidate in identity order gives identity), the refresh of
     stored turns from their parts, feedback (latest wins; feedback of a turn not stored yet waits in
     pending_feedback until the turn comes: store/pending_feedback.py), and with ``settle_seconds`` 0
     the settle.
If the direct turn COPY meets a key that exists after all, the batch is redone with every turn going
through the merge statements.

Turns reach the metrics through settle(): a turn is counted once no span of its trace has changed it
for ``settle_seconds`` (each change pushes its ``settle_at`` and leaves a reminder in
``unsettled_turns``, where the settle finds the due turns), so the latency histogram observes the
final row; a later change counts only flags not counted yet. ``settle_seconds`` 0 counts at commit.

Errors: connection trouble or a server that cannot take the write now → ``errors.Unavailable`` (the
Collector should retry; the next write() reconnects); data the database refuses →
``errors.PermanentError``; anything else is a bug and is raised as it is.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import orjson
import psycopg
from psycopg import errors

from otel_chatbot.errors import PermanentError, Unavailable
from otel_chatbot.records import CommitResult, NormalisedBatch, SpanRow, TurnRow
from otel_chatbot.store import merge_sql as q
from otel_chatbot.store import outcomes as outcome_step
from otel_chatbot.store import pending_feedback
from otel_chatbot.store import turn_sql as ts
from otel_chatbot.store.copyrows import (
    NEW_TURN_COLUMNS,
    TURN_COLUMNS,
    TurnEncoder,
    TurnParts,
    copy_cursor,
    copy_in,
    out_of_range_span,
)
from otel_chatbot.store.locks import lock_params, write_lock_ids
from otel_chatbot.store.params import text_array as _text_array
from otel_chatbot.store.partition_cache import PartitionCache
from otel_chatbot.store.partitions import DAY_NS, count_out_of_window
from otel_chatbot.store.parts import (
    PartDelta,
    PartKey,
    needed_parts,
    part_deltas,
    parts_json,
    stored_parts,
    turn_values,
)
from otel_chatbot.store.settle import add_settled
from otel_chatbot.store.span_storage import DEFAULT_LAYOUT
from otel_chatbot.store.span_storage import span_storage as _storage_of
from otel_chatbot.store.turnplan import (
    StoredTurns,
    fold_auto_turns,
    plan_turns,
    unique_sdk_turns,
)

_log = logging.getLogger(__name__)
# Turns counted per settle statement (a settle runs as many as are due). Small enough that the planner
# finds each row by its address rather than hashing the whole partition to join them back.
_SETTLE_LIMIT = 500
_CANCEL_TIMEOUT_S = 1.0


class BatchWriter:
    """Writes batches over one connection; not for concurrent use (use one writer per thread)."""

    def __init__(self, url: str, *, connect_timeout: float = 10.0, pending_feedback_max: int = 10_000,
                 settle_seconds: float = 0.0, statement_timeout: float = 0.0,
                 span_storage: str = DEFAULT_LAYOUT) -> None:
        if not settle_seconds >= 0:
            raise ValueError(f"settle_seconds: expected a number >= 0, got {settle_seconds!r}")
        # Postgres cancels a statement running longer (0: never); the write fails as Unavailable.
        self._statement_timeout_ms = int(statement_timeout * 1000)
        self._url = url
        self._pending_feedback_max = pending_feedback_max
        self._connect_timeout = connect_timeout
        self.settle_seconds = settle_seconds
        self._settle_us = int(settle_seconds * 1_000_000)
        self._conn: psycopg.Connection[Any] | None = None
        self._spans = _storage_of(span_storage)
        self._partitions = PartitionCache((*self._spans.tables, "chat_turns"))
        self._turn_encoder = TurnEncoder()
        self._lock = threading.Lock()
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and prepare (raises Unavailable when the database cannot be reached)."""
        with self._lock:
            self._closed = False
            self._connection()

    def cancel(self) -> None:
        """Cancel the statement in progress, from another thread (shutdown at its deadline): that
        write() fails with Unavailable and its transaction rolls back. A no-op when idle."""
        conn = self._conn
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                conn.cancel_safe(timeout=_CANCEL_TIMEOUT_S)

    def shutdown(self) -> None:
        self._closed = True
        # Never wait long for a write in progress (shutdown has a deadline): cancel() it first.
        if not self._lock.acquire(timeout=_CANCEL_TIMEOUT_S):
            _log.warning("writer busy at shutdown; leaving its connection to close with the process")
            return
        try:
            self._drop_connection()
        finally:
            self._lock.release()

    # --- writing -----------------------------------------------------------------------------------

    def write(self, batch: NormalisedBatch) -> CommitResult:
        with self._lock:
            if self._closed:
                raise Unavailable("the writer is shut down")
            conn = self._connection()
            try:
                result = self._write_retrying(conn, batch)
            except Exception as exc:
                mapped = self._classify(exc)
                if mapped is exc:
                    raise
                raise mapped from exc
            result.out_of_range_spans = count_out_of_window((s.start_ns for s in result.new_spans),
                                                            time.time_ns())
            return result

    def settle(self, until_ns: int | None = None) -> CommitResult:
        """Count the turns due by ``until_ns`` (default now): their first count or their new flags,
        and the sessions they show for the first time. Each turn is claimed by one writer only."""
        until_us = (time.time_ns() if until_ns is None else until_ns) // 1000
        with self._lock:
            if self._closed:
                raise Unavailable("the writer is shut down")
            conn = self._connection()
            result = CommitResult()
            try:
                while True:
                    params = {"until": until_us, "limit": _SETTLE_LIMIT}
                    rows = conn.execute(ts.SETTLE_TURNS, params).fetchall()
                    conn.commit()
                    if add_settled(rows, result) < _SETTLE_LIMIT:
                        return result
            except Exception as exc:
                mapped = self._classify(exc)
                if mapped is exc:
                    raise
                raise mapped from exc

    def _write_retrying(self, conn: psycopg.Connection[Any], batch: NormalisedBatch) -> CommitResult:
        direct, forgot = True, False
        while True:
            try:
                return self._write(conn, batch, direct=direct)
            except errors.UniqueViolation:
                # Only the direct COPY of new turns can raise it (the probe said they were new, yet a
                # key exists: e.g. an SDK turn id equal to another trace's id). Redo it the general way.
                if not direct:
                    raise
                self._rollback()
                direct = False
            except errors.CheckViolation as exc:
                # "no partition of relation … found for row": retention dropped a day we had cached.
                if "no partition" not in str(exc) or forgot:
                    raise
                self._rollback()
                self._forget_partitions()
                forgot = True

    def _write(self, conn: psycopg.Connection[Any], batch: NormalisedBatch, *, direct: bool) -> CommitResult:
        """One transaction. ``direct``: COPY turns of traces that have none stored straight into
        chat_turns (the common case); otherwise every turn goes through the merge statements."""
        work = _Work(batch, time.time_ns() // 1000 + self._settle_us)
        problem = out_of_range_span(batch.spans)
        if problem is not None:
            raise PermanentError(problem)
        self._ensure_partitions(conn, batch.spans, batch.turns)
        cur = copy_cursor(conn)
        locks = write_lock_ids(work.turns, batch)
        work.new_spans, work.locked = self._spans.store(conn, cur, batch.spans, locks)
        # Usage of the spans stored for the first time only: each span counts once.
        work.parts = part_deltas(work.new_spans, batch.flags, work.turns)
        probe = self._lock_and_probe(conn, work, direct=direct)
        self._copy_fresh_turns(cur, work, probe)
        if work.merge:
            payload = self._turn_encoder.encode([work.encoded[id(t)] for t in work.merge])
            copy_in(cur, q.TURN_STAGE, TURN_COLUMNS, payload)
        return self._merge_and_commit(conn, work)

    def _lock_and_probe(self, conn: psycopg.Connection[Any], work: _Work, *, direct: bool) -> _Probe:
        """Round trip 1: advisory locks, usage and parts of this batch, what is stored for its traces.
        The turns are encoded while the server runs these statements."""
        probe = _Probe()
        turns = work.turns
        turn_traces = {t.trace_id for t in turns}
        work.part_traces = {trace for trace, _ in work.parts}
        # The blocks layout took the locks before storing the spans.
        lock_ids = write_lock_ids(work.turns, work.batch, work.part_traces) if not work.locked else ()
        with conn.pipeline():
            if lock_ids:
                conn.execute(q.LOCK_IDS, lock_params(lock_ids))
            if work.parts:
                probe.upserted = conn.execute(ts.UPSERT_PARTS, (parts_json(work.parts),))
            if direct and (turns or work.part_traces):
                probe.stored = conn.execute(q.PROBE_TURNS, (_text_array(turn_traces | work.part_traces),))
                # The parts new turns read that this batch did not upsert (usually none).
                missing = sorted(needed_parts(turns) - work.parts.keys())
                if missing:
                    keys_json = orjson.dumps([{"t": t, "s": s} for t, s in missing]).decode()
                    probe.parts = conn.execute(ts.PARTS_OF_KEYS, (keys_json,))
            work.encoded = {id(p[0]): p for p in self._turn_encoder.turn_parts(turns)}
        return probe

    def _copy_fresh_turns(self, cur: psycopg.Cursor[Any], work: _Work, probe: _Probe) -> None:
        """COPY the turns of traces with none stored, with the values of their parts; the others are
        left to merge. Decides which stored turns are recomputed from their parts."""
        if probe.stored is None:
            work.merge = work.turns
            work.refresh = {t.trace_id for t in work.turns} | work.part_traces
            return
        stored: StoredTurns = {}
        for trace, turn_id, start_us, auto in probe.stored.fetchall():
            stored.setdefault(str(trace), []).append((str(turn_id), int(start_us), bool(auto)))
        work.fresh, work.merge, work.displaced = plan_turns(work.sdk_turns, work.auto_turns, stored)
        # Stored turns whose trace got parts, merges or a new SDK turn.
        work.refresh = stored.keys() | {t.trace_id for t in work.merge}
        if not work.fresh:
            return
        parts = stored_parts(r for c in (probe.upserted, probe.parts) if c is not None for r in c.fetchall())
        sdk_ids = {trace: {turn_id for turn_id, _, auto in rows if not auto}
                   for trace, rows in stored.items()}
        for t in work.sdk_turns:
            sdk_ids.setdefault(t.trace_id, set()).add(t.turn_id)
        values = {id(t): turn_values(t, parts.get(t.trace_id, {}), len(sdk_ids.get(t.trace_id, ())))
                  for t in work.fresh}
        payload = self._turn_encoder.encode([work.encoded[id(t)] for t in work.fresh], values, work.settle_us)
        copy_in(cur, "chat_turns", NEW_TURN_COLUMNS, payload)

    def _merge_and_commit(self, conn: psycopg.Connection[Any], work: _Work) -> CommitResult:
        """Round trip 2: the settle reminders of the fresh turns, the rare merges, displaced auto turns,
        refreshed turns, feedback, the settle when counting at commit, the commit."""
        merge, feedback = work.merge, work.batch.feedback
        sdk_traces = work.displaced | {t.trace_id for t in merge if not t.auto}
        settle_cur = None
        feedback_step = pending_feedback.FeedbackStep(self._pending_feedback_max)
        outcomes = outcome_step.OutcomeStep()
        with conn.pipeline():
            if work.fresh:  # the reminders of the turns COPYed above (the settle finds due turns by them)
                starts = "{" + ",".join([str(t.start_ns // 1000) for t in work.fresh]) + "}"
                conn.execute(ts.REMIND_FRESH_TURNS,
                             (work.settle_us, _text_array([t.turn_id for t in work.fresh]), starts))
            if any(not t.auto for t in merge):
                conn.execute(ts.INSERT_SDK_TURNS, (work.settle_us,))
            if sdk_traces:
                conn.execute(ts.DISPLACE_AUTO_TURNS, (_text_array(sdk_traces),))
            if any(t.auto for t in merge):
                conn.execute(ts.MERGE_AUTO_TURNS, {"settle": work.settle_us})
            if work.refresh:
                refresh = {"traces": _text_array(work.refresh), "settle": work.settle_us}
                conn.execute(ts.REFRESH_TURNS, refresh)
            # After the turns: attaches the feedback that waited for them.
            turn_ids = _text_array([t.turn_id for t in work.turns])
            feedback_step.send(conn, turn_ids, feedback)
            # After the turns: outcomes take their session, service and source.
            outcomes.send(conn, turn_ids, work.batch.outcomes, work.batch.turn_extras)
            if self._settle_us == 0 and (work.turns or work.refresh):
                settle_cur = conn.execute(ts.SETTLE_TURNS, {"until": work.settle_us, "limit": _SETTLE_LIMIT})
            conn.commit()  # in the same round trip; results stay readable on the cursors
        spans = work.batch.spans
        result = CommitResult(
            new_spans=work.new_spans, duplicate_spans=len(spans) - len(work.new_spans), span_count=len(spans))
        feedback_step.apply(result)
        if settle_cur is not None:
            add_settled(settle_cur.fetchall(), result)
        outcomes.apply(result)
        return result

    # --- partitions --------------------------------------------------------------------------------

    def _ensure_partitions(self, conn: psycopg.Connection[Any], spans: list[SpanRow],
                           turns: list[TurnRow]) -> None:
        days = {s.start_ns // DAY_NS for s in spans}  # once for every table of the layout
        for table in self._spans.tables:
            self._partitions.ensure_days(conn, table, days)
        self._partitions.ensure(conn, "chat_turns", (t.start_ns for t in turns))

    def _forget_partitions(self) -> None:
        self._partitions.forget()

    # --- connection --------------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self._drop_connection()
        try:
            conn = psycopg.connect(self._url, autocommit=False, application_name="otel-chatbot-writer",
                                   connect_timeout=max(1, int(self._connect_timeout)))
        except psycopg.Error as exc:
            raise Unavailable(f"cannot connect to the database: {exc}") from exc
        try:
            conn.execute(q.WRITER_SESSION)
            conn.execute(q.SET_STATEMENT_TIMEOUT, (f"{self._statement_timeout_ms}ms",))
            conn.execute(q.CREATE_STAGING)
            self._partitions.load(conn)
            conn.commit()
        except psycopg.Error as exc:
            conn.close()
            raise Unavailable(f"cannot prepare the writer connection: {exc}") from exc
        self._conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def _rollback(self) -> None:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            self._drop_connection()
            return
        try:
            conn.rollback()
        except psycopg.Error:
            self._drop_connection()

    def _classify(self, exc: Exception) -> Exception:
        """Roll back (never leave a failed transaction open) and map to the retryable/permanent split.
        Anything else (a Python exception, SQL the server cannot parse or plan) is a bug of ours and is
        returned unchanged: the pipeline reports it as an internal error, not as the client's fault."""
        self._rollback()
        if isinstance(exc, errors.ProgramLimitExceeded):
            # e.g. a key longer than an index row can hold: this data fails every time.
            return PermanentError(f"the database refused the batch: {exc}")
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | psycopg.InternalError):
            # Lost connection, shutdown, deadlock, serialization failure, disk full, read-only replica…
            return Unavailable(f"database unavailable: {exc}")
        if isinstance(exc, psycopg.DataError | psycopg.IntegrityError):
            return PermanentError(f"the database refused the batch: {exc}")
        return exc


class _Work:
    """One batch on its way through _write's steps."""

    def __init__(self, batch: NormalisedBatch, settle_us: int) -> None:
        self.batch = batch
        self.settle_us = settle_us  # settle_at of the turns this write changes (Unix µs)
        self.sdk_turns = unique_sdk_turns(batch.turns)
        self.auto_turns = fold_auto_turns(batch.turns)
        self.turns = self.sdk_turns + self.auto_turns
        self.new_spans: list[SpanRow] = []
        self.locked = False  # the span storage took the advisory locks (blocks layout)
        self.parts: dict[PartKey, PartDelta] = {}
        self.part_traces: set[str] = set()
        self.encoded: dict[int, TurnParts] = {}  # id(turn) -> its encoded columns
        self.fresh: list[TurnRow] = []  # turns COPYed as they are
        self.merge: list[TurnRow] = []  # turns for the merge statements
        self.displaced: set[str] = set()  # traces whose stored auto turn a new SDK turn replaces
        self.refresh: set[str] = set()  # traces whose stored turns are recomputed from their parts


class _Probe:
    """Cursors of round trip 1, read after its pipeline is synced."""

    def __init__(self) -> None:
        self.upserted: psycopg.Cursor[Any] | None = None  # this batch's parts after the upsert
        self.stored: psycopg.Cursor[Any] | None = None  # turns stored for the turn and part traces
        self.parts: psycopg.Cursor[Any] | None = None  # other parts the new turns read
