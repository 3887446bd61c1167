"""Parsing and checking of the review page's inputs: POSTed forms and list filters. Pure functions.

Every problem raises FormError with the HTTP status to answer and a message that names the field,
so a reviewer (or a script posting the form) sees what to fix.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import parse_qsl

from otel_chatbot.ui.queries import FLAGS, Review, TurnFilter

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 64 * 1024
MAX_REPLY = 20_000
MAX_NOTE = 2_000
MAX_FILTER_VALUE = 200
WINDOWS: dict[str, timedelta | None] = {
    "1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7),
    "30d": timedelta(days=30), "all": None,
}
DEFAULT_WINDOW = "7d"
_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")


class FormError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_form(body: bytes, content_type: str, fields: frozenset[str]) -> dict[str, str]:
    """An urlencoded body → {field: value}; unknown or repeated fields and bad encoding are 400."""
    if content_type.split(";")[0].strip().lower() != FORM_TYPE:
        raise FormError(415, f"expected Content-Type {FORM_TYPE}")
    if len(body) > MAX_FORM_BYTES:
        raise FormError(413, f"form of {len(body)} bytes exceeds the limit of {MAX_FORM_BYTES} bytes")
    try:
        text = body.decode("ascii")  # urlencoded: percent-escapes only
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict",
                          max_num_fields=len(fields) + 1)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError(400, f"form body is not valid urlencoded UTF-8: {exc}") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key not in fields:
            raise FormError(400, f"unexpected form field {key!r}")
        if key in form:
            raise FormError(400, f"form field {key!r} given twice")
        if "\x00" in value:
            raise FormError(400, f"form field {key!r} contains a NUL character")
        form[key] = value
    return form


def _optional_text(form: dict[str, str], key: str, limit: int) -> str | None:
    value = form.get(key, "").replace("\r\n", "\n").strip()
    if len(value) > limit:
        raise FormError(413, f"{key}: at most {limit} characters, got {len(value)}")
    return value or None


REVIEW_FIELDS = frozenset({"csrf", "rating", "corrected_reply", "note", "then"})


def review_from_form(form: dict[str, str], turn_id: str, reviewer: str) -> Review:
    """The review a reviewer submitted; at least one of rating, corrected reply or note."""
    rating = form.get("rating", "") or None
    if rating not in (None, "up", "down"):
        raise FormError(400, f"rating: expected 'up', 'down' or empty, got {rating!r}")
    corrected = _optional_text(form, "corrected_reply", MAX_REPLY)
    note = _optional_text(form, "note", MAX_NOTE)
    if rating is None and corrected is None and note is None:
        raise FormError(400, "review: give a rating, a corrected reply or a note")
    return Review(turn_id, reviewer, rating, corrected, note)


def window_start(window: str, now: datetime) -> datetime:
    delta = WINDOWS[window]
    return _EPOCH if delta is None else now - delta


def choice(value: str | None, key: str, allowed: object) -> str | None:
    if value in (None, ""):
        return None
    assert value is not None
    if len(value) > MAX_FILTER_VALUE:
        raise FormError(400, f"{key}: at most {MAX_FILTER_VALUE} characters")
    if allowed is not None and value not in allowed:  # type: ignore[operator]
        raise FormError(400, f"{key}: unknown value {value!r}")
    return value


def filter_from_query(query: dict[str, str], now: datetime) -> tuple[TurnFilter, str]:
    """The turn list's filters from the page's query string; returns (filter, window key)."""
    window = choice(query.get("window"), "window", WINDOWS) or DEFAULT_WINDOW
    problems = query.get("problems", "")
    if problems not in ("", "1"):
        raise FormError(400, f"problems: expected 1 or nothing, got {problems!r}")
    return TurnFilter(
        since=window_start(window, now),
        service=choice(query.get("service"), "service", None),
        source=choice(query.get("source"), "source", None),
        flag=choice(query.get("flag"), "flag", FLAGS),
        rating=choice(query.get("rating"), "rating", ("up", "down", "none")),
        problems_only=problems == "1",
    ), window


def safe_next(target: str | None) -> str:
    """Where to go after login: only a path on the review page (no open redirect)."""
    if target and target.startswith("/ui/") and not target.startswith("/ui//") and "\\" not in target:
        return target
    return "/ui/"
