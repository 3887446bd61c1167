"""The blocks span layout: block format, span-level dedup of re-batched retries, usage from new spans
only, redaction before a block is stored, trace fetch, and `otel-chatbot trace`.

Real Postgres, the real writer, and for redaction and the trace command a real processor fed by the real
OTLP/HTTP exporter. (Retention, erasure, partitions, replicas and the writer's guarantees run in both
layouts in their own modules.)
"""

from __future__ import annotations

import json
import random
import threading

import psycopg
import pytest
from export_support import exporting, http_exporter
from layouts import BOTH_LAYOUTS, span_keys, stored_block_texts, trace_spans
from opentelemetry.trace import Status, StatusCode
from server_support import base_url, running
from store_factories import NOW_NS, US, llm_span, rows, span, trace_id, turn

from otel_chatbot.cli import main
from otel_chatbot.records import NormalisedBatch, SpanRow
from otel_chatbot.store.block_storage import BlockStorage
from otel_chatbot.store.span_blocks import (
    BLOCK_MAX_SPANS,
    BlockEncoder,
    BlockFormatError,
    block_spans,
    pack_span_ids,
    unpack_span_ids,
)
from otel_chatbot.store.trace_fetch import BlocksReader, RowsReader, span_reader
from otel_chatbot.store.writer import BatchWriter

pytestmark = BOTH_LAYOUTS


def _traces(n: int, llm_per_trace: int = 2) -> tuple[list[SpanRow], dict[str, tuple[int, int, float]]]:
    """n traces of a root and LLM children with distinct token counts; returns (spans, usage by trace)."""
    spans: list[SpanRow] = []
    usage: dict[str, tuple[int, int, float]] = {}
    for i in range(n):
        t = trace_id()
        root = span(t, start_ns=NOW_NS + i * US)
        spans.append(root)
        total = (0, 0, 0.0)
        for j in range(llm_per_trace):
            tokens_in, tokens_out, cost = 10 * i + j + 1, i + j + 1, (i + 1) / 64 + j / 128
            spans.append(llm_span(t, parent=root.span_id, start_ns=NOW_NS + (i + j + 1) * US,
                                  input_tokens=tokens_in, output_tokens=tokens_out, cost_usd=cost))
            total = (total[0] + tokens_in, total[1] + tokens_out, total[2] + cost)
        usage[t] = total
    return spans, usage


def test_block_round_trip_and_trace_filter() -> None:
    spans, _ = _traces(3)
    spans[1].status_code, spans[1].status_message = 2, "boom \n\"quoted\""
    spans[0].end_ns = spans[0].start_ns - 5  # a clock stepping back: stored as duration 0
    block = BlockEncoder().encode(spans)
    assert block.start_ns == min(s.start_ns for s in spans) and len(block.block_id) == 16
    back = block_spans(block.body)
    assert [(s.trace_id, s.span_id, s.parent_span_id, s.input_tokens, s.cost_usd) for s in back] == [
        (s.trace_id, s.span_id, s.parent_span_id, s.input_tokens, s.cost_usd) for s in spans]
    assert back[1].status_message == "boom \n\"quoted\"" and back[0].duration_ms == 0
    assert back[0].resource == {"service.name": "bot"} and back[0].attributes == {"k": "v"}
    one = spans[3].trace_id
    assert [s.span_id for s in block_spans(block.body, one)] == [
        s.span_id for s in spans if s.trace_id == one]
    ids = [s.span_id for s in spans]
    assert unpack_span_ids(pack_span_ids(ids)) == set(ids) and len(pack_span_ids(ids)) == 8 * len(ids)


def test_a_corrupt_or_newer_block_is_refused_with_a_message() -> None:
    with pytest.raises(BlockFormatError, match="zstd"):
        block_spans(b"not a block")
    import zstandard

    with pytest.raises(BlockFormatError, match="format 2 is not supported"):
        block_spans(zstandard.ZstdCompressor().compress(b'{"v": 2}\n'))


def test_blocks_hold_one_day_whole_traces_and_at_most_the_bound() -> None:
    spans, _ = _traces(BLOCK_MAX_SPANS // 3 + 5)  # 3 spans per trace: more than one block
    late = span(trace_id(), start_ns=NOW_NS + 86_400 * 10**9)  # the next day: a block of its own
    blocks = BlockStorage().blocks([*spans, late])
    assert [len(b.spans) for b in blocks] == [BLOCK_MAX_SPANS // 3 * 3, 15, 1]
    for b in blocks:
        traces = {s.trace_id for s in b.spans}
        assert all(sum(s.trace_id == t for s in [*spans, late]) == sum(s.trace_id == t for s in b.spans)
                   for t in traces)


def test_rebatched_retries_are_stored_and_counted_once(database_url: str, span_storage: str) -> None:
    """The same spans regrouped into other requests (a Collector retry after re-batching), written by
    two writers at once: every span stored once, counted once, token sums exact."""
    spans, usage = _traces(40)
    turns = [turn(t, sid=s.span_id, start_ns=s.start_ns) for s in spans if s.parent_span_id is None
             for t in [s.trace_id]]
    first = [NormalisedBatch(spans=spans[i:i + 25]) for i in range(0, len(spans), 25)]
    rng = random.Random(3)
    shuffled = spans[:]
    rng.shuffle(shuffled)
    second = [NormalisedBatch(spans=shuffled[i:i + 17]) for i in range(0, len(shuffled), 17)]
    first[0].turns, second[-1].turns = turns, turns
    writers = [BatchWriter(database_url, span_storage=span_storage) for _ in range(2)]
    new: list[list[SpanRow]] = [[], []]

    def run(i: int, batches: list[NormalisedBatch]) -> None:
        for batch in batches:
            new[i] += writers[i].write(batch).new_spans

    for w in writers:
        w.start()
    try:
        threads = [threading.Thread(target=run, args=(i, b)) for i, b in enumerate((first, second))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        for w in writers:
            w.shutdown()
    everything = sorted((s.trace_id, s.span_id) for s in spans)
    assert sorted((s.trace_id, s.span_id) for s in new[0] + new[1]) == everything  # each new once
    assert span_keys(database_url) == everything  # each stored once
    got = {t: (i, o, round(c, 9)) for t, i, o, c in rows(
        database_url, "SELECT trace_id, input_tokens, output_tokens, cost_usd FROM chat_turns")}
    assert got == {t: (i, o, round(c, 9)) for t, (i, o, c) in usage.items()}
    if span_storage == "blocks":
        assert rows(database_url, "SELECT count(*), sum(input_tokens) FROM llm_calls") == [
            (80, sum(i for i, _, _ in usage.values()))]


def test_a_trace_split_over_requests_is_fetched_whole(database_url: str, span_storage: str,
                                                      writer: BatchWriter) -> None:
    spans, _ = _traces(1, llm_per_trace=5)
    other, _ = _traces(3)
    for i in range(0, 6, 2):  # three requests, each with spans of other traces too
        writer.write(NormalisedBatch(spans=spans[i:i + 2] + other[i:i + 2]))
    writer.write(NormalisedBatch(spans=spans[:3]))  # and a retry of part of it
    got = trace_spans(database_url, spans[0].trace_id, span_storage)
    assert [s.span_id for s in got] == [
        s.span_id for s in sorted(spans, key=lambda s: (s.start_ns, s.span_id))]
    with psycopg.connect(database_url) as conn:
        assert span_reader(span_storage).trace(conn, trace_id()) == []
        # The other layout's reader finds it through its fallback; its own implementation does not.
        other_layout = RowsReader() if span_storage == "blocks" else BlocksReader()
        assert other_layout.trace(conn, spans[0].trace_id) == []
        fallback = span_reader("rows" if span_storage == "blocks" else "blocks")
        assert [s.span_id for s in fallback.trace(conn, spans[0].trace_id)] == [s.span_id for s in got]


def test_redaction_happens_before_the_block_is_stored(database_url: str, span_storage: str) -> None:
    email, card = "jane.doe@example.com", "4111 1111 1111 1111"
    with running(database_url, redact=True, span_storage=span_storage) as processor, \
            exporting(http_exporter(f"{base_url(processor)}/v1/traces")) as tracer, \
            tracer.start_as_current_span("chat.turn", attributes={
                "chat.turn.id": "t-pii", "session.id": "s-pii",
                "input.value": f"mail me at {email}, card {card}", "output.value": "noted"}), \
            tracer.start_as_current_span("ChatOpenAI", attributes={
                "openinference.span.kind": "LLM", "llm.input_messages.0.message.content": f"to {email}",
                "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 3}):
        pass
    ((trace,),) = rows(database_url, "SELECT trace_id FROM chat_turns WHERE turn_id = 't-pii'")
    stored = trace_spans(database_url, trace, span_storage)
    assert len(stored) == 2
    text = json.dumps([s.attributes for s in stored])
    assert email not in text and card not in text and "[REDACTED:EMAIL]" in text
    blocks = stored_block_texts(database_url)  # the raw, decompressed blocks
    assert (len(blocks) == 1) == (span_storage == "blocks")
    for raw in blocks:
        assert email not in raw and card not in raw and raw.count("[REDACTED:EMAIL]") == 2


def _store_trace(database_url: str, span_storage: str) -> str:
    with running(database_url, span_storage=span_storage) as processor, \
            exporting(http_exporter(f"{base_url(processor)}/v1/traces")) as tracer, \
            tracer.start_as_current_span("chat.turn", attributes={
                "chat.turn.id": "t-tree", "session.id": "s-tree", "input.value": "hi"}):
        with tracer.start_as_current_span("ChatOpenAI", attributes={
                "openinference.span.kind": "LLM", "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 5}):
            pass
        with tracer.start_as_current_span("lookup") as failing:
            failing.set_status(Status(StatusCode.ERROR, "timeout"))
    ((trace,),) = rows(database_url, "SELECT trace_id FROM chat_turns WHERE turn_id = 't-tree'")
    return str(trace)


def test_trace_command_prints_the_tree_and_json(database_url: str, span_storage: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    trace = _store_trace(database_url, span_storage)
    assert main(["trace", trace.upper(), "--database-url", database_url, "--span-storage", span_storage]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"trace {trace}: 3 span(s), test-bot, started ")
    assert lines[1].startswith("└─ chat.turn [test-bot]  +0.0 ms")
    assert "chat.turn.id=t-tree" in lines[1] and "session.id=s-tree" in lines[1]
    assert lines[2].startswith("   ├─ ChatOpenAI [test-bot]") and "gpt-4o-mini 12→5 tokens" in lines[2]
    assert lines[3].startswith("   └─ lookup [test-bot]") and "ERROR: timeout" in lines[3]
    assert len(lines) == 4
    assert main(["trace", trace, "--format", "json", "--database-url", database_url]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["trace_id"], document["span_count"]) == (trace, 3)
    by_name = {s["name"]: s for s in document["spans"]}
    assert by_name["ChatOpenAI"]["input_tokens"] == 12 and by_name["lookup"]["status_code"] == 2
    assert by_name["ChatOpenAI"]["parent_span_id"] == by_name["chat.turn"]["span_id"]
    assert by_name["chat.turn"]["attributes"]["input.value"] == "hi"


def test_trace_command_refuses_bad_input_clearly(database_url: str, fresh_database_url: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("xyz", "ab" * 15, "ab" * 17, "g" * 32, "ab" * 16 + "; DROP TABLE spans"):
        assert main(["trace", bad, "--database-url", database_url]) == 2
        assert "trace_id: expected 32 hexadecimal characters" in capsys.readouterr().err
    unknown = trace_id()
    assert main(["trace", unknown, "--database-url", database_url]) == 3
    assert f"no span of trace {unknown} is stored" in capsys.readouterr().err
    assert main(["trace", unknown, "--database-url", fresh_database_url]) == 2  # no schema
    assert "has no otel-chatbot schema" in capsys.readouterr().err
    assert main(["trace", unknown, "--database-url", "postgresql://nobody@127.0.0.1:1/none"]) == 1
    assert "127.0.0.1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["trace", unknown, "--format", "yaml", "--database-url", database_url])
    assert info.value.code == 2
    assert main(["trace", unknown, "--span-storage", "columns", "--database-url", database_url]) == 2
    assert "span_storage: expected rows or blocks" in capsys.readouterr().err
