"""Jinja2 environment of the review page: packaged templates, autoescape always on, small filters."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined

# The pages load nothing but their own stylesheet; no script runs on them at all.
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HTML_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _score(value: float | None) -> str:
    return "\u2013" if value is None else f"{value:.1f}"


def _turn_url(turn_id: str, **query: str) -> str:
    tail = ("?" + urlencode({k: v for k, v in query.items() if v})) if any(query.values()) else ""
    return "/ui/turn/" + quote(turn_id, safe="") + tail


def _short(text: str | None, limit: int = 140) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=PackageLoader("otel_chatbot.ui", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=_when, score=_score, short=_short)
    env.globals.update(turn_url=_turn_url)
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
