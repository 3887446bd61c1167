"""The review page against a real processor and Postgres: queue, conversation, filters, reviews."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from server_support import base_url, running
from ui_support import SHOP_SESSION, XSS, Seeded, csrf_of, login, reviews, seed, turn_links

from otel_chatbot.ui.queries import Review, review_queue, store_review

pytestmark = pytest.mark.slow
QUEUE = ["t-down", "t-xss", "t-low", "t-halluc", "t-fallback"]  # priority, then newest first


@pytest.fixture
def open_page(database_url: str) -> Iterator[tuple[httpx.Client, Seeded, str]]:
    """A processor with no secret configured (a laptop): the page is open, still CSRF-protected."""
    seeded = seed(database_url)
    with running(database_url) as proc, httpx.Client(base_url=base_url(proc)) as client:
        yield client, seeded, database_url


def test_queue_lists_problem_turns_by_priority_and_counts_progress(open_page: tuple[httpx.Client, Seeded, str]
                                                                   ) -> None:
    client, _seeded, url = open_page
    page = client.get("/ui/")
    assert page.status_code == 200
    assert turn_links(page.text, "queue") == QUEUE
    assert '<strong id="progress">0 / 5</strong>' in page.text
    for reason in ("thumbs down", "low judge score", "hallucination", "fallback"):
        assert reason in page.text

    assert login(client, "Dana", None).status_code == 303  # open page: the name is all it asks
    conversation = client.get("/ui/turn/t-low")
    saved = client.post("/ui/review", data={
        "csrf": csrf_of(conversation.text), "turn_id": "t-low", "rating": "down",
        "corrected_reply": "Order 1 ships tomorrow.", "note": "check order status first", "then": "next"})
    assert saved.status_code == 303
    assert saved.headers["location"] == "/ui/turn/t-halluc?saved=1"  # the next unreviewed after t-low
    assert reviews(url) == [("t-low", "Dana", "down", "Order 1 ships tomorrow.", "check order status first")]

    page = client.get("/ui/")
    assert turn_links(page.text, "queue") == ["t-down", "t-xss", "t-halluc", "t-fallback"]
    assert '<strong id="progress">1 / 5</strong>' in page.text
    assert turn_links(page.text, "reviews") == ["t-low"]
    assert "<td>Dana</td>" in page.text

    # A second review of the same turn replaces the first (one row per turn).
    again = client.post("/ui/review", data={"csrf": csrf_of(conversation.text), "turn_id": "t-low",
                                            "rating": "up", "then": "stay"})
    assert again.status_code == 303 and again.headers["location"] == "/ui/turn/t-low?saved=1"
    assert reviews(url) == [("t-low", "Dana", "up", None, None)]


def test_conversation_shows_the_session_in_order_with_scores_and_llm_calls(
        open_page: tuple[httpx.Client, Seeded, str]) -> None:
    client, seeded, _url = open_page
    page = client.get("/ui/turn/t-low")
    assert page.status_code == 200
    html = page.text
    positions = [html.index(message.replace("'", "&#39;")) for pair in SHOP_SESSION for message in pair]
    assert positions == sorted(positions)  # the whole session, oldest first
    assert html.count('<article class="turn card') == 5
    assert html.count('<article class="turn card selected"') == 1
    assert "problem turn 3 of 5" in html
    assert 'href="/ui/turn/t-xss">← previous' in html
    assert 'href="/ui/turn/t-halluc">next →' in html
    assert "answers opening hours instead of the parcel status" in html  # the judge's row
    assert '<td class="num">3.0</td>' in html
    assert "it never arrived" in html  # the user's feedback comment
    assert "fallback: no_answer" in html
    session_row = re.search(r'<table class="small session-evals" id="session-scores">.*?</table>', html, re.S)
    assert session_row is not None
    assert re.findall(r'<td class="num">([^<]+)</td>', session_row.group(0)) == ["2.0", "6.0", "8.0"]
    assert "the parcel was never located" in session_row.group(0)
    calls = re.findall(r"<tr><td>ChatOpenAI</td><td>gpt-4o <small class=\"muted\">openai</small></td>\s*"
                       r"<td class=\"num\">(\d+)</td>\s*<td class=\"num\">(\d+)</td>", html)
    assert calls == [(str(100 + i), str(40 + i)) for i in range(5)]
    assert 'name="corrected_reply"' in html and html.count('<form method="post" action="/ui/review"') == 1
    assert client.get("/ui/turn/no-such-turn").status_code == 404
    assert "no turn with id &#39;no-such-turn&#39;" in client.get("/ui/turn/no-such-turn").text
    assert seeded.shop == ["t-down", "t-low", "t-halluc", "t-fallback", "t-good"]


def test_script_in_a_message_renders_escaped(open_page: tuple[httpx.Client, Seeded, str]) -> None:
    client, seeded, _url = open_page
    escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
    for path in (f"/ui/turn/{seeded.xss}", "/ui/", "/ui/turns"):
        page = client.get(path)
        assert page.status_code == 200
        assert XSS not in page.text, path
        assert escaped in page.text, path
    conversation = client.get(f"/ui/turn/{seeded.xss}").text
    assert conversation.count(escaped) == 3  # user message, bot reply, feedback comment
    assert "script-src" not in client.get("/ui/").headers["content-security-policy"]  # default-src 'none'


@pytest.mark.parametrize(("query", "expected"), [
    ("", ["t-good", "t-fallback", "t-halluc", "t-low", "t-down", "t-xss"]),
    ("service=help-bot", ["t-xss"]),
    ("source=website", ["t-good", "t-fallback", "t-halluc", "t-low", "t-down"]),
    ("flag=fallback", ["t-fallback"]),
    ("flag=hallucinated", ["t-halluc"]),
    ("rating=down", ["t-down", "t-xss"]),
    ("rating=up", ["t-good"]),
    ("rating=none", ["t-fallback", "t-halluc", "t-low"]),
    ("problems=1&service=shop-bot", ["t-fallback", "t-halluc", "t-low", "t-down"]),
    ("window=1h&flag=blocked", []),
])
def test_turn_filters(open_page: tuple[httpx.Client, Seeded, str], query: str, expected: list[str]) -> None:
    client, _seeded, _url = open_page
    page = client.get(f"/ui/turns?{query}")
    assert page.status_code == 200
    assert (turn_links(page.text, "turns") if expected else []) == expected
    if not expected:
        assert "No turns match these filters." in page.text


@pytest.mark.parametrize(("query", "message"), [
    ("flag=deleted", "flag: unknown value &#39;deleted&#39;"),
    ("rating=sideways", "rating: unknown value &#39;sideways&#39;"),
    ("window=2y", "window: unknown value &#39;2y&#39;"),
    ("problems=yes", "problems: expected 1 or nothing"),
    ("service=" + "x" * 201, "service: at most 200 characters"),
])
def test_bad_filters_are_400_with_a_message(open_page: tuple[httpx.Client, Seeded, str], query: str,
                                            message: str) -> None:
    client, _seeded, _url = open_page
    page = client.get(f"/ui/turns?{query}")
    assert page.status_code == 400
    assert message in page.text


def test_static_files(open_page: tuple[httpx.Client, Seeded, str]) -> None:
    client, _seeded, _url = open_page
    widget = client.get("/ui/widget.js")
    assert widget.status_code == 200
    assert widget.headers["content-type"].startswith("text/javascript")
    assert widget.headers["cross-origin-resource-policy"] == "cross-origin"
    assert '"/v1/feedback"' in widget.text and "data-otel-chatbot-turn" in widget.text
    css = client.get("/ui/static/style.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert client.get("/ui/static/nope.css").status_code == 404


def test_queue_is_empty_when_every_problem_turn_is_reviewed(open_page: tuple[httpx.Client, Seeded, str]
                                                           ) -> None:
    client, _seeded, url = open_page
    with psycopg.connect(url, autocommit=True) as conn:
        for turn_id in QUEUE[:4]:
            store_review(conn, Review(turn_id, "Dana", "down", None, "seen"))
        queue, reviewed, total = review_queue(conn, datetime.now(UTC) - timedelta(days=7))
    assert ([q.turn_id for q in queue], reviewed, total) == (["t-fallback"], 4, 5)
    with psycopg.connect(url, autocommit=True) as conn:
        store_review(conn, Review("t-fallback", "Sam", None, "Sorry, refunds take 5 to 7 days.", None))
    page = client.get("/ui/")
    assert '<strong id="progress">5 / 5</strong>' in page.text
    assert "Nothing to review in this window." in page.text
    assert turn_links(page.text, "reviews") == ["t-fallback", *reversed(QUEUE[:4])]
