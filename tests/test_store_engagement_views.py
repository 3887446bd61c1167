"""The engagement views of migration 0006, on a small history whose every figure is worked out by hand.

Two days ago: u1 leaves conversation A after a fallback (turn 2); u2 has a one-turn conversation B on
WhatsApp and rates it up. Yesterday: u1 comes back (C: three turns, the last an error, the second rated
down), u3 rates the only turn of D down and leaves, u4 sends one turn without a session; a CSAT of 4
is reported for C.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from store_factories import US, feedback, rows, span, trace_id, turn

from otel_chatbot.cli import main
from otel_chatbot.records import NormalisedBatch, TurnRow
from otel_chatbot.store.engagement import ChannelEngagement, engagement_by_channel
from otel_chatbot.store.writer import BatchWriter

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
DAY0, DAY1 = TODAY - timedelta(days=2), TODAY - timedelta(days=1)
D0, D1 = DAY0.date(), DAY1.date()


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 10**9


def _turn(at: datetime, session: str | None, user: str, source: str, **flags: bool) -> TurnRow:
    return turn(trace_id(), auto=False, start_ns=_ns(at), session=session, user=user, source=source, **flags)


def _history(writer: BatchWriter, database_url: str) -> dict[str, TurnRow]:
    t = {
        "a1": _turn(DAY0 + timedelta(hours=10), "A", "u1", "website"),
        "a2": _turn(DAY0 + timedelta(hours=10, minutes=1), "A", "u1", "website", fallback=True),
        "b1": _turn(DAY0 + timedelta(hours=11), "B", "u2", "whatsapp"),
        "c1": _turn(DAY1 + timedelta(hours=10), "C", "u1", "website"),
        "c2": _turn(DAY1 + timedelta(hours=10, minutes=1), "C", "u1", "website"),
        "c3": _turn(DAY1 + timedelta(hours=10, minutes=2), "C", "u1", "website", error=True),
        "d1": _turn(DAY1 + timedelta(hours=10, minutes=30), "D", "u3", "website"),
        "x1": _turn(DAY1 + timedelta(hours=11), None, "u4", "api"),
    }
    spans = [span(r.trace_id, sid=r.span_id, start_ns=r.start_ns) for r in t.values()]
    ratings = [feedback(t["b1"].turn_id, "up", t["b1"].start_ns + US),
               feedback(t["c2"].turn_id, "down", t["c2"].start_ns + US),
               feedback(t["d1"].turn_id, "down", t["d1"].start_ns + US)]
    writer.write(NormalisedBatch(spans=spans, turns=list(t.values()), feedback=ratings))
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO outcomes (session_id, kind, value, origin, recorded_at)"
                     " VALUES ('C', 'csat', 4, 'api', %s)", (DAY1 + timedelta(hours=10, minutes=5),))
    return t


def _as_reader(database_url: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(database_url) as conn:
        conn.execute("SET ROLE otel_chatbot_reader")
        return conn.execute(query).fetchall()  # type: ignore[arg-type]


def test_engagement_views(writer: BatchWriter, database_url: str) -> None:
    t = _history(writer, database_url)
    assert _as_reader(database_url, "SELECT day, source, conversations, turns, users"
                      " FROM engagement_conversations_daily ORDER BY 1, 2") == [
        (D0, "website", 1, 2, 1), (D0, "whatsapp", 1, 1, 1), (D1, "website", 2, 4, 2)]
    assert _as_reader(database_url, "SELECT day, source, conversations, avg_turns, median_turns, max_turns,"
                      " single_turn_conversations FROM engagement_turns_per_conversation ORDER BY 1, 2") == [
        (D0, "website", 1, 2.0, 2.0, 2, 0), (D0, "whatsapp", 1, 1.0, 1.0, 1, 1),
        (D1, "website", 2, 2.0, 2.0, 3, 1)]
    assert _as_reader(database_url, "SELECT day, source, users, returning_users, new_users"
                      " FROM engagement_returning_users ORDER BY 1, 2") == [
        (D0, "website", 1, 0, 1), (D0, "whatsapp", 1, 0, 1), (D1, "api", 1, 0, 1), (D1, "website", 2, 1, 1)]
    assert _as_reader(database_url, "SELECT session_id, turn_number, reason, turn_id"
                      " FROM engagement_dropoff ORDER BY 1") == [
        ("A", 2, "fallback", t["a2"].turn_id), ("C", 3, "error", t["c3"].turn_id),
        ("D", 1, "rated_down", t["d1"].turn_id)]
    assert _as_reader(database_url, "SELECT day, source, rated_turns, thumbs_up, thumbs_down, csat,"
                      " csat_outcome_mean, csat_outcomes FROM engagement_csat_daily ORDER BY 1, 2") == [
        (D0, "whatsapp", 1, 1, 0, 1.0, None, 0), (D1, "website", 2, 0, 2, 0.0, 4.0, 1)]


def test_a_conversation_still_going_is_not_abandoned(writer: BatchWriter, database_url: str) -> None:
    recent = _turn(datetime.now(UTC) - timedelta(minutes=5), "E", "u5", "slack", fallback=True)
    old = _turn(datetime.now(UTC) - timedelta(minutes=40), "F", "u6", "slack", fallback=True)
    spans = [span(r.trace_id, sid=r.span_id, start_ns=r.start_ns) for r in (recent, old)]
    writer.write(NormalisedBatch(spans=spans, turns=[recent, old]))
    assert rows(database_url, "SELECT session_id FROM engagement_dropoff") == [("F",)]


def test_stats_prints_engagement_by_channel(writer: BatchWriter, database_url: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    _history(writer, database_url)
    with psycopg.connect(database_url) as conn:
        assert engagement_by_channel(conn) == [
            # website: A (2 turns) and C (3), D (1): 6 turns in 3 conversations; user-days u1@D0, u1@D1
            # (returning), u3@D1; A, C and D abandoned; its 2 ratings are down.
            ChannelEngagement("website", 3, 2.0, 3, 1, 3, 0.0),
            ChannelEngagement("whatsapp", 1, 1.0, 1, 0, 0, 1.0),
            ChannelEngagement("api", 0, None, 1, 0, 0, None),  # a turn without a session
        ]
    assert main(["stats", "--database-url", database_url]) == 0
    out = capsys.readouterr().out
    table = out[out.index("Engagement by channel"):].splitlines()
    assert table[2].split() == ["website", "3", "2.0", "33.3%", "3", "0.0%"]
    assert table[3].split() == ["whatsapp", "1", "1.0", "0.0%", "0", "100.0%"]
    assert table[4].split() == ["api", "0", "n/a", "0.0%", "0", "n/a"]
