"""Cost and tokens: by model, by service, per conversation, against the budgets (Prometheus)."""

from __future__ import annotations

from dashgen.core import Dashboard, Panel, panel_link, prom, prom_variable, threshold_line

SVC = '{service=~"$service"}'
MODEL_SEL = '{service=~"$service",model=~"$model"}'
RATE = "[$__rate_interval]"


def build() -> Dashboard:
    return Dashboard(
        "cost", "otel-chatbot / Cost and tokens",
        "LLM spend and token use by model and service, per conversation, and against the hourly "
        "budgets of prometheus/rules/thresholds.yml.",
        [prom_variable("service", "Service", "chatbot_cost_usd_total"),
         prom_variable("model", "Model", "chatbot_cost_usd_total", selector=SVC)],
        [
            [
                Panel("stat", "Spend in range", "Estimated LLM cost in the selected range.", "currencyUSD",
                      [prom(f"sum(increase(chatbot_cost_usd_total{MODEL_SEL}[$__range]))", "USD",
                            instant=True)], width=6, height=4),
                Panel("stat", "Tokens in range", "Input plus output tokens in the range.", "short",
                      [prom(f"sum(increase(chatbot_tokens_total{MODEL_SEL}[$__range]))", "tokens",
                            instant=True)], width=6, height=4, decimals=0),
                Panel("stat", "Spend per conversation",
                      "Spend in the range divided by the conversations started in it.", "currencyUSD",
                      [prom(f"sum(increase(chatbot_cost_usd_total{SVC}[$__range])) "
                            f"/ sum(increase(chatbot_sessions_total{SVC}[$__range]))", "USD", instant=True)],
                      width=6, height=4, decimals=4),
                Panel("stat", "Tokens per turn", "Tokens in the range divided by the turns in it.", "short",
                      [prom(f"sum(increase(chatbot_tokens_total{SVC}[$__range])) "
                            f"/ sum(increase(chatbot_turns_total{SVC}[$__range]))", "tokens", instant=True)],
                      width=6, height=4, decimals=0),
            ],
            [
                Panel("timeseries", "Spend in the last hour vs budget",
                      "ChatbotCostOverBudget's figure per service against chatbot_budget:cost_usd_per_hour.",
                      "currencyUSD",
                      [prom(f"service:chatbot_cost_usd:increase1h{SVC}", "{{service}}"),
                       prom("chatbot_budget:cost_usd_per_hour", "alert threshold")],
                      overrides=[threshold_line()], links=[panel_link("Overview", "overview")]),
                Panel("timeseries", "Tokens in the last hour vs budget",
                      "ChatbotTokensOverBudget's figure per service against chatbot_budget:tokens_per_hour.",
                      "short",
                      [prom(f"service:chatbot_tokens:increase1h{SVC}", "{{service}}"),
                       prom("chatbot_budget:tokens_per_hour", "alert threshold")],
                      overrides=[threshold_line()]),
            ],
            [
                Panel("timeseries", "Spend per hour by model", "Cost per hour at the current rate, by model.",
                      "currencyUSD", [prom(f"sum by (model) (rate(chatbot_cost_usd_total{MODEL_SEL}{RATE})) "
                                           "* 3600", "{{model}}")], width=8),
                Panel("timeseries", "Tokens per second by model and type",
                      "Input and output tokens per second, by model.", "short",
                      [prom(f"sum by (model, type) (rate(chatbot_tokens_total{MODEL_SEL}{RATE}))",
                            "{{model}} {{type}}")], width=8),
                Panel("bargauge", "Spend by service in range", "Estimated cost per service in the range.",
                      "currencyUSD",
                      [prom(f"sum by (service) (increase(chatbot_cost_usd_total{MODEL_SEL}[$__range]))",
                            "{{service}}", instant=True)], width=8,
                      options={"orientation": "horizontal", "displayMode": "gradient"}),
            ],
            [
                Panel("timeseries", "Tokens per LLM call p95 by model",
                      "95th percentile of tokens per LLM call (gen_ai_client_token_usage, GenAI semconv).",
                      "short",
                      [prom("histogram_quantile(0.95, sum by (le, gen_ai_request_model, gen_ai_token_type) "
                            '(rate(gen_ai_client_token_usage_bucket{gen_ai_request_model=~"$model"}'
                            f"{RATE})))", "{{{{gen_ai_request_model}}}} {{{{gen_ai_token_type}}}}")]),
                Panel("timeseries", "LLM call duration p95 by model",
                      "95th percentile of LLM call duration (gen_ai_client_operation_duration_seconds).", "s",
                      [prom("histogram_quantile(0.95, sum by (le, gen_ai_request_model) "
                            "(rate(gen_ai_client_operation_duration_seconds_bucket"
                            f'{{gen_ai_request_model=~"$model"}}{RATE})))', "{{gen_ai_request_model}}")]),
            ],
        ],
    )
