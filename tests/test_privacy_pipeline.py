"""PII sent by apps that do not use our SDK, through `serve --redact`: no PII string in any column.

Real OpenLLMetry instrumentations (``opentelemetry-instrumentation-openai`` around the real openai
client talking to a local OpenAI-compatible server, ``opentelemetry-instrumentation-langchain``
around a LangChain fake chat model) export over real OTLP/HTTP into the real processor; then every
text and JSONB column of every table is scanned for the PII values.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import psycopg
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.prompts import ChatPromptTemplate
from layouts import stored_block_texts, trace_spans
from openai_stub_server import OpenAIStubServer
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.langchain import LangchainInstrumentor
from opentelemetry.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from server_support import base_url, running

from otel_chatbot.processor.app import Processor

pytestmark = pytest.mark.slow

PII = {
    "email": "maria.gonzalez@example.com",
    "phone": "(415) 555-0187",
    "ssn": "339-15-9312",
    "card": "4539 1488 0343 6467",
    "name": "Maria Gonzalez",
    "address": "7098 Sunset Road, Apt 33D, Portland, OR 97209",
    "dob": "9/4/93",
    "passport": "829415939",
}
QUESTION = (
    f"Hi, my name is {PII['name']}, email {PII['email']}, call me on {PII['phone']}. "
    f"My SSN is {PII['ssn']} and card {PII['card']}. Ship to {PII['address']}. "
    f"Date of birth {PII['dob']}, passport no. {PII['passport']}. Where is order 88231?"
)


# The default span layout (blocks): the scan below decompresses the stored blocks too. (Instrumenting the
# same libraries twice in one process is not reliable, so this runs once; tests/test_span_blocks.py
# checks redaction before the block is stored with plain SDK spans.)
@pytest.fixture
def processor(database_url: str, span_storage: str) -> Iterator[Processor]:
    with running(database_url, redact=True, span_storage=span_storage) as proc:
        yield proc


def _provider(processor: Processor, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base_url(processor)}/v1/traces"))
    )
    return provider


def _text_columns(conn: psycopg.Connection) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c "
        "JOIN information_schema.tables t USING (table_schema, table_name) "
        "WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' "
        "AND c.data_type IN ('text', 'jsonb', 'json', 'character varying', 'ARRAY')"
    ).fetchall()
    return [(table, column) for table, column in rows]


def _leaks(database_url: str) -> tuple[list[str], int]:
    """(every "table.column: kind" holding a PII value, how many text/JSON columns were scanned)."""
    leaks: list[str] = []
    with psycopg.connect(database_url) as conn:
        columns = _text_columns(conn)
        for table, column in columns:
            for kind, value in PII.items():
                (hits,) = (
                    conn.execute(
                        # table and column names come from the catalog, the value is a parameter
                        f'SELECT count(*) FROM "{table}" WHERE strpos("{column}"::text, %s) > 0',
                        (value,),
                    ).fetchone()
                    or (0,)
                )
                if hits:
                    leaks.append(f"{table}.{column}: {kind}")
    # Span blocks are compressed bytea: decompressed and scanned as text.
    for i, text in enumerate(stored_block_texts(database_url)):
        leaks += [f"span_blocks[{i}]: {kind}" for kind, value in PII.items() if value in text]
    return leaks, len(columns)


def _stored_attributes(database_url: str) -> list[dict[str, object]]:
    """The attributes of every stored span, read back through the store's reader (either layout)."""
    with psycopg.connect(database_url) as conn:
        traces = [str(t) for (t,) in conn.execute("SELECT DISTINCT trace_id FROM stored_span_ids")]
    return [s.attributes for t in traces for s in trace_spans(database_url, t)]


def test_openllmetry_openai_and_langchain_spans_are_redacted(processor: Processor, database_url: str,
                                                             span_storage: str) -> None:
    provider = _provider(processor, "ollm-bot")
    openai_instrumentor, langchain_instrumentor = OpenAIInstrumentor(), LangchainInstrumentor()
    openai_instrumentor.instrument(tracer_provider=provider)
    langchain_instrumentor.instrument(tracer_provider=provider)
    try:
        with OpenAIStubServer() as stub:  # its reply echoes the question: PII in the output too
            client = openai.OpenAI(base_url=stub.base_url, api_key="test-key", max_retries=0)
            reply = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": QUESTION}]
            )
        assert PII["ssn"] in (reply.choices[0].message.content or "")
        model = GenericFakeChatModel(messages=iter([AIMessage(content=f"Noted, {PII['name']}.")]))
        chain = (
            ChatPromptTemplate.from_messages([("system", "You help customers."), ("human", "{q}")]) | model
        )
        chain.invoke({"q": QUESTION})
        assert provider.force_flush(30_000)
    finally:
        openai_instrumentor.uninstrument()
        langchain_instrumentor.uninstrument()
        provider.shutdown()
    attributes = _stored_attributes(database_url)
    spans = len(attributes)
    keys = {k for a in attributes for k in a}
    redacted = (sum("[REDACTED:SSN]" in json.dumps(a) for a in attributes),)
    assert spans >= 3, spans
    assert (len(stored_block_texts(database_url)) > 0) == (span_storage == "blocks")
    # The OpenLLMetry attributes that carried the text are there, and were redacted, not dropped.
    print(sorted(keys))
    assert "gen_ai.input.messages" in keys, sorted(keys)
    assert any(k.startswith("traceloop.entity.input") for k in keys), sorted(keys)
    assert redacted is not None and redacted[0] >= 2
    leaks, scanned = _leaks(database_url)
    assert scanned >= 20, scanned
    assert leaks == []
