"""Security and abuse: prompt injections, blocked and rate-limited messages by channel.

No user ids anywhere on this dashboard: counts by channel and the message text of flagged turns only.
"""

from __future__ import annotations

from dashgen.core import (
    Dashboard,
    Panel,
    column,
    panel_link,
    prom,
    prom_variable,
    sql,
    threshold_line,
)

SEL = '{service=~"$service",source=~"$source"}'
SVC = '{service=~"$service"}'
RATE = "[$__rate_interval]"

# The variables are Prometheus ones: a single label value or All (".*"), inserted raw as a regex.
RECENT_ATTEMPTS = """
SELECT t.started_at AS "time", COALESCE(t.source, 'unknown') AS channel, t.service,
       CASE WHEN t.blocked THEN 'blocked' ELSE 'answered' END AS outcome,
       left(t.user_message, 200) AS "user message"
FROM chat_turns t
WHERE $__timeFilter(t.started_at) AND t.prompt_injection
  AND t.service ~ '^(${service:raw})$' AND COALESCE(t.source, 'unknown') ~ '^(${source:raw})$'
ORDER BY t.started_at DESC
LIMIT 100
"""


def _by_channel(title: str, description: str, metric: str) -> Panel:
    return Panel("timeseries", title, description, "short",
                 [prom(f"sum by (source) (increase({metric}{SEL}[$__rate_interval]))", "{{source}}")],
                 width=8, custom={"drawStyle": "bars", "fillOpacity": 70, "stacking": {"mode": "normal"}})


def build() -> Dashboard:
    return Dashboard(
        "security", "otel-chatbot / Security and abuse",
        "Prompt-injection attempts, blocked and rate-limited messages by channel; the injection alert's "
        "figure against its threshold. No user identifiers are shown.",
        [prom_variable("service", "Service", "chatbot_turns_total"),
         prom_variable("source", "Channel", "chatbot_turns_total", selector=SVC)],
        [
            [
                _by_channel("Prompt-injection attempts by channel",
                            "User messages flagged as prompt injection per interval (blocked or not).",
                            "chatbot_prompt_injections_total"),
                _by_channel("Blocked messages by channel", "User messages blocked by a guard per interval.",
                            "chatbot_blocked_messages_total"),
                _by_channel("Rate-limited turns by channel", "Turns refused by a rate limit per interval.",
                            "chatbot_rate_limited_total"),
            ],
            [
                Panel("timeseries", "Prompt injections in 15 min vs alert",
                      "ChatbotPromptInjectionSpike's figure per service against its threshold.", "short",
                      [prom(f"service:chatbot_prompt_injections:increase15m{SVC}", "{{service}}"),
                       prom("chatbot_threshold:prompt_injections_per_15m", "alert threshold")],
                      overrides=[threshold_line()], links=[panel_link("Overview", "overview")]),
                Panel("table", "Abuse by channel in range",
                      "Injection attempts, blocked and rate-limited messages per channel in the range.",
                      "short",
                      [prom(f"sum by (source) (increase(chatbot_prompt_injections_total{SEL}[$__range]))",
                            table=True),
                       prom(f"sum by (source) (increase(chatbot_blocked_messages_total{SEL}[$__range]))",
                            table=True),
                       prom(f"sum by (source) (increase(chatbot_rate_limited_total{SEL}[$__range]))",
                            table=True)],
                      options={"showHeader": True},
                      transformations=[
                          {"id": "merge", "options": {}},
                          {"id": "organize", "options": {
                              "excludeByName": {"Time": True},
                              "renameByName": {"Value #A": "injection attempts", "Value #B": "blocked",
                                               "Value #C": "rate-limited"}}}]),
            ],
            [
                Panel("table", "Recent prompt-injection attempts",
                      "The latest flagged messages (text only, no user id), whether they were blocked.",
                      "short", [sql(RECENT_ATTEMPTS, table=True)], width=24, height=10,
                      overrides=[column("time", "dateTimeAsIso", width=170)]),
            ],
        ],
    )
