"""A generated chat history for the rollup tests: conversations over the last week (some across
midnight, some sharing a session id between two services), one 40 days back (in the DEFAULT partition),
turns without a session or a user, flags, ratings, judge scores and outcomes; and the late arrivals that
change closed days afterwards."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from otel_chatbot.store.partitions import create_partitions, list_partitions

SERVICES = ("shop-bot", "help-bot")
SOURCES = ("website", "whatsapp", "slack", None)
_TURN = """
INSERT INTO chat_turns (turn_id, started_at, trace_id, span_id, session_id, user_id, source, service,
                        user_message, bot_response, fallback, error, hallucinated, blocked, rate_limited,
                        escalated)
VALUES (%(turn_id)s, %(at)s, %(turn_id)s, 'span', %(session)s, %(user)s, %(source)s, %(service)s,
        'question ' || %(turn_id)s, 'answer ' || %(turn_id)s, %(fallback)s, %(error)s, %(hallucinated)s,
        %(blocked)s, %(rate_limited)s, %(escalated)s)"""


@dataclass
class History:
    now: datetime
    turns: list[dict[str, Any]] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)

    @property
    def today(self) -> date:
        return self.now.date()


def _avoid_dropoff_edge(at: datetime, now: datetime) -> datetime:
    """Keep turns away from now - 30 min, where the views' drop-off test turns over between statements."""
    if timedelta(minutes=27) < now - at < timedelta(minutes=33):
        return now - timedelta(minutes=40)
    return at


def turn(history: History, at: datetime, session: str | None, service: str, *, user: str | None = "u1",
         source: str | None = "website", **flags: bool) -> dict[str, Any]:
    row = {"turn_id": f"t{len(history.turns):04d}-{random.getrandbits(24):06x}",
           "at": _avoid_dropoff_edge(at, history.now), "session": session, "user": user, "source": source,
           "service": service, **{f: flags.get(f, False) for f in (
               "fallback", "error", "hallucinated", "blocked", "rate_limited", "escalated")}}
    history.turns.append(row)
    return row


def generate(conn: psycopg.Connection[Any], seed: int = 7) -> History:
    """Insert the history; returns it (turn rows in insertion order)."""
    rng = random.Random(seed)
    random.seed(seed)
    now_row = conn.execute("SELECT now()").fetchone()
    assert now_row is not None
    now: datetime = now_row[0].astimezone(UTC)
    history = History(now)
    create_partitions(conn, "chat_turns", [now.date() - timedelta(days=d) for d in range(8)])
    midnight = datetime.combine(now.date(), datetime.min.time(), UTC)
    for n in range(90):
        service = SERVICES[n % 2]
        session = f"s{n % 70:03d}"  # ids 0-19 are used by both services: two conversations each
        start = now - timedelta(seconds=rng.uniform(60, 6.5 * 86_400))
        if n % 9 == 0:  # across midnight
            start = midnight - timedelta(days=rng.randint(0, 4), minutes=rng.randint(5, 50))
        user = f"u{rng.randint(0, 24)}" if n % 11 else None
        at = start
        for _ in range(rng.randint(1, 5)):
            if at >= now:
                break
            turn(history, at, session, service, user=user, source=rng.choice(SOURCES),
                 fallback=rng.random() < 0.15, error=rng.random() < 0.08, hallucinated=rng.random() < 0.05,
                 blocked=rng.random() < 0.03, rate_limited=rng.random() < 0.03, escalated=rng.random() < 0.1)
            at += timedelta(minutes=rng.randint(1, 90))
        history.sessions.append(session)
    for k in range(12):  # no session, or no user
        turn(history, now - timedelta(hours=rng.uniform(0.1, 150)), None if k % 2 else f"solo{k}",
             SERVICES[k % 2], user=None if k % 3 == 0 else f"u{k}")
    # Today, the live day: one a minute ago, one halfway since midnight.
    turn(history, now - timedelta(minutes=1), "s-today", "shop-bot", user="u-new", fallback=True)
    turn(history, midnight + (now - midnight) / 2, "s-today", "shop-bot", user="u-new")
    # 40 days back: outside the daily partitions, in chat_turns_default.
    old = now - timedelta(days=40)
    turn(history, old, "s-old", "shop-bot", user="u3", error=True)
    turn(history, old + timedelta(minutes=3), "s-old", "shop-bot", user="u3", fallback=True)
    insert_turns(conn, history.turns)
    _ratings_and_outcomes(conn, history, rng)
    flush_statistics(conn)
    return history


def closed_days(conn: psycopg.Connection[Any], history: History) -> list[date]:
    """The days a first rollup run rebuilds: every closed day with a chat_turns partition (the history
    creates the last 7 days', some of which hold no turn, depending on the time of day) or a turn."""
    partition_days = {day for _, day in list_partitions(conn, "chat_turns") if day < history.today}
    return sorted(partition_days | {t["at"].date() for t in history.turns if t["at"].date() < history.today})


def flush_statistics(conn: psycopg.Connection[Any]) -> None:
    """What the writer's connection does within a minute, at once: its row counters reach the
    statistics the rollup job reads."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT 1")


def insert_turns(conn: psycopg.Connection[Any], rows: list[dict[str, Any]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(_TURN, rows)


def _ratings_and_outcomes(conn: psycopg.Connection[Any], history: History, rng: random.Random) -> None:
    rated = [t for t in history.turns if rng.random() < 0.35]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO feedback (turn_id, rating, origin, given_at, service)"
            " VALUES (%s, %s, 'api', %s, %s)",
            [(t["turn_id"], rng.choice(("up", "up", "down")), t["at"] + timedelta(minutes=2), t["service"])
             for t in rated])
        cur.executemany(
            "INSERT INTO evaluations (turn_id, evaluator, judge_version, accuracy, relevance, clarity,"
            " groundedness, created_at) VALUES (%s, 'llm', 'v1', %s, %s, %s, %s, %s)",
            [(t["turn_id"], rng.randint(0, 10), rng.randint(0, 10), rng.randint(0, 10), rng.randint(0, 10),
              t["at"] + timedelta(minutes=5)) for t in history.turns[::4]])
        outcomes = []
        for k, t in enumerate(history.turns[::7]):
            if t["session"] is None:
                continue
            kind = ("csat", "conversion", "nps", "lead")[k % 4]
            value = None if kind in ("conversion", "lead") else float(rng.randint(1, 5))
            # Every fifth carries no service/source: the views look its turn up.
            origin = (None, None) if k % 5 == 0 else (t["service"], t["source"])
            outcomes.append((t["session"] if k % 5 else None, t["turn_id"], kind, value, *origin,
                             t["at"] + timedelta(minutes=10), k % 10 == 9))
        cur.executemany(
            "INSERT INTO outcomes (session_id, turn_id, kind, value, origin, service, source, recorded_at,"
            " pending) VALUES (%s, %s, %s, %s, 'api', %s, %s, %s, %s)", outcomes)


def late_arrivals(conn: psycopg.Connection[Any], history: History) -> set[date]:
    """Change closed days after they were rolled up; returns the days whose chat_turns rows changed."""
    days: set[date] = set()
    closed = [t for t in history.turns if t["at"].date() < history.today and t["session"] is not None
              and t["at"] > history.now - timedelta(days=7)]
    first = min(closed, key=lambda t: t["at"])
    latest = max(closed, key=lambda t: t["at"])
    late = [
        # An earlier first turn of a conversation, two days before it: its start day moves.
        turn(history, first["at"] - timedelta(days=2, minutes=-30), first["session"], first["service"],
             user="u-late", source="slack"),
        # A later turn of a closed-day conversation, on its own day: its last turn changes.
        turn(history, latest["at"] + timedelta(seconds=30), latest["session"], latest["service"],
             user=latest["user"], error=True),
        # A user seen first today now has an old turn: returning, not new.
        turn(history, history.now - timedelta(days=3), "s-today-early", "shop-bot", user="u-new"),
    ]
    insert_turns(conn, late)
    days.update(t["at"].date() for t in late)
    # A settled flag on an old turn, and an old turn deleted (erasure of one turn).
    flagged = next(t for t in closed if not t["fallback"] and t["at"].date() not in days)
    conn.execute("UPDATE chat_turns SET fallback = true WHERE turn_id = %s", (flagged["turn_id"],))
    flagged["fallback"] = True
    days.add(flagged["at"].date())
    gone = next(t for t in closed if t["at"].date() not in days and t is not flagged)
    conn.execute("DELETE FROM chat_turns WHERE turn_id = %s", (gone["turn_id"],))
    history.turns.remove(gone)
    days.add(gone["at"].date())
    # A rating given now for an old turn (feedback is read live, no day changes).
    conn.execute("INSERT INTO feedback (turn_id, rating, origin, given_at) VALUES (%s, 'down', 'api', now())"
                 " ON CONFLICT (turn_id) DO UPDATE SET rating = 'down', given_at = now()",
                 (latest["turn_id"],))
    # More of today.
    turn_today = turn(history, history.now - timedelta(seconds=20), "s-today", "shop-bot", user="u-new")
    insert_turns(conn, [turn_today])
    flush_statistics(conn)
    return days
