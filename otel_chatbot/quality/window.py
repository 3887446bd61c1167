"""Which turns a quality command looks at: a time window plus service and source filters.

``--since``/``--until`` take what ``evaluate`` takes (quality/selection.py): an ISO 8601 date or time
(UTC without an offset) or a span back from now (``30m``, ``24h``, ``7d``, ``2w``); where a command
allows it, ``--since all`` (the whole history: from the Unix epoch). Pure parsing, so bad input is found
before any database is opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import sql

from otel_chatbot.quality.selection import parse_when

# What ``--since all`` means: every stored turn (none is older than the Unix epoch).
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


class WindowError(ValueError):
    """A window setting is invalid; the message starts with the option."""


def parse_time(option: str, text: str, now: datetime) -> datetime:
    """``text`` as an aware UTC datetime: ISO 8601, or a duration (``24h``) that long before ``now``."""
    try:
        return parse_when(text, now).astimezone(UTC)
    except ValueError as exc:
        raise WindowError(f"{option}: {exc}") from None


@dataclass(frozen=True)
class TurnWindow:
    """Turns with ``since <= started_at < until`` of the given services and sources (empty: any)."""

    since: datetime
    until: datetime
    services: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.since >= self.until:
            raise WindowError(
                f"--since: {self.since.isoformat()} is not before --until {self.until.isoformat()}")

    @property
    def length(self) -> timedelta:
        return self.until - self.since

    def previous(self) -> TurnWindow:
        """The window of the same length just before this one (what trends compare against)."""
        return TurnWindow(self.since - self.length, self.since, self.services, self.sources)

    def where(self, alias: str = "t") -> tuple[sql.Composable, dict[str, Any]]:
        """A SQL condition on ``chat_turns`` (as ``alias``) and its named parameters (``window_*``)."""
        column = sql.Identifier(alias)
        parts: list[sql.Composable] = [sql.SQL(
            "{c}.started_at >= %(window_since)s AND {c}.started_at < %(window_until)s").format(c=column)]
        params: dict[str, Any] = {"window_since": self.since, "window_until": self.until}
        if self.services:
            parts.append(sql.SQL("{}.service = ANY(%(window_services)s)").format(column))
            params["window_services"] = list(self.services)
        if self.sources:
            parts.append(sql.SQL("{}.source = ANY(%(window_sources)s)").format(column))
            params["window_sources"] = list(self.sources)
        return sql.SQL(" AND ").join(parts), params


def window_from_options(since: str | None, until: str | None, services: list[str] | None,
                        sources: list[str] | None, *, default_days: float, now: datetime | None = None,
                        allow_all: bool = False) -> TurnWindow:
    """The window of ``--since/--until/--service/--source`` (no --since: ``default_days`` back;
    ``allow_all``: ``--since all`` is the whole history)."""
    now = now or datetime.now(UTC)
    end = parse_time("--until", until, now) if until else now
    if allow_all and since is not None and since.strip().lower() == "all":
        start = BEGINNING
    else:
        start = parse_time("--since", since, now) if since else end - timedelta(days=default_days)
    for option, values in (("--service", services), ("--source", sources)):
        for value in values or ():
            if not value.strip():
                raise WindowError(f"{option}: expected a non-empty name")
    return TurnWindow(start, end, tuple(services or ()), tuple(sources or ()))
