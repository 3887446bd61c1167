"""Fuzzing: generated and mutated inputs over the OTLP decoders (in-process) and every HTTP route
(through the real server). Every input is refused with a message or decoded sanely; the server stays
up, answers no 5xx, and leaves other data untouched.

CI runs a bounded, seeded share (FUZZ_EXAMPLES, default 1500 per mutation test, a tenth of it per
generated-document test, a fifth through the server); the long run is
``FUZZ_EXAMPLES=10000 python -m pytest -s tests/test_fuzz.py`` (FUZZ_SEED picks another sequence).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from fuzz_support import (
    EXAMPLES,
    SEED,
    as_otlp_json,
    captured_exporter_bodies,
    http_cases,
    mutate_bytes,
    mutate_json,
    otlp_json_documents,
    otlp_json_logs,
)
from google.rpc.status_pb2 import Status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from layouts import trace_spans
from server_support import base_url, fetch, running, turn_request

from otel_chatbot.processor.decode import JSON, PROTOBUF, DecodeError, parse_logs, parse_traces
from otel_chatbot.processor.normalise import normalise_logs, normalise_traces
from otel_chatbot.processor.pricing import PriceTable

PRICES = PriceTable.load(None)
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))
# Building a nested OTLP document in hypothesis costs ~40 ms; mutations of real bodies ~3 ms.
STRUCTURED_SETTINGS = settings(FUZZ_SETTINGS, max_examples=max(EXAMPLES // 10, 50))
OUTCOMES: Counter[str] = Counter()


@pytest.fixture(scope="module")
def corpus() -> list[bytes]:
    return captured_exporter_bodies()


def _decode(body: bytes, content_type: str, *, logs: bool = False) -> str:
    """'accepted' or 'refused'; anything but a DecodeError with a message is a bug and propagates."""
    try:
        if logs:
            batch = normalise_logs(parse_logs(body, content_type))
        else:
            batch = normalise_traces(parse_traces(body, content_type), PRICES)
    except DecodeError as exc:
        assert str(exc).strip(), "a refusal without a message"
        OUTCOMES["refused"] += 1
        return "refused"
    for span in batch.spans:  # what would be stored is sane
        assert len(span.trace_id) == 32 and len(span.span_id) == 16, span
        json.loads(span.attributes_json), json.loads(span.resource_json), json.loads(span.events_json)
    OUTCOMES["accepted"] += 1
    return "accepted"


def test_the_captured_corpus_decodes(corpus: list[bytes]) -> None:
    assert [_decode(body, PROTOBUF) for body in corpus] == ["accepted"] * len(corpus)
    assert [_decode(json.dumps(as_otlp_json(b)).encode(), JSON) for b in corpus] == ["accepted"] * len(corpus)


def test_mutated_protobuf_bodies(corpus: list[bytes]) -> None:
    rng = random.Random(SEED)
    seen = Counter(_decode(mutate_bytes(rng, rng.choice(corpus)), PROTOBUF, logs=rng.random() < 0.2)
                   for _ in range(EXAMPLES))
    assert sum(seen.values()) == EXAMPLES and seen["accepted"] and seen["refused"], seen


def test_mutated_json_bodies(corpus: list[bytes]) -> None:
    rng = random.Random(SEED + 1)
    documents = [as_otlp_json(b) for b in corpus]
    seen = Counter(_decode(json.dumps(mutate_json(rng, rng.choice(documents))).encode(), JSON)
                   for _ in range(EXAMPLES))
    assert sum(seen.values()) == EXAMPLES and seen["accepted"] and seen["refused"], seen


@STRUCTURED_SETTINGS
@given(document=otlp_json_documents)
def test_generated_otlp_json_traces(document: object) -> None:
    _decode(json.dumps(document).encode("utf-8", "surrogatepass"), JSON)


@STRUCTURED_SETTINGS
@given(document=otlp_json_logs)
def test_generated_otlp_json_logs(document: object) -> None:
    _decode(json.dumps(document).encode("utf-8", "surrogatepass"), JSON, logs=True)


@FUZZ_SETTINGS
@given(body=st.binary(max_size=2048), content_type=st.sampled_from([PROTOBUF, JSON]), logs=st.booleans())
def test_arbitrary_bytes(body: bytes, content_type: str, logs: bool) -> None:
    _decode(body, content_type, logs=logs)


# --- through the real server ----------------------------------------------------------------------
HTTP_CASES = max(EXAMPLES // 5, 100)
LIMIT = 1024 * 1024
ALLOWED = {200, 202, 400, 401, 404, 405, 413, 415}


@pytest.fixture
def server(database_url: str) -> Iterator[str]:
    with running(database_url, max_body_bytes=LIMIT) as processor:
        yield base_url(processor)


def _message(response: httpx.Response) -> str:
    if response.headers.get("content-type", "").startswith("application/x-protobuf"):
        return str(Status.FromString(response.content).message)
    return str(response.json()["message"])


def test_every_route_under_hostile_requests(server: str, database_url: str, corpus: list[bytes]) -> None:
    body, kept_traces = turn_request(3, session="kept")
    stored = httpx.post(f"{server}/v1/traces", content=body, headers={"Content-Type": PROTOBUF})
    assert stored.status_code == 200
    # What the client sent (settling later fills in counting columns of its own).
    snapshot = ("SELECT md5(string_agg(concat_ws('|', turn_id, trace_id, span_id, session_id, user_id, "
                "service, user_message, bot_response, started_at, latency_seconds), ',' ORDER BY turn_id)) "
                "FROM chat_turns WHERE trace_id = ANY(%s)")
    before = fetch(database_url, snapshot, (kept_traces,))

    statuses: Counter[int] = Counter()
    with httpx.Client(timeout=60) as client:
        cases = http_cases(random.Random(SEED + 2), corpus, LIMIT)
        for i, (method, path, headers, content) in enumerate(cases):
            if i == HTTP_CASES:
                break
            response = client.request(method, f"{server}{path}", headers=headers, content=content)
            statuses[response.status_code] += 1
            assert response.status_code in ALLOWED, (method, path, headers, content[:200],
                                                     response.text[:500])
            if response.status_code >= 400:
                assert _message(response).strip(), (method, path, response.content[:200])
    assert sum(statuses.values()) == HTTP_CASES
    assert statuses[200] and statuses[400] and statuses[413] and statuses[415], statuses
    print(f"\nHTTP fuzz: {HTTP_CASES} requests, statuses {dict(sorted(statuses.items()))}")

    assert httpx.get(f"{server}/healthz").text == "ok\n"
    assert httpx.get(f"{server}/readyz").status_code == 200
    assert fetch(database_url, snapshot, (kept_traces,)) == before  # other data untouched
    # What was stored is sane: whole ids, no span ending before it starts.
    assert fetch(database_url, "SELECT count(*) > 0, count(*) FILTER (WHERE length(trace_id) <> 32 "
                               "OR length(span_id) <> 16) FROM stored_span_ids") == [(True, 0)]
    for table in ("spans", "llm_calls", "error_spans"):
        assert fetch(database_url, f"SELECT count(*) FROM {table} WHERE duration_ms < 0") == [(0,)]


def test_zz_report_decoder_figures() -> None:
    """Prints the decoder outcome counts of this run (shown with -s)."""
    print(f"\ndecoder fuzz: {sum(OUTCOMES.values())} inputs, {dict(OUTCOMES)}")
    assert sum(OUTCOMES.values()) >= 3 * EXAMPLES + 2 * max(EXAMPLES // 10, 50)


def test_a_span_ending_before_it_starts_is_stored_with_duration_zero(server: str, database_url: str) -> None:
    start = 1_764_000_000 * 10**9
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "ab" * 16, "spanId": "cd" * 8, "name": "clock stepped back",
        "startTimeUnixNano": str(start), "endTimeUnixNano": str(start - 5 * 10**9),
        "attributes": [{"key": "chat.turn.id", "value": {"stringValue": "t-back"}},
                       {"key": "input.value", "value": {"stringValue": "hi"}}]}]}]}]}
    response = httpx.post(f"{server}/v1/traces", json=document)
    assert response.status_code == 200
    assert [(s.duration_ms, s.end_ns == s.start_ns) for s in trace_spans(database_url, "ab" * 16)] == [
        (0.0, True)]
    assert fetch(database_url, "SELECT latency_seconds FROM chat_turns WHERE turn_id = 't-back'") == [(0.0,)]
