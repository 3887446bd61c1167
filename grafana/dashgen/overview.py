"""Overview: is the bot answering, fast and well, and what is firing (Prometheus)."""

from __future__ import annotations

from dashgen.core import Dashboard, Panel, panel_link, prom, prom_variable, threshold_line

SEL = '{service=~"$service",source=~"$source"}'
SVC = '{service=~"$service"}'
MODEL_SEL = '{service=~"$service",model=~"$model"}'


def variables() -> list[dict[str, object]]:
    return [
        prom_variable("service", "Service", "chatbot_turns_total"),
        prom_variable("source", "Channel", "chatbot_turns_total", selector=SVC),
        prom_variable("model", "Model", "chatbot_tokens_total", selector=SVC),
    ]


def _against_threshold(title: str, description: str, unit: str, recorded: str, threshold: str,
                       link: str) -> Panel:
    """The alert's own figure (its recorded series) next to the threshold it is compared with."""
    return Panel("timeseries", title, description, unit,
                 [prom(f"{recorded}{SVC}", "{{service}}"), prom(threshold, "alert threshold")],
                 width=6, overrides=[threshold_line()], links=[panel_link("Details", link)])


def build() -> Dashboard:
    rate = "[$__rate_interval]"
    latency = f"sum by (le) (rate(chatbot_turn_duration_seconds_bucket{SEL}{rate}))"
    return Dashboard(
        "overview", "otel-chatbot / Overview",
        "Traffic, latency, error, fallback and hallucination rates against their alert thresholds, "
        "spend by model, and the alerts firing now.",
        variables(),
        [
            [
                Panel("stat", "Turns in range", "Chat turns committed in the selected time range.", "short",
                      [prom(f"sum(increase(chatbot_turns_total{SEL}[$__range]))", "turns", instant=True)],
                      width=6, height=4, decimals=0),
                Panel("stat", "Conversations started", "Sessions seen for the first time in the range.",
                      "short",
                      [prom(f"sum(increase(chatbot_sessions_total{SEL}[$__range]))", "conversations",
                            instant=True)], width=6, height=4, decimals=0),
                Panel("stat", "Error share in range", "Turns that ended in an error, of all turns.",
                      "percentunit",
                      [prom(f"sum(increase(chatbot_errors_total{SEL}[$__range])) "
                            f"/ sum(increase(chatbot_turns_total{SEL}[$__range]))", "errors", instant=True)],
                      width=6, height=4),
                Panel("stat", "Spend in range", "Estimated LLM cost in the range.", "currencyUSD",
                      [prom(f"sum(increase(chatbot_cost_usd_total{MODEL_SEL}[$__range]))", "USD",
                            instant=True)], width=6, height=4,
                      links=[panel_link("Cost and tokens", "cost")]),
            ],
            [
                Panel("timeseries", "Turns per second", "Committed chat turns per second, by service.",
                      "reqps", [prom(f"sum by (service) (rate(chatbot_turns_total{SEL}{rate}))",
                                     "{{service}}")]),
                Panel("timeseries", "Turn latency p50 / p95 / p99",
                      "Time from the user's message to the bot's answer (chatbot_turn_duration_seconds).",
                      "s", [prom(f"histogram_quantile(0.5, {latency})", "p50"),
                            prom(f"histogram_quantile(0.95, {latency})", "p95"),
                            prom(f"histogram_quantile(0.99, {latency})", "p99")]),
            ],
            [
                _against_threshold(
                    "Error share (1 h) vs alert", "ChatbotHighErrorRate: share of turns ending in an error "
                    "over 1 hour, against chatbot_threshold:error_ratio_1h.", "percentunit",
                    "service:chatbot_errors:ratio_rate1h", "chatbot_threshold:error_ratio_1h",
                    "conversations"),
                _against_threshold(
                    "Fallbacks in 10 min vs alert", "ChatbotFallbackSpike: fallback answers in 10 minutes, "
                    "against chatbot_threshold:fallbacks_per_10m.", "short",
                    "service:chatbot_fallbacks:increase10m", "chatbot_threshold:fallbacks_per_10m",
                    "quality"),
                _against_threshold(
                    "Hallucination share (30 min) vs alert", "ChatbotHallucinationSpike: share of turns "
                    "flagged hallucinated over 30 minutes, against "
                    "chatbot_threshold:hallucination_ratio_30m.",
                    "percentunit", "service:chatbot_hallucinations:ratio_rate30m",
                    "chatbot_threshold:hallucination_ratio_30m", "quality"),
                _against_threshold(
                    "Slow turns (> 3 s, 10 min) vs alert", "ChatbotSlowTurns: share of turns slower than "
                    "3 s over 10 minutes, against chatbot_threshold:slow_turn_ratio_10m.", "percentunit",
                    "service:chatbot_turns_slow:ratio_rate10m", "chatbot_threshold:slow_turn_ratio_10m",
                    "conversations"),
            ],
            [
                Panel("timeseries", "Tokens per second by model",
                      "LLM tokens used per second, by model and type (input/output).", "short",
                      [prom(f"sum by (model, type) (rate(chatbot_tokens_total{MODEL_SEL}{rate}))",
                            "{{model}} {{type}}")], width=8,
                      links=[panel_link("Cost and tokens", "cost")]),
                Panel("timeseries", "Spend per hour by model",
                      "Estimated LLM cost per hour at the current rate, by model.", "currencyUSD",
                      [prom(f"sum by (model) (rate(chatbot_cost_usd_total{MODEL_SEL}{rate})) * 3600",
                            "{{model}}")], width=8, links=[panel_link("Cost and tokens", "cost")]),
                Panel("table", "Alerts firing or pending",
                      "Prometheus alerts now firing or pending (ALERTS); runbooks in docs/alerts.md. "
                      "Quality alerts from Postgres are Grafana-managed: see Alerting > Alert rules.",
                      "short",
                      [prom('sum by (alertname, severity, alertstate, service) (ALERTS{service=~"$service"})',
                            table=True)], width=8,
                      options={"showHeader": True, "sortBy": [{"displayName": "alertstate", "desc": False}]}),
            ],
        ],
    )
