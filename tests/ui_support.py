"""Helpers of the review-page tests: a seeded conversation, logging in, reading ids off the pages."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import httpx
import psycopg
from store_factories import feedback, llm_span, span, trace_id, turn

from otel_chatbot.records import NormalisedBatch
from otel_chatbot.store.writer import BatchWriter

MINUTE_NS = 60 * 10**9
XSS = "<script>alert('x')</script>"
# The seeded session, oldest first: (user message, bot reply).
SHOP_SESSION = [
    ("Where is my order 48213?", "Order 48213 was delivered on Monday to your front door."),
    ("It never arrived. Can you check again?",
     "Our support team is available 8am to 8pm, Monday to Saturday."),
    ("Can I get a refund then?", "Yes, refunds for lost parcels are paid to your bank within 1 hour."),
    ("How long will the refund take exactly?", "Sorry, I can't help with that. Let me find someone who can."),
    ("Ok, thanks for the help", "You're welcome! Anything else about order 48213?"),
]
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
    now_ns = time.time_ns()
    turns, spans = [], []
    for i, tid in enumerate(ids):
        start = now_ns - (10 - i) * MINUTE_NS
        row = turn(traces[tid], turn_id=tid, auto=False, start_ns=start, session="s-shop", user="u-7",
                   source="website", service="shop-bot", user_message=SHOP_SESSION[i][0],
                   bot_response=SHOP_SESSION[i][1])
        root = span(traces[tid], sid=row.span_id, start_ns=start, name="chat.turn", service="shop-bot")
        spans += [root, llm_span(traces[tid], parent=root.span_id, start_ns=start + 10**6,
                                 input_tokens=100 + i, output_tokens=40 + i)]
        turns.append(row)
    turns[2].hallucinated = True
    turns[3].fallback, turns[3].fallback_reason = True, "no_answer"
    xss_row = turn(traces["t-xss"], turn_id="t-xss", auto=False, start_ns=now_ns - 20 * MINUTE_NS,
                   session="s-other", source="whatsapp", service="help-bot", user_message=XSS,
                   bot_response=f"reply {XSS}")
    turns.append(xss_row)
    spans.append(span(traces["t-xss"], sid=xss_row.span_id, start_ns=xss_row.start_ns, service="help-bot"))
    writer = BatchWriter(url)
    writer.start()
    try:
        writer.write(NormalisedBatch(spans=spans, turns=turns, feedback=[
            feedback("t-down", "down", now_ns, comment="it never arrived"),
            feedback("t-good", "up", now_ns),
            feedback("t-xss", "down", now_ns, comment=XSS)]))
    finally:
        writer.shutdown()
    with psycopg.connect(url) as conn:
        conn.cursor().executemany(
            "INSERT INTO evaluations (turn_id, evaluator, judge_version, model, accuracy, relevance, "
            "clarity, groundedness, hallucinated, rationale) "
            "VALUES (%s, 'llm-judge', 'v1', 'gpt-4o', %s, %s, %s, %s, false, %s)",
            [("t-low", 3, 7, 8, 6, "answers opening hours instead of the parcel status"),
             ("t-good", 9, 9, 8, 9, "fine")])
        conn.execute(
            "INSERT INTO session_evaluations (session_id, evaluator, judge_version, model, goal_completion, "
            "coherence, frustration, goal_completed, rationale, turns) VALUES ('s-shop', 'llm-judge', "
            "'v1', 'gpt-4o', 2, 6, 8, false, 'the parcel was never located', 5)")
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
