"""Engagement: conversations per day, turns per conversation, returning users, drop-off, CSAT,
conversion, lead and escalation rates (Postgres).

Reads the engagement_* views of migration 0006 and business_outcomes_daily (0014, 0019) through their window
functions (0015: the same rows, for the range's days only, closed days from the rollups), as
`otel-chatbot stats` does. Days are UTC dates; the range's first and last day are included.
"""

from __future__ import annotations

from dashgen import sqlvars
from dashgen.core import Dashboard, Panel, column, dashboard_url, sql, threshold_steps

V = sqlvars.view_filter()
# The range's first and last UTC day, the arguments of the *_between(first, last) functions.
DAYS = ("($__timeFrom()::timestamptz AT TIME ZONE 'UTC')::date, "
        "($__timeTo()::timestamptz AT TIME ZONE 'UTC')::date")
RANGE = "$__timeFrom()::timestamptz, $__timeTo()::timestamptz"
DAY_TIME = "(day::timestamp AT TIME ZONE 'UTC') AS \"time\""
SESSION_LINK = sqlvars.session_link(dashboard_url("conversations", "var-session=${__value.raw}"))

CONVERSATIONS_PER_DAY = f"""
SELECT {DAY_TIME}, source AS metric, sum(conversations) AS value
FROM engagement_conversations_daily_between({DAYS})
WHERE {V}
GROUP BY 1, 2
ORDER BY 1
"""

CONVERSATIONS_BY_CHANNEL = f"""
SELECT source AS channel, sum(conversations) AS conversations
FROM engagement_conversations_daily_between({DAYS})
WHERE {V}
GROUP BY 1
ORDER BY 2 DESC
"""

TURNS_PER_CONVERSATION = f"""
SELECT {DAY_TIME}, source AS metric, sum(avg_turns * conversations) / sum(conversations) AS value
FROM engagement_turns_per_conversation_between({DAYS})
WHERE {V}
GROUP BY 1, 2
ORDER BY 1
"""

TURNS_DISTRIBUTION = f"""
SELECT turns::text AS "turns in the conversation", count(*) AS conversations
FROM engagement_conversations_between({RANGE})
WHERE {V}
GROUP BY turns
ORDER BY turns
"""

RETURNING_USERS = f"""
SELECT {DAY_TIME}, sum(returning_users) AS "returning users", sum(new_users) AS "new users"
FROM engagement_returning_users_between({DAYS})
WHERE {V}
GROUP BY 1
ORDER BY 1
"""

DROPOFF_BY_DEPTH = f"""
SELECT turn_number::text AS "left after turn",
       count(*) FILTER (WHERE reason = 'fallback') AS fallback,
       count(*) FILTER (WHERE reason = 'error') AS error,
       count(*) FILTER (WHERE reason = 'hallucination') AS hallucination,
       count(*) FILTER (WHERE reason IN ('blocked', 'rate_limited')) AS "blocked or rate-limited",
       count(*) FILTER (WHERE reason = 'rated_down') AS "rated down"
FROM engagement_dropoff_between({RANGE})
WHERE {V}
GROUP BY turn_number
ORDER BY turn_number
"""

DROPOFF_TURNS = f"""
SELECT last_turn_at AS "time", session_id AS session, source AS channel, turn_number AS "turn",
       reason, user_message AS "user message", bot_response AS reply
FROM engagement_dropoff_between({RANGE})
WHERE {V}
ORDER BY last_turn_at DESC
LIMIT 100
"""

CSAT = f"""
SELECT {DAY_TIME}, source AS metric, sum(thumbs_up)::double precision / NULLIF(sum(rated_turns), 0) AS value
FROM engagement_csat_daily_between({DAYS})
WHERE {V}
GROUP BY 1, 2
ORDER BY 1
"""

# business_outcomes_daily (migration 0014): conversations of the day with a conversion outcome, and the
# share of the day's turns handed to a human agent.
CONVERSION_RATE = f"""
SELECT {DAY_TIME}, source AS metric,
       sum(converted_conversations)::double precision / NULLIF(sum(conversations), 0) AS value
FROM business_outcomes_daily_between({DAYS})
WHERE {V}
GROUP BY 1, 2
ORDER BY 1
"""

ESCALATION_RATE = f"""
SELECT {DAY_TIME}, source AS metric, sum(escalated_turns)::double precision / NULLIF(sum(turns), 0) AS value
FROM business_outcomes_daily_between({DAYS})
WHERE {V}
GROUP BY 1, 2
ORDER BY 1
"""

# business_outcomes_daily's lead columns (migration 0019): conversations that left a lead (contact
# details, a demo request…), apart from conversions.
LEAD_RATE = f"""
SELECT {DAY_TIME}, source AS metric,
       sum(lead_conversations)::double precision / NULLIF(sum(conversations), 0) AS value
FROM business_outcomes_daily_between({DAYS})
WHERE {V}
GROUP BY 1, 2
ORDER BY 1
"""

LEADS_BY_DAY = f"""
SELECT {DAY_TIME}, sum(lead_conversations) AS "conversations with a lead",
       sum(converted_conversations) AS "conversations with a conversion"
FROM business_outcomes_daily_between({DAYS})
WHERE {V}
GROUP BY 1
ORDER BY 1
"""


def build() -> Dashboard:
    return Dashboard(
        "engagement", "otel-chatbot / Engagement",
        "How people use the bot: conversations per day, turns per conversation, returning users, "
        "where conversations are abandoned and CSAT, by channel (engagement_* views in Postgres).",
        sqlvars.variables(),
        [
            [
                Panel("timeseries", "Conversations per day", "Conversations by the UTC day they started.",
                      "short", [sql(CONVERSATIONS_PER_DAY)], width=16,
                      custom={"drawStyle": "bars", "fillOpacity": 70, "stacking": {"mode": "normal"}}),
                Panel("piechart", "Conversations by channel", "Conversations started in the range's days.",
                      "short", [sql(CONVERSATIONS_BY_CHANNEL, table=True)], width=8,
                      options={"reduceOptions": {"values": True, "calcs": [], "fields": "/conversations/"},
                               "pieType": "donut", "legend": {"displayMode": "table", "placement": "right",
                                                               "values": ["value"]}}),
            ],
            [
                Panel("timeseries", "Turns per conversation", "Mean turns per conversation, by start day.",
                      "short", [sql(TURNS_PER_CONVERSATION)], width=12, decimals=1),
                Panel("barchart", "Conversation length", "Conversations started in the range, by turns.",
                      "short", [sql(TURNS_DISTRIBUTION, table=True)], width=12,
                      options={"xField": "turns in the conversation", "orientation": "vertical"}),
            ],
            [
                Panel("timeseries", "Returning and new users per day",
                      "Users active per day; returning users had a turn with the service on an earlier day.",
                      "short", [sql(RETURNING_USERS)], width=12,
                      custom={"drawStyle": "bars", "fillOpacity": 70, "stacking": {"mode": "normal"}}),
                Panel("timeseries", "CSAT by channel",
                      "Share of rated turns rated thumbs-up, per day and channel.", "percentunit",
                      [sql(CSAT)], width=12, min=0, max=1,
                      steps=threshold_steps((None, "red"), (0.7, "green"))),
            ],
            [
                Panel("timeseries", "Conversion rate by channel",
                      "Conversations with a conversion outcome (record_outcome, POST /v1/outcomes) among the "
                      "conversations of the day.", "percentunit", [sql(CONVERSION_RATE)], width=12, min=0,
                      max=1),
                Panel("timeseries", "Escalation rate by channel",
                      "Share of the day's turns handed to a human agent (chat.escalated).", "percentunit",
                      [sql(ESCALATION_RATE)], width=12, min=0,
                      steps=threshold_steps((None, "green"), (0.15, "red"))),
            ],
            [
                Panel("barchart", "Where conversations are abandoned",
                      "Abandoned conversations (30 min without a turn after a bad last answer) by the "
                      "turn they ended on and what went wrong.", "short", [sql(DROPOFF_BY_DEPTH, table=True)],
                      width=10, options={"xField": "left after turn", "stacking": "normal"}),
                Panel("table", "Last turns of abandoned conversations",
                      "The answer users left on; click a session to read the conversation.", "short",
                      [sql(DROPOFF_TURNS, table=True)], width=14,
                      overrides=[column("time", "dateTimeAsIso", width=170),
                                 column("session", link=SESSION_LINK, width=190)]),
            ],
            [
                Panel("timeseries", "Lead rate by channel",
                      "Conversations with a lead outcome (record_outcome(..., \"lead\"), POST /v1/outcomes) "
                      "among the conversations of the day; leads are counted apart from conversions.",
                      "percentunit", [sql(LEAD_RATE)], width=12, min=0, max=1),
                Panel("timeseries", "Leads and conversions per day",
                      "Conversations of the day with a lead outcome and with a conversion outcome.",
                      "short", [sql(LEADS_BY_DAY)], width=12,
                      custom={"drawStyle": "bars", "fillOpacity": 70}),
            ],
        ],
        time_from="now-30d", refresh="5m",
    )
