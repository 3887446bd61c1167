"""End to end: the SDK's real OTLP exporters into the real processor, checked in Postgres."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from server_support import running

import otel_chatbot
from otel_chatbot.processor.app import Processor

pytestmark = pytest.mark.slow


@pytest.fixture
def processor(database_url: str) -> Iterator[Processor]:
    with running(database_url, migrate=False) as proc:
        yield proc


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_turn_session_tokens_fallback_and_feedback_reach_postgres(processor: Processor, database_url: str,
                                                                 protocol: str) -> None:
    host, port = processor.http_address if protocol == "http/protobuf" else processor.grpc_address
    otel_chatbot.instrument("e2e-bot", endpoint=f"http://{host}:{port}", protocol=protocol, set_global=False,
                            instrument_libraries=False)
    try:
        with otel_chatbot.chat_turn(session_id="e2e-session", user_id="e2e-user", source="website",
                                    user_message="refund to jane@example.com please") as turn:
            turn.add_usage("gpt-4o-mini", 1000, 500, provider="openai")
            turn.add_usage("gpt-4o-mini", 200, 100, provider="openai")
            turn.mark_fallback("handoff")
            turn.set_response("A colleague will contact you.")
        otel_chatbot.record_feedback(turn.id, "down", "not solved")
        assert otel_chatbot.force_flush(30_000)
    finally:
        otel_chatbot.shutdown()
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT session_id, user_id, source, service, input_tokens, output_tokens, cost_usd, model,"
            " fallback, fallback_reason, user_message, auto FROM chat_turns WHERE turn_id = %s",
            (turn.id,)).fetchone()
        feedback = conn.execute("SELECT rating, comment, origin FROM feedback WHERE turn_id = %s",
                                (turn.id,)).fetchone()
        auto_turns = conn.execute("SELECT count(*) FROM chat_turns WHERE auto").fetchone()
    assert row is not None
    session, user, source, service, tokens_in, tokens_out, cost, model, fallback, reason, message, auto = row
    assert (session, user, source, service) == ("e2e-session", "e2e-user", "website", "e2e-bot")
    assert (tokens_in, tokens_out, model) == (1200, 600, "gpt-4o-mini")
    assert cost == pytest.approx((1200 * 0.15 + 600 * 0.6) / 1e6)
    assert fallback is True and reason == "handoff" and auto is False
    assert message == "refund to [REDACTED:EMAIL] please"
    assert feedback == ("down", "not solved", "span")
    assert auto_turns == (0,)  # the usage spans are members of the SDK turn, not turns of their own
