"""Conversations: recent turns, and one whole conversation in order when a session is chosen (Postgres).

A click on a session (here, on the Quality and Engagement tables) sets ``var-session`` on this
dashboard; the drill-down panels then show that conversation from its first turn, whatever the range
(conversation_turns, migration 0015: the rollups say which days the conversation's turns are on).
"""

from __future__ import annotations

from dashgen import sqlvars
from dashgen.core import Dashboard, Panel, column, dashboard_url, sql, textbox

SESSION_LINK = sqlvars.session_link(dashboard_url("conversations", "var-session=${__value.raw}"))

RECENT_TURNS = f"""
SELECT t.started_at AS "time", t.session_id AS session, COALESCE(t.source, 'unknown') AS channel,
       t.user_message AS "user message", t.bot_response AS reply, t.latency_seconds AS latency,
       {sqlvars.flags()} AS flags, f.rating
FROM chat_turns t
LEFT JOIN feedback f ON f.turn_id = t.turn_id
WHERE $__timeFilter(t.started_at) AND {sqlvars.turn_filter()}
  AND ('$session' = '' OR t.session_id = '$session')
ORDER BY t.started_at DESC
LIMIT 500
"""

CONVERSATION = f"""
SELECT t.started_at AS "time", row_number() OVER (ORDER BY t.started_at) AS turn,
       t.user_message AS "user message", t.bot_response AS reply, t.latency_seconds AS latency,
       {sqlvars.flags()} AS flags, f.rating, f.comment, t.model,
       t.input_tokens + t.output_tokens AS tokens, t.cost_usd AS cost
FROM conversation_turns('$session') t
LEFT JOIN feedback f ON f.turn_id = t.turn_id
ORDER BY t.started_at
"""

CONVERSATION_SUMMARY = """
SELECT min(t.started_at) AS started, max(t.started_at) AS "last turn", count(*) AS turns,
       string_agg(DISTINCT COALESCE(t.source, 'unknown'), ', ') AS channel,
       string_agg(DISTINCT t.service, ', ') AS service,
       count(f.rating) FILTER (WHERE f.rating = 'down') AS "rated down",
       sum(t.cost_usd) AS cost
FROM conversation_turns('$session') t
LEFT JOIN feedback f ON f.turn_id = t.turn_id
"""


def build() -> Dashboard:
    return Dashboard(
        "conversations", "otel-chatbot / Conversations",
        "Recent turns with their flags and ratings; enter or click a session to read that conversation "
        "in order.",
        [*sqlvars.variables(), textbox("session", "Session")],
        [
            [
                Panel("table", "Conversation $session: summary",
                      "The chosen conversation (set the Session variable, or click a session below).",
                      "short", [sql(CONVERSATION_SUMMARY, table=True)], width=24, height=4,
                      overrides=[column("started", "dateTimeAsIso"), column("last turn", "dateTimeAsIso"),
                                 column("cost", "currencyUSD")]),
            ],
            [
                Panel("table", "Conversation $session, turn by turn",
                      "Every turn of the chosen conversation, oldest first, whatever the time range.",
                      "short", [sql(CONVERSATION, table=True)], width=24, height=12,
                      overrides=[column("time", "dateTimeAsIso", width=170), column("turn", width=60),
                                 column("latency", "s"), column("cost", "currencyUSD")]),
            ],
            [
                Panel("table", "Recent turns",
                      "Latest turns in the range (at most 500); click a session to read the conversation.",
                      "short", [sql(RECENT_TURNS, table=True)], width=24, height=14,
                      overrides=[column("time", "dateTimeAsIso", width=170),
                                 column("session", link=SESSION_LINK, width=190),
                                 column("latency", "s")]),
            ],
        ],
        time_from="now-24h",
    )
