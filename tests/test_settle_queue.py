"""The settle's reminders (unsettled_turns, migration 0018): upgrade from the previous schema, turns
held by a writer, stale and orphaned reminders, the in-place (HOT) update, retention and erasure.

Real embedded Postgres and the real BatchWriter throughout.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql
from store_factories import DAY_NS, NOW_NS, rows, trace_id, turn

from otel_chatbot.records import FlagRow, NormalisedBatch
from otel_chatbot.store import turn_sql as ts
from otel_chatbot.store import writer as writer_module
from otel_chatbot.store.erasure import erase_user
from otel_chatbot.store.migrate import load_migrations, migrate
from otel_chatbot.store.partitions import create_partitions, day_of_ns, partition_name
from otel_chatbot.store.retention import purge_older_than
from otel_chatbot.store.settle import BLOCKED, FALLBACK, TURN
from otel_chatbot.store.writer import BatchWriter

SEC = 10**9
FAR_NS = NOW_NS + 10**6 * SEC  # a settle that counts everything stored


@pytest.fixture
def settling_writer(database_url: str) -> Iterator[BatchWriter]:
    writer = BatchWriter(database_url, settle_seconds=60)
    writer.start()
    yield writer
    writer.shutdown()


def _reminders(url: str) -> list[tuple[str, int]]:
    """(turn id, settle_at in Unix µs) of every reminder, in settle order."""
    return [(str(t), int(s)) for t, s in rows(
        url, "SELECT turn_id, (extract(epoch FROM settle_at) * 1000000)::bigint FROM unsettled_turns "
             "ORDER BY settle_at, turn_id")]


def _us(moment: datetime) -> int:
    return round(moment.timestamp() * 1_000_000)


# --- upgrade ----------------------------------------------------------------------------------------

_MIGRATION = 18
_OLD_ROW = """
INSERT INTO chat_turns (turn_id, started_at, trace_id, span_id, auto, session_id, service, source,
                        latency_seconds, blocked, counted, settle_at)
VALUES (%s, %s, %s, 'root', true, %s, 'bot', 'website', 0.5, %s, %s, %s)"""


def _migrate_before(url: str, version: int) -> None:
    """The schema of the release before ``version``: every packaged migration below it, recorded."""
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL, "
                     "applied_at timestamptz NOT NULL DEFAULT now())")
        for m in load_migrations():
            if m.version < version:
                conn.execute(sql.SQL(m.sql))  # type: ignore[arg-type]
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                             (m.version, m.name))


def test_an_upgraded_database_settles_the_turns_the_previous_version_left_unsettled(
        fresh_database_url: str) -> None:
    url = fresh_database_url
    _migrate_before(url, _MIGRATION)
    started, due, later = (datetime.fromtimestamp(NOW_NS / SEC + s, UTC) for s in (0, -5, 3600))
    with psycopg.connect(url) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF chat_turns FOR VALUES FROM ({}) TO ({})").format(
            sql.Identifier(partition_name("chat_turns", day_of_ns(NOW_NS))), sql.Literal(day_of_ns(NOW_NS)),
            sql.Literal(day_of_ns(NOW_NS + DAY_NS))))  # as the previous version created them
        # As the previous writer left them: settle_at set on every change, counted what was counted.
        for turn_id, session, blocked, counted, settle_at in (
                ("new", "s-new", False, None, due),  # stored, never counted, due
                ("not-yet", "s-late", False, None, later),  # stored, due in an hour
                ("raised", "s-raised", True, TURN, due),  # counted, then a span raised a flag
                ("done", "s-done", True, TURN | BLOCKED, None),  # counted, nothing pending
                ("ancient", None, False, 127, None)):  # stored before migration 0011
            conn.execute(_OLD_ROW, (turn_id, started, turn_id, session, blocked, counted, settle_at))
            if counted is not None and session is not None:  # sessions are stored as their turns are counted
                conn.execute("INSERT INTO sessions (session_id, service, source, first_seen) "
                             "VALUES (%s, 'bot', 'website', %s)", (session, started))
    assert migrate(url)[0] == _MIGRATION

    assert sorted(_reminders(url)) == [("new", _us(due)), ("not-yet", _us(later)), ("raised", _us(due))]
    assert rows(url, "SELECT to_regclass('chat_turns_settle_at_idx') IS NULL") == [(True,)]
    assert rows(url, "SELECT reloptions FROM pg_class WHERE relname = %s",
                partition_name("chat_turns", day_of_ns(NOW_NS))) == [(["fillfactor=70"],)]
    writer = BatchWriter(url, settle_seconds=60)
    writer.start()
    try:
        now = writer.settle(until_ns=NOW_NS)
        assert [t.turn_id for t in now.new_turns] == ["new"]
        assert [(t.turn_id, t.blocked, t.error, t.fallback) for t in now.corrected_turns] == [
            ("raised", True, False, False)]  # only the flag not counted yet
        assert now.new_sessions == [("s-new", "bot", "website")]
        assert _reminders(url) == [("not-yet", _us(later))]
        later_result = writer.settle(until_ns=FAR_NS)
        assert [t.turn_id for t in later_result.new_turns] == ["not-yet"]
        assert later_result.corrected_turns == []
        assert later_result.new_sessions == [("s-late", "bot", "website")]

        # A change after the upgrade counts only what was not counted: "done" had its block counted.
        writer.write(NormalisedBatch(flags=[FlagRow("done", "", NOW_NS, fallback=True, blocked=True)]))
        done_at = rows(url, "SELECT (extract(epoch FROM settle_at) * 1000000)::bigint FROM chat_turns "
                            "WHERE turn_id = 'done'")
        assert _reminders(url) == [("done", done_at[0][0])]
        change = writer.settle(until_ns=FAR_NS)
        assert change.new_turns == [] and change.new_sessions == []
        assert [(t.turn_id, t.fallback, t.blocked) for t in change.corrected_turns] == [("done", True, False)]
    finally:
        writer.shutdown()
    assert rows(url, "SELECT turn_id, counted, settle_at FROM chat_turns ORDER BY turn_id") == [
        ("ancient", 127, None), ("done", TURN | BLOCKED | FALLBACK, None), ("new", TURN, None),
        ("not-yet", TURN, None), ("raised", TURN | BLOCKED, None)]
    assert _reminders(url) == []


# --- the settle and its reminders -----------------------------------------------------------------------


def test_a_turn_a_writer_holds_keeps_its_reminder_and_is_counted_once_released(
        settling_writer: BatchWriter, database_url: str) -> None:
    t = turn(trace_id())
    settling_writer.write(NormalisedBatch(turns=[t]))
    with psycopg.connect(database_url) as holder:
        holder.execute("SELECT 1 FROM chat_turns WHERE turn_id = %s FOR UPDATE", (t.turn_id,))
        held = settling_writer.settle(until_ns=FAR_NS)  # skips the row, never waits for it
        assert held.new_turns == [] and len(_reminders(database_url)) == 1
    released = settling_writer.settle(until_ns=FAR_NS)
    assert [x.turn_id for x in released.new_turns] == [t.turn_id]
    assert _reminders(database_url) == []
    assert settling_writer.settle(until_ns=FAR_NS).new_turns == []


def test_turns_held_by_a_writer_do_not_hold_up_the_turns_due_after_them(
        settling_writer: BatchWriter, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reminders are taken oldest first, a statement's worth at a time: a full statement's worth of held
    turns steps back instead of being taken again and again."""
    monkeypatch.setattr(writer_module, "_SETTLE_LIMIT", 2)
    held, free = [turn(trace_id()) for _ in range(2)], turn(trace_id())
    for t in (*held, free):  # one write each: reminders in this order
        settling_writer.write(NormalisedBatch(turns=[t]))
    with psycopg.connect(database_url) as holder:
        holder.execute("SELECT 1 FROM chat_turns WHERE turn_id = ANY(%s) FOR UPDATE",
                       ([t.turn_id for t in held],))
        assert settling_writer.settle(until_ns=FAR_NS).new_turns == []  # the first two were held
        assert [x.turn_id for x in settling_writer.settle(until_ns=FAR_NS).new_turns] == [free.turn_id]
    assert sorted(x.turn_id for x in settling_writer.settle(until_ns=FAR_NS).new_turns) == sorted(
        t.turn_id for t in held)
    assert _reminders(database_url) == []


def test_a_changed_turn_settles_once_after_its_last_change(settling_writer: BatchWriter,
                                                          database_url: str) -> None:
    t = turn(trace_id())
    settling_writer.write(NormalisedBatch(turns=[t]))
    first = _reminders(database_url)
    settling_writer.write(NormalisedBatch(flags=[FlagRow(t.trace_id, "", NOW_NS, fallback=True)]))
    assert len(_reminders(database_url)) == 2  # a change adds a reminder; the turn's settle_at moved on
    # Due by the first reminder only: the turn is not final yet, the stale reminder goes.
    early = settling_writer.settle(until_ns=first[0][1] * 1000)
    assert early.new_turns == [] and len(_reminders(database_url)) == 1
    final = settling_writer.settle(until_ns=FAR_NS)
    assert [(x.turn_id, x.fallback) for x in final.new_turns] == [(t.turn_id, True)]
    assert rows(database_url, "SELECT counted, settle_at FROM chat_turns") == [(TURN | FALLBACK, None)]
    assert _reminders(database_url) == []


def test_the_reminder_of_a_displaced_auto_turn_goes_uncounted(settling_writer: BatchWriter,
                                                              database_url: str) -> None:
    trace = trace_id()
    settling_writer.write(NormalisedBatch(turns=[turn(trace)]))
    sdk = turn(trace, auto=False, turn_id="sdk-1")
    settling_writer.write(NormalisedBatch(turns=[sdk]))
    assert sorted(t for t, _ in _reminders(database_url)) == sorted([trace, "sdk-1"])
    result = settling_writer.settle(until_ns=FAR_NS)
    assert [x.turn_id for x in result.new_turns] == ["sdk-1"]
    assert _reminders(database_url) == []


# Of 200 turns with 300-character messages settled by one statement, the updates HOT at the partitions'
# fillfactor (70): the free 30% of each page holds the new versions of 87 of them (the rest move).
_HOT_AT_PARTITION_FILLFACTOR = 87


@pytest.mark.parametrize(("fillfactor", "hot"), [(None, _HOT_AT_PARTITION_FILLFACTOR), (50, 200)])
def test_the_settle_rewrites_each_turn_in_place_where_its_page_has_room(
        settling_writer: BatchWriter, database_url: str, fillfactor: int | None, hot: int) -> None:
    """A HOT update (the settled version on the row's page, no index entries) for every row whose page
    has room left: with half of each page free, all of them; with the partitions' own fillfactor, the
    rows the free part of each page holds a second version of (the rows of a page settle together)."""
    part = partition_name("chat_turns", day_of_ns(NOW_NS))
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_partitions(conn, "chat_turns", [day_of_ns(NOW_NS)])
        if fillfactor is not None:
            conn.execute(sql.SQL("ALTER TABLE {} SET (fillfactor = {})").format(
                sql.Identifier(part), sql.Literal(fillfactor)))
    turns = [turn(f"{i:032x}", user_message="q" * 300, bot_response="a" * 300) for i in range(200)]
    settling_writer.write(NormalisedBatch(turns=turns))
    with psycopg.connect(database_url) as conn:
        settled = conn.execute(ts.SETTLE_TURNS, {"until": FAR_NS // 1000, "limit": 500}).fetchall()
        assert sum(1 for r in settled if r[0] == "turn") == 200
        assert conn.execute("SELECT pg_stat_get_xact_tuples_updated(%s::regclass), "
                            "pg_stat_get_xact_tuples_hot_updated(%s::regclass)", (part, part)).fetchone() == (
            200, hot)


# --- retention and erasure ----------------------------------------------------------------------------


def test_purge_drops_the_reminders_of_the_turns_it_removes(settling_writer: BatchWriter,
                                                           database_url: str) -> None:
    old, young = turn(trace_id(), start_ns=NOW_NS - 3 * DAY_NS), turn(trace_id())
    settling_writer.write(NormalisedBatch(turns=[old, young]))
    assert len(_reminders(database_url)) == 2
    purge_older_than(database_url, 2, now=datetime.fromtimestamp(NOW_NS / SEC, UTC))
    assert [t for t, _ in _reminders(database_url)] == [young.turn_id]


def test_erasing_a_user_drops_the_reminders_of_their_turns(settling_writer: BatchWriter,
                                                           database_url: str) -> None:
    theirs, other = turn(trace_id(), user="u-gone"), turn(trace_id(), user="u-stays")
    settling_writer.write(NormalisedBatch(turns=[theirs, other]))
    erase_user(database_url, "u-gone")
    assert [t for t, _ in _reminders(database_url)] == [other.turn_id]


def test_new_daily_partitions_of_chat_turns_keep_room_for_the_settled_version(database_url: str) -> None:
    day = day_of_ns(NOW_NS + DAY_NS)
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_partitions(conn, "chat_turns", [day])
        create_partitions(conn, "spans", [day])
    assert rows(database_url, "SELECT relname, reloptions FROM pg_class WHERE relname IN (%s, %s) ORDER BY 1",
                partition_name("chat_turns", day), partition_name("spans", day)) == [
        (partition_name("chat_turns", day), ["fillfactor=70"]), (partition_name("spans", day), None)]
