"""BatchWriter: one NormalisedBatch → one Postgres transaction → what was new (CommitResult).

write() in four round trips (daily partitions are created before, in their own transaction):
  1. COPY the spans straight into ``spans``. If some were already stored (a Collector retry), that
     COPY fails on the primary key: roll back, COPY into a TEMP staging table, then
     INSERT … ON CONFLICT DO NOTHING RETURNING to learn which spans are new.
  2. Pipelined: advisory locks on the touched trace/turn ids (sorted: no deadlock between writers);
     add the new LLM spans' usage to ``trace_usage`` (exactly once: only spans new in 1.); probe the
     turns already stored for the traces of this batch's turns.
  3. COPY the turns of traces with none stored (the common case) straight into ``chat_turns`` with
     their trace's usage. The others (rare) go to a staging table for the merge statements.
  4. Pipelined, with the COMMIT: merges (SDK turns suppress auto turns; an earlier auto candidate
     replaces a later one), usage of turns stored by earlier batches, feedback (latest wins), sessions.
If the direct turn COPY meets a key that exists after all, the batch is redone with every turn going
through the merge statements. Errors: connection trouble or a server that cannot take the write now →
WriteUnavailable (the Collector should retry; the next write() reconnects); data the database refuses
→ WriteRejected.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import zlib
from collections.abc import Collection, Iterable
from dataclasses import replace
from typing import Any

import orjson
import psycopg
from psycopg import errors

from otel_chatbot.processor.model import CommitResult, FeedbackRow, NormalisedBatch, SpanRow, TurnRow
from otel_chatbot.store import merge_sql as q
from otel_chatbot.store.copyrows import (
    NEW_TURN_COLUMNS,
    TURN_COLUMNS,
    TurnEncoder,
    TurnUsage,
    copy_cursor,
    copy_in,
    copy_spans,
    encode_turns,
    feedback_json,
    out_of_range_span,
    usage_json,
    usage_of,
)
from otel_chatbot.store.partitions import DAY_NS, create_partitions, day_of_ns, list_partitions

_log = logging.getLogger(__name__)
_LOCK_CLASS = 0x6F746964  # advisory lock namespace of trace/turn ids ("otid")
_SESSION_CACHE = 100_000


class WriteUnavailable(Exception):
    """Retryable: the database is unreachable or cannot take the write right now."""


class WriteRejected(Exception):
    """Permanent: the database refused this batch's data; retrying the same batch will fail again."""


def _lock_key(value: str) -> int:
    return zlib.crc32(value.encode()) - 0x8000_0000  # fits int4


class BatchWriter:
    """Writes batches over one connection; not for concurrent use (use one writer per thread)."""

    def __init__(self, url: str, *, connect_timeout: float = 10.0) -> None:
        self._url = url
        self._connect_timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._known_days: dict[str, set[int]] = {"spans": set(), "chat_turns": set()}
        self._known_sessions: dict[tuple[str, str], None] = {}
        self._turn_encoder = TurnEncoder()
        self._lock = threading.Lock()
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and prepare (raises WriteUnavailable when the database cannot be reached)."""
        with self._lock:
            self._closed = False
            self._connection()

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            self._drop_connection()

    # --- writing -----------------------------------------------------------------------------------

    def write(self, batch: NormalisedBatch) -> CommitResult:
        with self._lock:
            if self._closed:
                raise WriteUnavailable("the writer is shut down")
            conn = self._connection()
            try:
                return self._write_retrying(conn, batch)
            except Exception as exc:
                raise self._classify(exc) from exc

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
        spans, feedback = batch.spans, batch.feedback
        sdk_turns = _unique_sdk_turns(batch.turns)
        auto_turns = fold_auto_turns(batch.turns)
        turns = sdk_turns + auto_turns
        result = CommitResult(span_count=len(spans))
        problem = out_of_range_span(spans)
        if problem is not None:
            raise WriteRejected(problem)
        self._ensure_partitions(conn, spans, batch.turns)
        cur = copy_cursor(conn)
        new_spans = self._copy_spans(conn, cur, spans)
        result.new_spans = new_spans
        result.duplicate_spans = len(spans) - len(new_spans)
        # Usage deltas of the spans stored for the first time only: trace_usage counts each span once.
        usage = usage_of(new_spans)
        turn_traces = {t.trace_id for t in turns}
        lock_ids = turn_traces.union(usage, [f.turn_id for f in feedback])
        sessions = _unknown_sessions(turns, self._known_sessions)

        # Round trip 1: locks, usage, and what is stored for the traces of this batch's turns.
        probe_cur = upsert_cur = usage_cur = None
        with conn.pipeline():
            if lock_ids:
                keys = sorted({_lock_key(i) for i in lock_ids})
                conn.execute(q.LOCK_IDS, (_LOCK_CLASS, "{" + ",".join(map(str, keys)) + "}"))
            if usage:
                upsert_cur = conn.execute(q.UPSERT_USAGE, (usage_json(usage),))
            if turns and direct:
                probe_cur = conn.execute(q.PROBE_TURNS, (_text_array(turn_traces),))
                if not turn_traces.issubset(usage):
                    usage_cur = conn.execute(q.USAGE_OF_TRACES, (_text_array(turn_traces - usage.keys()),))
            # Sent already: encode the turns while the server runs these statements.
            parts = {id(p[0]): p for p in self._turn_encoder.turn_parts(turns)}

        if probe_cur is not None:
            stored: StoredTurns = {}
            for trace, turn_id, start_us, auto in probe_cur.fetchall():
                stored.setdefault(str(trace), []).append((str(turn_id), int(start_us), bool(auto)))
            totals: dict[str, TurnUsage] = {
                str(r[0]): (int(r[1]), int(r[2]), float(r[3]), _opt_str(r[4]))
                for c in (upsert_cur, usage_cur) if c is not None for r in c.fetchall()}
            fresh, merge, displaced = plan_turns(sdk_turns, auto_turns, stored)
            if fresh:
                payload = encode_turns([parts[id(t)] for t in fresh], totals)
                copy_in(cur, "chat_turns", NEW_TURN_COLUMNS, payload)
            # Every turn of these traces was just written with the trace's usage.
            usage_update = usage.keys() - ({t.trace_id for t in fresh} - stored.keys())
        else:
            fresh, merge, displaced, usage_update = [], turns, set(), set(usage)
        if merge:
            copy_in(cur, q.TURN_STAGE, TURN_COLUMNS, encode_turns([parts[id(t)] for t in merge]))

        # Round trip 2: the rare merges, usage of turns stored earlier, feedback, sessions, commit.
        sdk_cur = auto_cur = feedback_cur = session_cur = None
        with conn.pipeline():
            if displaced:
                conn.execute(q.DELETE_AUTO_TURNS, (_text_array(displaced),))
            if any(not t.auto for t in merge):
                sdk_cur = conn.execute(q.INSERT_SDK_TURNS)
            if any(t.auto for t in merge):
                auto_cur = conn.execute(q.MERGE_AUTO_TURNS)
            if usage_update:
                conn.execute(q.UPDATE_TOKEN_SUMS, (_text_array(usage_update),))
            if feedback:
                feedback_cur = conn.execute(q.UPSERT_FEEDBACK, (feedback_json(feedback),))
            if sessions:
                session_cur = conn.execute(q.UPSERT_SESSIONS, (orjson.dumps(sessions).decode(),))
            conn.commit()  # in the same round trip; results stay readable on the cursors
        merged_ids = [str(r[0]) for c in (sdk_cur, auto_cur) if c is not None for r in c.fetchall()]
        changed_feedback = [str(r[0]) for r in feedback_cur.fetchall()] if feedback_cur else []
        new_sessions = [(str(sid), str(service), _opt_str(source))
                        for sid, service, source, inserted in (session_cur.fetchall() if session_cur else [])
                        if inserted]

        self._remember_sessions((row["session_id"], row["service"]) for row in sessions)
        result.new_turns = fresh + _pick_turns(merge, merged_ids)
        result.new_feedback = _pick_feedback(feedback, changed_feedback)
        result.new_sessions = new_sessions
        return result

    def _remember_sessions(self, sessions: Iterable[tuple[str, str]]) -> None:
        """Sessions known to be stored: their upsert can be skipped (it could only be a no-op)."""
        known = self._known_sessions
        for key in sessions:
            known[key] = None
        while len(known) > _SESSION_CACHE:
            del known[next(iter(known))]  # oldest first (dicts keep insertion order)

    def _copy_spans(self, conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any],
                    spans: list[SpanRow]) -> list[SpanRow]:
        if not spans:
            return []
        try:
            copy_spans(cur, "spans", spans)
            return spans
        except errors.UniqueViolation:
            # Some (usually all) spans are already stored: nothing else was done in this transaction yet.
            conn.rollback()
        copy_spans(cur, q.SPAN_STAGE, spans)
        stored = {(str(tid), str(sid)) for tid, sid in conn.execute(q.INSERT_NEW_SPANS)}
        new_spans: list[SpanRow] = []
        for span in spans:
            key = (span.trace_id, span.span_id)
            if key in stored:
                stored.discard(key)  # a span repeated inside the batch is new once
                new_spans.append(span)
        return new_spans

    # --- partitions --------------------------------------------------------------------------------

    def _ensure_partitions(self, conn: psycopg.Connection[Any], spans: list[SpanRow],
                           turns: list[TurnRow]) -> None:
        for table, days in (("spans", {s.start_ns // DAY_NS for s in spans}),
                            ("chat_turns", {t.start_ns // DAY_NS for t in turns})):
            missing = days - self._known_days[table]
            if missing:
                create_partitions(conn, table, [day_of_ns(d * DAY_NS) for d in missing])
                self._known_days[table] |= missing

    def _forget_partitions(self) -> None:
        for days in self._known_days.values():
            days.clear()

    # --- connection --------------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self._drop_connection()
        try:
            conn = psycopg.connect(self._url, autocommit=False, application_name="otel-chatbot-writer",
                                   connect_timeout=max(1, int(self._connect_timeout)))
        except psycopg.Error as exc:
            raise WriteUnavailable(f"cannot connect to the database: {exc}") from exc
        try:
            conn.execute(q.WRITER_SESSION)
            conn.execute(q.CREATE_STAGING)
            known = {table: {(day - day_of_ns(0)).days for _, day in list_partitions(conn, table)}
                     for table in self._known_days}
            conn.commit()
        except psycopg.Error as exc:
            conn.close()
            raise WriteUnavailable(f"cannot prepare the writer connection: {exc}") from exc
        self._known_days = known
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

    def _classify(self, exc: BaseException) -> Exception:
        """Roll back (never leave a failed transaction open) and map to the retryable/permanent split."""
        self._rollback()
        if isinstance(exc, WriteUnavailable | WriteRejected):
            return exc
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | psycopg.InternalError):
            # Lost connection, shutdown, deadlock, serialization failure, disk full, read-only replica…
            return WriteUnavailable(f"database unavailable: {exc}")
        return WriteRejected(f"the database refused the batch: {exc}")


def _text_array(values: Collection[str]) -> str | list[str]:
    """A text[] literal built with one join: psycopg's per-element list dumping costs ~3 µs/item.
    (A Collection, not any Iterable: the fallback reads ``values`` a second time.)"""
    joined = ",".join(values)
    if joined.replace(",", "").replace("-", "").replace("_", "").isalnum():
        return "{" + joined + "}"
    return list(values)  # unusual ids (quotes, spaces…): let psycopg quote them


StoredTurns = dict[str, list[tuple[str, int, bool]]]  # trace id → [(turn_id, started_us, auto)]


def plan_turns(sdk_turns: list[TurnRow], auto_turns: list[TurnRow],
               stored: StoredTurns) -> tuple[list[TurnRow], list[TurnRow], set[str]]:
    """Split a batch's turns by what is stored for their traces (``stored``: trace → [(turn_id,
    started_us, auto)], read under the traces' advisory locks).

    Returns (fresh, merge, displaced): turns to insert as they are; auto candidates whose trace already
    has its auto turn (merged by MERGE_AUTO_TURNS); traces whose stored auto turn a new SDK turn displaces.
    A stored SDK turn re-sent is skipped, as is an auto candidate of a trace with an SDK turn.
    """
    fresh: list[TurnRow] = []
    merge: list[TurnRow] = []
    displaced: set[str] = set()
    for turn in sdk_turns:
        rows = stored.get(turn.trace_id, ())
        start_us = turn.start_ns // 1000
        if any(turn_id == turn.turn_id and started == start_us for turn_id, started, _ in rows):
            continue  # a retry: already stored
        fresh.append(turn)
        if any(auto for _, _, auto in rows):
            displaced.add(turn.trace_id)
    sdk_traces = {t.trace_id for t in sdk_turns}
    for turn in auto_turns:
        if turn.trace_id in sdk_traces:
            continue
        stored_rows = stored.get(turn.trace_id)
        if not stored_rows:
            fresh.append(turn)
        elif all(auto for _, _, auto in stored_rows):
            merge.append(turn)
    return fresh, merge, displaced


def _unique_sdk_turns(turns: list[TurnRow]) -> list[TurnRow]:
    """SDK turns, once per primary key (a span repeated inside a batch makes its turn twice)."""
    unique: dict[tuple[str, int], TurnRow] = {}
    for turn in turns:
        if not turn.auto:
            unique.setdefault((turn.turn_id, turn.start_ns // 1000), turn)
    return list(unique.values())


def _unknown_sessions(turns: list[TurnRow], known: dict[tuple[str, str], None]) -> list[dict[str, Any]]:
    """UPSERT_SESSIONS rows of the sessions not known to be stored, sorted: the earliest start of their
    turns in the batch and the source of the earliest turn that has one."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for turn in sorted((t for t in turns if t.session_id is not None), key=_start_ns):
        key = (turn.session_id or "", turn.service)
        if key in known:
            continue
        row = found.get(key)
        if row is None:
            found[key] = {"session_id": key[0], "service": key[1], "source": turn.source,
                          "first_us": turn.start_ns // 1000}
        elif row["source"] is None:
            row["source"] = turn.source
    return [found[k] for k in sorted(found)]


def _start_ns(turn: TurnRow) -> int:
    return turn.start_ns


def fold_auto_turns(turns: list[TurnRow]) -> list[TurnRow]:
    """One auto candidate per trace: batches coalesced by the processor may carry several.

    The earliest-starting candidate gives identity; its missing fields come from the later ones and
    flags are OR-ed, mirroring the merge with a stored auto turn.
    """
    folded: dict[str, TurnRow] = {}
    for turn in turns:
        if not turn.auto:
            continue
        seen = folded.get(turn.trace_id)
        folded[turn.trace_id] = turn if seen is None else _merge_turns(seen, turn)
    return list(folded.values())


def _merge_turns(a: TurnRow, b: TurnRow) -> TurnRow:
    first, second = (b, a) if b.start_ns < a.start_ns else (a, b)
    return replace(
        first,
        session_id=first.session_id or second.session_id, user_id=first.user_id or second.user_id,
        source=first.source or second.source, user_message=first.user_message or second.user_message,
        bot_response=first.bot_response or second.bot_response, model=first.model or second.model,
        fallback_reason=first.fallback_reason or second.fallback_reason,
        hallucination_source=first.hallucination_source or second.hallucination_source,
        fallback=first.fallback or second.fallback, hallucinated=first.hallucinated or second.hallucinated,
        prompt_injection=first.prompt_injection or second.prompt_injection,
        blocked=first.blocked or second.blocked, rate_limited=first.rate_limited or second.rate_limited,
        error=first.error or second.error,
    )


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _pick_turns(turns: list[TurnRow], turn_ids: list[str]) -> list[TurnRow]:
    if not turn_ids:
        return []
    wanted = set(turn_ids)
    picked: dict[str, TurnRow] = {}
    for turn in turns:
        if turn.turn_id in wanted:
            seen = picked.get(turn.turn_id)
            if seen is None or turn.start_ns < seen.start_ns:
                picked[turn.turn_id] = turn  # several auto candidates of one trace: the earliest
    return list(picked.values())


def _pick_feedback(feedback: list[FeedbackRow], turn_ids: list[str]) -> list[FeedbackRow]:
    if not turn_ids:
        return []
    wanted = set(turn_ids)
    latest: dict[str, FeedbackRow] = {}
    for row in feedback:
        if row.turn_id in wanted:
            seen = latest.get(row.turn_id)
            if seen is None or row.time_ns >= seen.time_ns:
                latest[row.turn_id] = row
    return list(latest.values())
