"""ProcessorMetrics: chat metrics from CommitResult, GenAI semconv histograms, cap, self-metrics."""

from __future__ import annotations

import threading
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from otel_chatbot.processor.metrics import GEN_AI_DURATION_BUCKETS, GEN_AI_TOKEN_BUCKETS, ProcessorMetrics
from otel_chatbot.records import CommitResult, FeedbackRow, SpanRow, TurnRow


def _span(i: int = 0, *, llm: bool = True, model: str | None = "gpt-4o", service: str = "support",
          input_tokens: int | None = 100, output_tokens: int | None = 20, cost: float | None = 0.5,
          seconds: float = 1.5, status: int = 0) -> SpanRow:
    return SpanRow(
        trace_id=f"{i:032x}", span_id=f"{i:016x}", parent_span_id=None, name="llm", kind=3,
        start_ns=1_000_000_000, end_ns=1_000_000_000 + int(seconds * 1e9), status_code=status,
        status_message="", service=service, attributes_json="{}", resource_json="{}", events_json="[]",
        model=model if llm else None, provider="openai" if llm else None,
        input_tokens=input_tokens if llm else None, output_tokens=output_tokens if llm else None,
        cost_usd=cost if llm else None, operation="chat" if llm else None)


def _turn(i: int = 0, *, service: str = "support", source: str | None = "website", latency: float = 1.0,
          **flags: object) -> TurnRow:
    turn = TurnRow(turn_id=f"t{i}", trace_id=f"{i:032x}", span_id=f"{i:016x}", auto=False, session_id="s",
                   user_id="u", source=source, service=service, start_ns=0, latency_s=latency,
                   user_message="hi", bot_response="hello", model="gpt-4o")
    for name, value in flags.items():
        setattr(turn, name, value)
    return turn


def _value(m: ProcessorMetrics, name: str, **labels: str) -> float | None:
    """The value a scrape reads once an earlier scrape has seen every new series at 0."""
    list(m.registry.collect())
    return m.registry.get_sample_value(name, labels)


def test_turns_and_their_flags_are_counted_by_service_and_source() -> None:
    m = ProcessorMetrics()
    m.observe_commit(CommitResult(new_turns=[
        _turn(1), _turn(2, error=True), _turn(3, fallback=True, fallback_reason="no_answer"),
        _turn(4, hallucinated=True, prompt_injection=True), _turn(5, blocked=True, rate_limited=True),
        _turn(6, source="whatsapp", fallback=True),
    ]))
    web = {"service": "support", "source": "website"}
    assert _value(m, "chatbot_turns_total", **web) == 5
    assert _value(m, "chatbot_turns_total", service="support", source="whatsapp") == 1
    assert _value(m, "chatbot_errors_total", **web) == 1
    assert _value(m, "chatbot_hallucinations_total", **web) == 1
    assert _value(m, "chatbot_prompt_injections_total", **web) == 1
    assert _value(m, "chatbot_blocked_messages_total", **web) == 1
    assert _value(m, "chatbot_rate_limited_total", **web) == 1
    assert _value(m, "chatbot_fallbacks_total", **web, reason="no_answer") == 1
    assert _value(m, "chatbot_fallbacks_total", service="support", source="whatsapp", reason="unknown") == 1
    # Flag counters exist at 0 as soon as the turn series does, so rate() sees their first increment.
    assert _value(m, "chatbot_errors_total", service="support", source="whatsapp") == 0


def test_counts_accumulate_across_commits_and_an_empty_commit_changes_nothing() -> None:
    m = ProcessorMetrics()
    m.observe_commit(CommitResult(new_turns=[_turn(1)]))
    m.observe_commit(CommitResult())  # a retried batch: the writer reports nothing new
    m.observe_commit(CommitResult(new_turns=[_turn(2, error=True)]))
    assert _value(m, "chatbot_turns_total", service="support", source="website") == 2
    assert _value(m, "chatbot_errors_total", service="support", source="website") == 1


def test_turn_duration_histogram_keeps_3s_as_a_bucket_boundary() -> None:
    m = ProcessorMetrics()
    m.observe_commit(CommitResult(new_turns=[_turn(1, latency=0.05), _turn(2, latency=3.0),
                                             _turn(3, latency=3.2), _turn(4, latency=500.0)]))
    labels = {"service": "support", "source": "website"}
    bucket = "chatbot_turn_duration_seconds_bucket"
    assert _value(m, bucket, **labels, le="0.1") == 1
    assert _value(m, bucket, **labels, le="3.0") == 2  # le is inclusive: exactly 3 s is within the SLO
    assert _value(m, bucket, **labels, le="5.0") == 3
    assert _value(m, bucket, **labels, le="+Inf") == 4
    assert _value(m, "chatbot_turn_duration_seconds_count", **labels) == 4
    assert _value(m, "chatbot_turn_duration_seconds_sum", **labels) == pytest.approx(506.25)


def test_llm_spans_give_tokens_cost_and_genai_histograms_other_spans_nothing() -> None:
    m = ProcessorMetrics()
    m.observe_commit(CommitResult(new_spans=[
        _span(1, input_tokens=100, output_tokens=20, cost=0.5, seconds=1.5),
        _span(2, input_tokens=4, output_tokens=None, cost=None, seconds=0.01),
        _span(3, llm=False), _span(4, llm=False),
    ]))
    assert _value(m, "chatbot_tokens_total", service="support", type="input", model="gpt-4o") == 104
    assert _value(m, "chatbot_tokens_total", service="support", type="output", model="gpt-4o") == 20
    assert _value(m, "chatbot_cost_usd_total", service="support", model="gpt-4o") == 0.5
    genai = {"gen_ai_request_model": "gpt-4o", "gen_ai_provider_name": "openai",
             "gen_ai_operation_name": "chat"}
    usage = "gen_ai_client_token_usage"
    assert _value(m, usage + "_count", gen_ai_token_type="input", **genai) == 2
    assert _value(m, usage + "_bucket", gen_ai_token_type="input", le="4.0", **genai) == 1
    assert _value(m, usage + "_bucket", gen_ai_token_type="input", le="256.0", **genai) == 2
    assert _value(m, usage + "_sum", gen_ai_token_type="output", **genai) == 20
    duration = "gen_ai_client_operation_duration_seconds"
    assert _value(m, duration + "_count", error_type="", **genai) == 2
    assert _value(m, duration + "_bucket", error_type="", le="0.01", **genai) == 1
    assert _value(m, duration + "_bucket", error_type="", le="1.28", **genai) == 1
    assert _value(m, duration + "_bucket", error_type="", le="2.56", **genai) == 2
    assert _value(m, "otel_chatbot_spans_committed_total") == 4


def test_genai_histograms_use_the_semantic_convention_buckets() -> None:
    m = ProcessorMetrics()
    m.observe_commit(CommitResult(new_spans=[_span(1, status=2)]))
    text = "\n".join(
        f"{s.name} {s.labels.get('le')}"
        for family in text_string_to_metric_families(_scrape(m)) for s in family.samples)
    token_les = [float(line.split()[1]) for line in text.splitlines()
                 if line.startswith("gen_ai_client_token_usage_bucket") and "inf" not in line.lower()]
    assert token_les[: len(GEN_AI_TOKEN_BUCKETS)] == [
        1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
    assert GEN_AI_DURATION_BUCKETS == (
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
    # A failed LLM call is labelled with error_type, as the spec's error.type attribute.
    assert _value(m, "gen_ai_client_operation_duration_seconds_count", gen_ai_request_model="gpt-4o",
                  gen_ai_provider_name="openai", gen_ai_operation_name="chat", error_type="_OTHER") == 1


def test_feedback_sessions_and_evaluations() -> None:
    m = ProcessorMetrics()
    m.observe_commit(CommitResult(
        new_feedback=[FeedbackRow("t1", "down", None, "api", 1, "support"),
                      FeedbackRow("t2", "down", "bad", "span", 2, "support"),
                      FeedbackRow("t3", "up", None, "log", 3, None)],
        new_sessions=[("s1", "support", "website"), ("s2", "support", "website"), ("s3", "sales", None)]))
    assert _value(m, "chatbot_feedback_total", service="support", rating="down") == 2
    assert _value(m, "chatbot_feedback_total", service="unknown", rating="up") == 1
    assert _value(m, "chatbot_sessions_total", service="support", source="website") == 2
    assert _value(m, "chatbot_sessions_total", service="sales", source="unknown") == 1
    m.observe_evaluation("accuracy", 7.5)
    m.observe_evaluation("accuracy", 2.0)
    assert _value(m, "chatbot_evaluation_score_count", dimension="accuracy") == 2
    assert _value(m, "chatbot_evaluation_score_bucket", dimension="accuracy", le="2.0") == 1
    assert _value(m, "chatbot_evaluation_score_sum", dimension="accuracy") == 9.5


def test_label_values_beyond_the_cap_fold_into_other_and_are_counted() -> None:
    m = ProcessorMetrics(label_cap=3)
    m.observe_commit(CommitResult(
        new_spans=[_span(i, model=f"model-{i}") for i in range(5)],
        new_turns=[_turn(i, source=f"channel-{i}") for i in range(5)]))
    models = {labels["model"] for labels in _label_sets(m, "chatbot_cost_usd_total")}
    assert models == {"model-0", "model-1", "model-2", "other"}
    assert _value(m, "chatbot_cost_usd_total", service="support", model="other") == 1.0  # 2 spans x 0.5
    assert _value(m, "chatbot_turns_total", service="support", source="other") == 2
    assert _value(m, "otel_chatbot_label_values_folded_total", label="source") == 2
    assert _value(m, "otel_chatbot_label_values_folded_total", label="model") == 2
    # "model" folds once for every metric: the GenAI histograms reuse the folded value.
    assert _value(m, "otel_chatbot_label_values_folded_total", label="gen_ai_request_model") is None
    # An admitted value keeps its own series later on; a new one still folds.
    m.observe_commit(CommitResult(new_turns=[_turn(9, source="channel-0"), _turn(10, source="channel-9")]))
    assert _value(m, "chatbot_turns_total", service="support", source="channel-0") == 2
    assert _value(m, "chatbot_turns_total", service="support", source="other") == 3


def test_long_label_values_are_truncated() -> None:
    m = ProcessorMetrics()
    m.observe_commit(CommitResult(new_turns=[_turn(1, service="s" * 1000)]))
    services = {labels["service"] for labels in _label_sets(m, "chatbot_turns_total")}
    assert services == {"s" * 128}


@pytest.mark.parametrize("cap", [0, -1])
def test_a_non_positive_label_cap_is_refused(cap: int) -> None:
    with pytest.raises(ValueError, match="label_cap"):
        ProcessorMetrics(label_cap=cap)


def test_two_instances_on_one_registry_clash_and_fresh_registries_do_not() -> None:
    registry = CollectorRegistry()
    ProcessorMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated"):
        ProcessorMetrics(registry)
    assert ProcessorMetrics().registry is not ProcessorMetrics().registry


def test_self_metrics() -> None:
    m = ProcessorMetrics()
    m.spans_accepted(10, "http")
    m.spans_accepted(5, "grpc")
    m.spans_refused(3, "http", "queue_full")
    m.set_queue_depth(42)
    m.observe_write(0.02, 1000)
    m.database_error()
    m.observe_commit(CommitResult(span_count=7, duplicate_spans=7))
    assert _value(m, "otel_chatbot_spans_accepted_total", transport="http") == 10
    assert _value(m, "otel_chatbot_spans_accepted_total", transport="grpc") == 5
    assert _value(m, "otel_chatbot_spans_refused_total", transport="http", reason="queue_full") == 3
    assert _value(m, "otel_chatbot_queue_spans") == 42
    assert _value(m, "otel_chatbot_write_duration_seconds_bucket", le="0.025") == 1
    assert _value(m, "otel_chatbot_write_batch_spans_sum") == 1000
    assert _value(m, "otel_chatbot_database_errors_total") == 1
    assert _value(m, "otel_chatbot_spans_duplicate_total") == 7


def test_concurrent_commits_lose_nothing() -> None:
    m = ProcessorMetrics()
    batch = CommitResult(new_turns=[_turn(i, fallback=True) for i in range(50)],
                         new_spans=[_span(i) for i in range(50)])

    def work() -> None:
        for _ in range(40):
            m.observe_commit(batch)
            _scrape(m)  # collection runs concurrently with updates in production too

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _value(m, "chatbot_turns_total", service="support", source="website") == 4 * 40 * 50
    assert _value(m, "chatbot_tokens_total", service="support", type="input", model="gpt-4o") == 4 * 40 * 5000


def test_metrics_are_served_over_http_in_the_text_format() -> None:
    m = ProcessorMetrics()
    m.observe_commit(CommitResult(new_turns=[_turn(1, fallback=True, fallback_reason="no_answer")]))
    server, thread = start_http_server(0, addr="127.0.0.1", registry=m.registry)
    try:
        port = server.server_address[1]
        first = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
        thread.join(timeout=5)
    families = {f.name: f for f in text_string_to_metric_families(body)}
    assert families["chatbot_fallbacks"].type == "counter"
    assert families["chatbot_turn_duration_seconds"].type == "histogram"
    # The first scrape reads the new series at 0, the next one its first increment.
    assert 'chatbot_fallbacks_total{reason="no_answer",service="support",source="website"} 0.0' in first
    assert 'chatbot_fallbacks_total{reason="no_answer",service="support",source="website"} 1.0' in body


def _scrape(m: ProcessorMetrics) -> str:
    generate_latest(m.registry)  # Prometheus has read the new series at 0 (see test_first_increment…)
    return generate_latest(m.registry).decode()


def _label_sets(m: ProcessorMetrics, name: str) -> list[dict[str, str]]:
    return [s.labels for family in m.registry.collect() for s in family.samples if s.name == name]


def _read(m: ProcessorMetrics, name: str, **labels: str) -> float | None:
    """One scrape's value, without the earlier scrape that _value() adds."""
    return m.registry.get_sample_value(name, labels)


def test_first_increment_is_held_until_a_scrape_has_read_the_series_at_zero() -> None:
    # A burst in the first batch of a new service: a series born at 8 gives increase() nothing to
    # compare with, so the fallback alert ("more than 5 in 10 minutes") would never see it.
    m = ProcessorMetrics()
    burst = [_turn(i, service="new-bot", fallback=True, fallback_reason="no_answer", latency=4.0)
             for i in range(8)]
    m.observe_commit(CommitResult(new_turns=burst))
    fallbacks = {"service": "new-bot", "source": "website", "reason": "no_answer"}
    turns = {"service": "new-bot", "source": "website"}
    assert _read(m, "chatbot_fallbacks_total", **fallbacks) == 0
    # get_sample_value() is a scrape too: the one above released the held increments.
    assert _read(m, "chatbot_fallbacks_total", **fallbacks) == 8
    m2 = ProcessorMetrics()
    m2.observe_commit(CommitResult(new_turns=burst[:3]))
    m2.observe_commit(CommitResult(new_turns=burst[3:]))  # still unscraped: held increments add up
    first = _scrape_once(m2)
    assert 'chatbot_fallbacks_total{reason="no_answer",service="new-bot",source="website"} 0.0' in first
    assert 'chatbot_turns_total{service="new-bot",source="website"} 0.0' in first
    assert 'chatbot_turn_duration_seconds_count{service="new-bot",source="website"} 0.0' in first
    assert 'chatbot_errors_total{service="new-bot",source="website"} 0.0' in first
    second = _scrape_once(m2)
    assert 'chatbot_fallbacks_total{reason="no_answer",service="new-bot",source="website"} 8.0' in second
    assert 'chatbot_turns_total{service="new-bot",source="website"} 8.0' in second
    assert 'chatbot_turn_duration_seconds_count{service="new-bot",source="website"} 8.0' in second
    assert 'chatbot_turn_duration_seconds_bucket{le="3.0",service="new-bot",source="website"} 0.0' in second
    # A series already scraped counts straight away; a new reason of a known service is held again.
    m2.observe_commit(CommitResult(new_turns=[
        _turn(20, service="new-bot", fallback=True, fallback_reason="no_answer"),
        _turn(21, service="new-bot", fallback=True, fallback_reason="timeout")]))
    assert _read(m2, "chatbot_fallbacks_total", **fallbacks) == 9
    assert _read(m2, "chatbot_turns_total", **turns) == 10
    m3 = ProcessorMetrics()
    m3.observe_commit(CommitResult(new_turns=[
        _turn(21, service="new-bot", fallback=True, fallback_reason="timeout")]))
    assert _read(m3, "chatbot_fallbacks_total", service="new-bot", source="website", reason="timeout") == 0


def test_a_flag_series_touched_at_zero_also_holds_its_first_increment() -> None:
    m = ProcessorMetrics()
    m.observe_commit(CommitResult(new_turns=[_turn(1)]))  # errors series born (touched) at 0
    m.observe_commit(CommitResult(new_turns=[_turn(i, error=True) for i in range(2, 9)]))
    web = {"service": "support", "source": "website"}
    assert _read(m, "chatbot_errors_total", **web) == 0
    assert _read(m, "chatbot_errors_total", **web) == 7


def test_self_metrics_exist_at_zero_for_every_transport_and_refusal_reason() -> None:
    text = _scrape_once(ProcessorMetrics())
    for transport in ("http", "grpc"):
        assert f'otel_chatbot_spans_accepted_total{{transport="{transport}"}} 0.0' in text
        for reason in ("unavailable", "queue_full", "database_unavailable", "rejected", "internal"):
            assert (f'otel_chatbot_spans_refused_total{{reason="{reason}",transport="{transport}"}} 0.0'
                    in text)


def _scrape_once(m: ProcessorMetrics) -> str:
    return generate_latest(m.registry).decode()
