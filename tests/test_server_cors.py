"""CORS for browser callers of the HTTP endpoints (a chat widget posting feedback, OTel JS)."""

from __future__ import annotations

import httpx
import pytest
from server_support import base_url, running

from otel_chatbot.processor.config import ConfigError, load_config

pytestmark = pytest.mark.slow
ORIGIN = "https://chat.example.com"


def test_allowed_origin_gets_preflight_and_response_headers(database_url: str) -> None:
    with running(database_url, cors_origins=f"{ORIGIN}, https://admin.example.com",
                 auth_token="s3cret") as proc:
        url = base_url(proc)
        preflight = httpx.options(f"{url}/v1/feedback", headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert preflight.status_code == 200  # preflights carry no token: answered before auth
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()

        unknown_turn = httpx.post(f"{url}/v1/feedback", json={"turn_id": "nope", "rating": "up"},
                                  headers={"Origin": ORIGIN, "Authorization": "Bearer s3cret"})
        assert unknown_turn.status_code == 202  # accepted, waiting for its turn
        assert unknown_turn.headers["access-control-allow-origin"] == ORIGIN

        no_token = httpx.post(f"{url}/v1/feedback", json={"turn_id": "nope", "rating": "up"},
                              headers={"Origin": ORIGIN})
        assert no_token.status_code == 401  # CORS never replaces the bearer token

        other = httpx.options(f"{url}/v1/feedback", headers={
            "Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"})
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers


def test_no_cors_headers_unless_configured(database_url: str) -> None:
    with running(database_url) as proc:
        response = httpx.get(f"{base_url(proc)}/healthz", headers={"Origin": ORIGIN})
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize("value", ["chat.example.com", "https://chat.example.com/path", "ftp://x.example"])
def test_bad_origin_names_the_setting(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^cors_origins: expected"):
        load_config({"cors_origins": value, "database_url": "postgresql://u@h/db"}, {}, None)
