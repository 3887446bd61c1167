"""Processor health: accepted/refused spans, queue depth, write latency, database errors (Prometheus)."""

from __future__ import annotations

from dashgen.core import Dashboard, Panel, prom, prom_variable, threshold_line, threshold_steps

INST = '{instance=~"$instance"}'
RATE = "[$__rate_interval]"


def build() -> Dashboard:
    write = f"sum by (le) (rate(otel_chatbot_write_duration_seconds_bucket{INST}{RATE}))"
    return Dashboard(
        "processor", "otel-chatbot / Processor health",
        "The processor's own metrics (otel_chatbot_*): intake, refusals, queue, database writes and errors.",
        [prom_variable("instance", "Instance", "otel_chatbot_spans_accepted_total")],
        [
            [
                Panel("stat", "Processors up", "Scrape targets of job otel-chatbot that answer.", "short",
                      [prom('sum(up{job="otel-chatbot",instance=~"$instance"})', "up", instant=True)],
                      width=6, height=4, steps=threshold_steps((None, "red"), (1, "green"))),
                Panel("stat", "Queue depth", "Spans accepted but not yet committed (now).", "short",
                      [prom(f"sum(otel_chatbot_queue_spans{INST})", "spans", instant=True)], width=6,
                      height=4, steps=threshold_steps((None, "green"), (10000, "orange"), (40000, "red"))),
                Panel("stat", "Database errors in range", "Failed database writes or connections.", "short",
                      [prom(f"sum(increase(otel_chatbot_database_errors_total{INST}[$__range]))", "errors",
                            instant=True)], width=6, height=4, decimals=0,
                      steps=threshold_steps((None, "green"), (1, "red"))),
                Panel("stat", "Label values folded in range",
                      "Observations whose label value became 'other' (label cardinality cap).", "short",
                      [prom(f"sum(increase(otel_chatbot_label_values_folded_total{INST}[$__range]))",
                            "folded", instant=True)], width=6, height=4, decimals=0),
            ],
            [
                Panel("timeseries", "Spans accepted per second", "Spans committed on behalf of a receiver.",
                      "ops", [prom("sum by (transport) "
                                   f"(rate(otel_chatbot_spans_accepted_total{INST}{RATE}))",
                                   "{{transport}}")],
                      width=8),
                Panel("timeseries", "Spans refused per second",
                      "Spans answered 429/503 (queue full, database down, shutting down): the Collector "
                      "retries them.", "ops",
                      [prom("sum by (transport, reason) "
                            f"(rate(otel_chatbot_spans_refused_total{INST}{RATE}))",
                            "{{transport}} {{reason}}")], width=8),
                Panel("timeseries", "Refused share (10 min) vs alert",
                      "ChatbotProcessorRefusingSpans' figure against its threshold.", "percentunit",
                      [prom(f"instance:otel_chatbot_spans_refused:ratio_rate10m{INST}", "{{instance}}"),
                       prom("chatbot_threshold:refused_span_ratio_10m", "alert threshold")],
                      width=8, overrides=[threshold_line()]),
            ],
            [
                Panel("timeseries", "Queue depth", "Spans waiting for the writer.", "short",
                      [prom(f"otel_chatbot_queue_spans{INST}", "{{instance}}")], width=8),
                Panel("timeseries", "Write latency p50 / p99",
                      "Duration of one database write (group commit).", "s",
                      [prom(f"histogram_quantile(0.5, {write})", "p50"),
                       prom(f"histogram_quantile(0.99, {write})", "p99")], width=8),
                Panel("timeseries", "Spans per write p50",
                      "Median spans committed per database write.", "short",
                      [prom("histogram_quantile(0.5, sum by (le) "
                            f"(rate(otel_chatbot_write_batch_spans_bucket{INST}{RATE})))", "p50")], width=8),
            ],
            [
                Panel("timeseries", "Database errors per second", "Failed writes or connections.", "ops",
                      [prom(f"sum by (instance) (rate(otel_chatbot_database_errors_total{INST}{RATE}))",
                            "{{instance}}")]),
                Panel("timeseries", "Spans stored and duplicates per second",
                      "First-time stored spans, and spans received again (Collector retries, not stored "
                      "twice).", "ops",
                      [prom(f"sum(rate(otel_chatbot_spans_committed_total{INST}{RATE}))", "stored"),
                       prom(f"sum(rate(otel_chatbot_spans_duplicate_total{INST}{RATE}))", "duplicates")]),
            ],
        ],
    )
