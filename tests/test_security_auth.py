"""Bearer-token auth on every route of the HTTP app, both gRPC services and /metrics.

The HTTP routes are read from the Starlette app itself, so a route added later is covered without
editing this test; only the health checks may answer without the token (and only with health_public).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from server_support import base_url, running, turn_request
from starlette.routing import Mount, Route

from otel_chatbot.processor.app import Processor
from otel_chatbot.processor.auth import BearerAuth

TOKEN = "s3cret-token-0123456789"
# Routes that answer without the token while health_public is on (the default).
PUBLIC_WITH_HEALTH = {"/healthz", "/readyz"}
# The review page logs people in with its own form (a session cookie): its login, logout, widget script
# and stylesheet are public; every other page of it redirects to the login form instead of a 401.
UI_PUBLIC = {"/ui/login", "/ui/logout", "/ui/widget.js", "/ui/static/style.css"}
WRONG_HEADERS: list[dict[str, str]] = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN},
    {"X-Api-Key": TOKEN},
]
SERVICES = {
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export": turn_request(1)[0],
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export": b"",
}


def _requests(processor: Processor) -> list[tuple[str, str]]:
    """(method, path) of every route of the HTTP app, mounted ones included; path parameters filled
    with a dummy value."""
    found: list[tuple[str, str]] = []

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            if isinstance(route, Route):
                path = prefix + re.sub(r"\{[^}]+\}", "x", route.path)
                found.extend((m, path) for m in sorted(route.methods or {"GET"}) if m != "HEAD")
            elif isinstance(route, Mount):
                walk(list(route.routes), prefix + route.path)
            else:
                raise AssertionError(f"a route of an unknown kind: {route!r}; teach this test about it")

    walk(list(processor._http.app.routes), "")  # type: ignore[union-attr]
    return found


@pytest.fixture
def processor(database_url: str) -> Iterator[Processor]:
    with running(database_url, auth_token=TOKEN) as proc:
        yield proc


def test_the_comparison_is_constant_time() -> None:
    assert "hmac.compare_digest" in inspect.getsource(BearerAuth.check)
    auth = BearerAuth(TOKEN)
    assert auth.check(f"Bearer {TOKEN}") and auth.check(f"bearer   {TOKEN}")
    assert not any(auth.check(h.get("Authorization")) for h in WRONG_HEADERS)
    assert not auth.check(f"Bearer {TOKEN}".encode() + b"\xff")


def test_every_http_route_refuses_a_missing_or_wrong_token(processor: Processor) -> None:
    api = base_url(processor)
    requests = _requests(processor)
    assert {path for _, path in requests} >= {"/v1/traces", "/v1/logs", "/v1/feedback", "/healthz", "/readyz",
                                              "/ui/", "/ui/review"}
    for method, path in requests:
        for headers in WRONG_HEADERS:
            response = httpx.request(method, f"{api}{path}", headers={"Content-Type": "application/json",
                                                                    **headers}, content=b"{}")
            if path in PUBLIC_WITH_HEALTH or path in UI_PUBLIC:
                assert response.status_code < 500, (method, path, headers)
                continue
            if path.startswith("/ui/"):
                assert response.status_code == 303, (method, path, headers, response.text)
                assert response.headers["location"].startswith("/ui/login"), response.headers
                assert "review" not in response.text.lower()  # no page content before the login
                continue
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.json() == {"code": 16, "message": "missing or invalid bearer token "
                                                              "(Authorization: Bearer <token>)"}
        if path.startswith("/ui/"):
            continue  # logged in by its form, tested in test_ui_access.py
        allowed = httpx.request(method, f"{api}{path}", content=b"{}", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
        assert allowed.status_code != 401, (method, path)


def test_every_grpc_service_refuses_a_missing_or_wrong_token(processor: Processor) -> None:
    host, port = processor.grpc_address
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        for method, body in SERVICES.items():
            call = channel.unary_unary(method)
            for headers in WRONG_HEADERS:
                metadata = [(k.lower(), v) for k, v in headers.items()]
                with pytest.raises(grpc.RpcError) as info:
                    call(body, metadata=metadata, timeout=30)
                assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED, (method, headers)
            assert call(body, metadata=[("authorization", f"Bearer {TOKEN}")], timeout=30) == b""


def test_metrics_and_health_exposure_settings(database_url: str) -> None:
    with running(database_url, auth_token=TOKEN, metrics_auth=True, health_public=False) as proc:
        api, metrics = base_url(proc), "http://{}:{}/metrics".format(*proc.metrics_address)
        for headers in WRONG_HEADERS:
            refused = httpx.get(metrics, headers=headers)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            for path in PUBLIC_WITH_HEALTH:
                assert httpx.get(f"{api}{path}", headers=headers).status_code == 401, (path, headers)
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert "otel_chatbot_spans_accepted_total" in httpx.get(metrics, headers=good).text
        assert httpx.get(f"{api}/healthz", headers=good).text == "ok\n"
        assert httpx.get(f"{api}/readyz", headers=good).status_code == 200
    # Defaults: /metrics and the health checks are open even with a token set.
    with running(database_url, auth_token=TOKEN) as proc:
        assert httpx.get("http://{}:{}/metrics".format(*proc.metrics_address)).status_code == 200
        assert httpx.get(f"{base_url(proc)}/healthz").status_code == 200


@pytest.mark.parametrize(("settings", "message"), [
    ({"metrics_auth": True}, "metrics_auth: requires auth_token"),
    ({"health_public": False}, "health_public: off requires auth_token"),
])
def test_exposure_settings_without_a_token_are_refused(settings: dict[str, object], message: str) -> None:
    from otel_chatbot.processor.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=message):
        load_config({"database_url": "postgresql://x@/y", **settings}, {}, None)
