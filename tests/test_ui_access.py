"""Access to the review page: login, roles, CSRF, forged cookies, and bad form input."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from server_support import base_url, running
from ui_support import Seeded, csrf_of, login, reviews, seed

from otel_chatbot.processor.config import ConfigError, load_config
from otel_chatbot.ui.session import COOKIE_NAME, SESSION_SECONDS, UiAuth

pytestmark = pytest.mark.slow
TOKEN, PASSWORD, VIEWER = "s3cret-token", "reviewer-pass", "viewer-token"


@pytest.fixture
def guarded(database_url: str) -> Iterator[tuple[str, Seeded, str]]:
    seeded = seed(database_url)
    with running(database_url, auth_token=TOKEN, ui_reviewer_password=PASSWORD,
                 ui_viewer_token=VIEWER) as proc:
        yield base_url(proc), seeded, database_url


def _review_form(client: httpx.Client, **fields: str) -> dict[str, str]:
    page = client.get("/ui/turn/t-low")
    assert page.status_code == 200
    return {"csrf": csrf_of(page.text), "turn_id": "t-low", **fields}


def test_without_a_session_every_page_redirects_to_login(guarded: tuple[str, Seeded, str]) -> None:
    url, _seeded, db = guarded
    with httpx.Client(base_url=url) as client:
        for path, target in [("/ui/", "/ui/login?next=%2Fui%2F"),
                             ("/ui/turns?flag=error", "/ui/login?next=%2Fui%2Fturns%3Fflag%3Derror"),
                             ("/ui/turn/t-low", "/ui/login?next=%2Fui%2Fturn%2Ft-low")]:
            response = client.get(path)
            assert (response.status_code, response.headers["location"]) == (303, target)
        posted = client.post("/ui/review", data={"turn_id": "t-low", "rating": "down"})
        assert (posted.status_code, posted.headers["location"]) == (303, "/ui/login?next=%2Fui%2Freview")
        login_page = client.get("/ui/login")
        cookie = login_page.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert reviews(db) == []


def test_wrong_secret_is_refused(guarded: tuple[str, Seeded, str]) -> None:
    url, _seeded, _db = guarded
    with httpx.Client(base_url=url) as client:
        refused = login(client, "Mallory", "guess")
        assert refused.status_code == 401
        assert "wrong token or password" in refused.text
        assert client.get("/ui/").status_code == 303  # still not logged in
        bearer = client.get("/ui/", headers={"Authorization": "Bearer guess"})
        assert bearer.status_code == 303


def test_login_needs_its_csrf_token_and_a_name(guarded: tuple[str, Seeded, str]) -> None:
    url, _seeded, _db = guarded
    with httpx.Client(base_url=url) as client:
        client.get("/ui/login")
        no_csrf = client.post("/ui/login", data={"name": "Dana", "secret": TOKEN})
        assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
        no_name = login(client, "   ", TOKEN)
        assert no_name.status_code == 400 and "name: enter your name" in no_name.text
        ok = login(client, "Dana", TOKEN)
        assert (ok.status_code, ok.headers["location"]) == (303, "/ui/")
        assert client.get("/ui/").status_code == 200


def test_login_redirects_only_inside_the_review_page(guarded: tuple[str, Seeded, str]) -> None:
    url, _seeded, _db = guarded
    with httpx.Client(base_url=url) as client:
        for target, expected in [("https://evil.example/", "/ui/"), ("//evil.example/ui/", "/ui/"),
                                 ("/ui//evil.example", "/ui/"), ("/ui/turn/t-low", "/ui/turn/t-low")]:
            page = client.get("/ui/login")
            response = client.post("/ui/login", data={"csrf": csrf_of(page.text), "name": "Dana",
                                                      "secret": PASSWORD, "next": target})
            assert (response.status_code, response.headers["location"]) == (303, expected)


def test_viewer_can_read_but_not_review(guarded: tuple[str, Seeded, str]) -> None:
    url, _seeded, db = guarded
    with httpx.Client(base_url=url) as client:
        assert login(client, "Vic", VIEWER).status_code == 303
        page = client.get("/ui/turn/t-low")
        assert page.status_code == 200
        assert "Read-only access" in page.text and 'action="/ui/review"' not in page.text
        logout_csrf = csrf_of(page.text)  # the logout form's token is the session's
        refused = client.post("/ui/review", data={"csrf": logout_csrf, "turn_id": "t-low", "rating": "down"})
        assert refused.status_code == 403
        assert "viewers cannot store reviews" in refused.text
    assert reviews(db) == []


def test_bearer_header_reads_but_cannot_post(guarded: tuple[str, Seeded, str]) -> None:
    url, _seeded, db = guarded
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        assert client.get("/ui/turn/t-low").status_code == 200
        refused = client.post("/ui/review", data={"csrf": "", "turn_id": "t-low", "rating": "down"})
        assert refused.status_code == 403 and "CSRF" in refused.text
    assert reviews(db) == []


def test_reviewer_posts_need_the_sessions_csrf_token(guarded: tuple[str, Seeded, str]) -> None:
    url, _seeded, db = guarded
    with httpx.Client(base_url=url) as client:
        assert login(client, "Dana", PASSWORD).status_code == 303
        form = _review_form(client, rating="down", corrected_reply="Your order ships tomorrow.")
        missing = client.post("/ui/review", data={k: v for k, v in form.items() if k != "csrf"})
        assert missing.status_code == 403 and "missing or wrong CSRF token" in missing.text
        wrong = client.post("/ui/review", data={**form, "csrf": form["csrf"][:-2] + "xx"})
        assert wrong.status_code == 403
        assert reviews(db) == []
        ok = client.post("/ui/review", data=form)
        assert ok.status_code == 303
    assert reviews(db) == [("t-low", "Dana", "down", "Your order ships tomorrow.", None)]


def test_forged_or_edited_cookie_is_ignored(guarded: tuple[str, Seeded, str]) -> None:
    url, _seeded, _db = guarded
    with httpx.Client(base_url=url) as client:
        assert login(client, "Vic", VIEWER).status_code == 303
        cookie = client.cookies[COOKIE_NAME]
        body, _, signature = cookie.rpartition(".")
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).replace(b'"viewer"', b'"reviewer"')
        edited = base64.urlsafe_b64encode(payload).rstrip(b"=").decode() + "." + signature
        client.cookies.clear()
        client.cookies.set(COOKIE_NAME, edited, path="/ui")
        assert client.get("/ui/").status_code == 303  # signature no longer matches: not logged in
    other_key = UiAuth("another-token", None, None)
    forged = other_key.encode(other_key.new_session("Eve", "reviewer"))
    with httpx.Client(base_url=url, cookies={COOKIE_NAME: forged}) as client:
        assert client.get("/ui/").status_code == 303


def test_session_cookie_expires() -> None:
    auth = UiAuth(TOKEN, None, None)
    session = auth.new_session("Dana", "reviewer")
    cookie = auth.encode(session)
    assert auth.decode(cookie) == session
    assert auth.decode(cookie, now=session.issued + SESSION_SECONDS + 1) is None
    assert UiAuth(TOKEN, None, None).decode(cookie) == session  # replicas with the same secret agree
    assert UiAuth("rotated-token", None, None).decode(cookie) is None


@pytest.mark.parametrize(("fields", "status", "message"), [
    ({"rating": "sideways"}, 400,
     "rating: expected &#39;up&#39;, &#39;down&#39; or empty, got &#39;sideways&#39;"),
    ({"rating": "", "note": "  "}, 400, "review: give a rating, a corrected reply or a note"),
    ({"rating": "down", "corrected_reply": "x" * 20_001}, 413, "corrected_reply: at most 20000 characters"),
    ({"rating": "down", "note": "n" * 2_001}, 413, "note: at most 2000 characters"),
    ({"rating": "down", "colour": "red"}, 400, "unexpected form field &#39;colour&#39;"),
    ({"rating": "down", "turn_id": "x" * 257}, 400, "turn_id: 1 to 256 characters"),
    ({"rating": "down", "turn_id": "no-such-turn"}, 404, "no turn with id &#39;no-such-turn&#39;"),
])
def test_bad_review_input_is_refused_with_a_message(guarded: tuple[str, Seeded, str], fields: dict[str, str],
                                                     status: int, message: str) -> None:
    url, _seeded, db = guarded
    with httpx.Client(base_url=url) as client:
        assert login(client, "Dana", PASSWORD).status_code == 303
        response = client.post("/ui/review", data=_review_form(client, **fields))
        assert response.status_code == status
        assert message in response.text
    assert reviews(db) == []


def test_malformed_form_bodies(guarded: tuple[str, Seeded, str]) -> None:
    url, _seeded, db = guarded
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    with httpx.Client(base_url=url) as client:
        assert login(client, "Dana", PASSWORD).status_code == 303
        csrf = _review_form(client)["csrf"]
        cases = [
            (f"csrf={csrf}&turn_id=t-low&rating=down&rating=up", form_type, 400, "given twice"),
            (f"csrf={csrf}&turn_id=t-low&note=%FF%FE", form_type, 400, "not valid urlencoded UTF-8"),
            (f"csrf={csrf}&turn_id=t-low&note=a%00b", form_type, 400, "contains a NUL character"),
            ("a" * (64 * 1024 + 1), form_type, 413, "exceeds the limit of 65536 bytes"),
            ('{"turn_id": "t-low"}', {"Content-Type": "application/json"}, 415,
             "expected Content-Type application/x-www-form-urlencoded"),
        ]
        for body, headers, status, message in cases:
            response = client.post("/ui/review", content=body, headers=headers)
            assert (response.status_code, message in response.text) == (status, True), body[:60]
    assert reviews(db) == []


def test_open_page_still_needs_csrf(database_url: str) -> None:
    seed(database_url)
    with running(database_url) as proc, httpx.Client(base_url=base_url(proc)) as client:
        page = client.get("/ui/turn/t-low")
        assert page.status_code == 200 and COOKIE_NAME in page.headers["set-cookie"]
        refused = client.post("/ui/review", data={"turn_id": "t-low", "rating": "down"})
        assert refused.status_code == 403
        form = {"csrf": csrf_of(page.text), "turn_id": "t-low", "rating": "down"}
        ok = client.post("/ui/review", data=form)
        assert ok.status_code == 303
    assert reviews(database_url) == [("t-low", "local", "down", None, None)]


@pytest.mark.parametrize(("settings", "message"), [
    ({"ui_viewer_token": VIEWER}, "ui_viewer_token: needs auth_token or ui_reviewer_password"),
    ({"auth_token": TOKEN, "ui_viewer_token": TOKEN}, "ui_viewer_token: must differ"),
    ({"ui_reviewer_password": "short"}, "ui_reviewer_password: must be at least 8 characters"),
    ({"ui_reviewer_password": "has space in it"}, "ui_reviewer_password: must be at least 8 characters"),
])
def test_ui_settings_are_validated(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}"):
        load_config({"database_url": "postgresql://u@h/db", **settings}, {}, None)


def test_ui_settings_from_environment() -> None:
    config = load_config({"database_url": "postgresql://u@h/db"}, {
        "OTEL_CHATBOT_AUTH_TOKEN": TOKEN, "OTEL_CHATBOT_UI_VIEWER_TOKEN": VIEWER,
        "OTEL_CHATBOT_UI_REVIEWER_PASSWORD": PASSWORD}, None)
    assert (config.ui_viewer_token, config.ui_reviewer_password) == (VIEWER, PASSWORD)


def test_database_down_is_a_503_page() -> None:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from otel_chatbot.ui.routes import ReviewPage

    def connect() -> psycopg.Connection[Any]:  # a real refused connection: nothing listens on port 1
        return psycopg.connect("postgresql://nobody@127.0.0.1:1/none", connect_timeout=2)

    app = Starlette(routes=[ReviewPage(connect, UiAuth(None, None, None)).mount()])
    with TestClient(app) as client:
        for path in ("/ui/", "/ui/turns", "/ui/turn/t-low"):
            response = client.get(path)
            assert response.status_code == 503, path
            assert response.headers["retry-after"] == "5"
            assert "the database is not answering" in response.text
