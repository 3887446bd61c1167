"""Helpers of the review-page tests: a seeded conversation, logging in, reading ids off the pages."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx
import psycopg
from store_factories import NOW_NS, feedback, llm_span, span, trace_id, turn

from otel_chatbot.processor.model import NormalisedBatch
from otel_chatbot.store.writer import BatchWriter

MINUTE_NS = 60 * 10**9
XSS = "<script>alert('x')</script>"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(frozen=True)
class Seeded:
    """Turn ids of the seeded data; ``shop`` is one session in order, ``other`` another service."""

    shop: list[str]
    xss: str
    traces: dict[str, str]


def seed(url: str) -> Seeded:
    """Session s-shop (service shop-bot, website): a thumbs-down turn, a low judge score, a
    hallucination, a fallback, and a good turn; plus a whatsapp turn of help-bot with a script tag."""
    ids = ["t-down", "t-low", "t-halluc", "t-fallback", "t-good"]
    traces = {tid: trace_id() for tid in [*ids, "t-xss"]}
    turns, spans = [], []
    for i, tid in enumerate(ids):
        start = NOW_NS - (10 - i) * MINUTE_NS
        row = turn(traces[tid], turn_id=tid, auto=False, start_ns=start, session="s-shop", user="u-7",
                   source="website", service="shop-bot", user_message=f"question {i}: where is order {i}?",
                   bot_response=f"answer {i}")
        root = span(traces[tid], sid=row.span_id, start_ns=start, name="chat.turn", service="shop-bot")
        spans += [root, llm_span(traces[tid], parent=root.span_id, start_ns=start + 10**6,
                                 input_tokens=100 + i, output_tokens=40 + i)]
        turns.append(row)
    turns[2].hallucinated = True
    turns[3].fallback, turns[3].fallback_reason = True, "no_answer"
    xss_row = turn(traces["t-xss"], turn_id="t-xss", auto=False, start_ns=NOW_NS - 20 * MINUTE_NS,
                   session="s-other", source="whatsapp", service="help-bot", user_message=XSS,
                   bot_response=f"reply {XSS}")
    turns.append(xss_row)
    spans.append(span(traces["t-xss"], sid=xss_row.span_id, start_ns=xss_row.start_ns, service="help-bot"))
    writer = BatchWriter(url)
    writer.start()
    try:
        writer.write(NormalisedBatch(spans=spans, turns=turns, feedback=[
            feedback("t-down", "down", NOW_NS, comment="wrong order status"),
            feedback("t-good", "up", NOW_NS),
            feedback("t-xss", "down", NOW_NS, comment=XSS)]))
    finally:
        writer.shutdown()
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO evaluations (turn_id, evaluator, judge_version, model, accuracy, relevance, clarity, "
            "groundedness, hallucinated, rationale) VALUES "
            "('t-low', 'llm-judge', 'v1', 'gpt-4o', 3, 7, 8, 6, false, 'misses the order number'), "
            "('t-good', 'llm-judge', 'v1', 'gpt-4o', 9, 9, 8, 9, false, 'fine')")
    return Seeded(ids, "t-xss", traces)


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match is not None, "no CSRF field on the page"
    return match.group(1)


def login(client: httpx.Client, name: str, secret: str | None) -> httpx.Response:
    page = client.get("/ui/login")
    assert page.status_code == 200
    form = {"csrf": csrf_of(page.text), "name": name, "next": "/ui/"}
    if secret is not None:
        form["secret"] = secret
    return client.post("/ui/login", data=form)


def turn_links(html: str, table_id: str) -> list[str]:
    """Turn ids linked from the rows of table ``table_id``, in order, each once."""
    start = html.index(f'<table id="{table_id}"')
    body = html[start:html.index("</table>", start)]
    seen: list[str] = []
    for tid in re.findall(r'href="/ui/turn/([^"?#]+)"', body):
        if tid not in seen:
            seen.append(tid)
    return seen


def reviews(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT turn_id, reviewer, rating, corrected_reply, note FROM turn_reviews "
                            "ORDER BY turn_id").fetchall()
