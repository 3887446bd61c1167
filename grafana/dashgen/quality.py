"""Quality: ratings, judge scores, hallucinations and the worst recent turns (Postgres + Prometheus)."""

from __future__ import annotations

from dashgen import sqlvars
from dashgen.core import Dashboard, Panel, column, dashboard_url, prom, sql, threshold_line, threshold_steps

F = sqlvars.turn_filter()
PROM_SVC = '{service=~"${service:regex}"}'
SESSION_LINK = sqlvars.session_link(dashboard_url("conversations", "var-session=${__value.raw}"))
# The turns of the ratings (judge scores) given in the range, found by id through chat_turns_by_id
# (migration 0015: the turn index says which partitions) instead of probing every daily partition.
RATED_TURNS = "chat_turns_by_id(ARRAY(SELECT turn_id FROM feedback WHERE $__timeFilter(given_at)))"
JUDGED_TURNS = "chat_turns_by_id(ARRAY(SELECT turn_id FROM evaluations WHERE $__timeFilter(created_at)))"

THUMBS_OVER_TIME = f"""
SELECT $__timeGroupAlias(f.given_at, $__interval),
       count(*) FILTER (WHERE f.rating = 'up') AS "thumbs up",
       count(*) FILTER (WHERE f.rating = 'down') AS "thumbs down"
FROM feedback f
JOIN {RATED_TURNS} t ON t.turn_id = f.turn_id
WHERE $__timeFilter(f.given_at) AND {F}
GROUP BY 1
ORDER BY 1
"""

DOWN_SHARE_BY_CHANNEL = f"""
SELECT COALESCE(t.source, 'unknown') AS channel,
       count(*) FILTER (WHERE f.rating = 'down')::double precision / count(*) AS "thumbs-down share",
       count(*) AS ratings
FROM feedback f
JOIN {RATED_TURNS} t ON t.turn_id = f.turn_id
WHERE $__timeFilter(f.given_at) AND {F}
GROUP BY 1
ORDER BY 2 DESC
"""

JUDGE_SCORES = f"""
SELECT $__timeGroupAlias(e.created_at, $__interval),
       avg(e.accuracy) AS accuracy, avg(e.relevance) AS relevance,
       avg(e.clarity) AS clarity, avg(e.groundedness) AS groundedness
FROM evaluations e
JOIN {JUDGED_TURNS} t ON t.turn_id = e.turn_id
WHERE $__timeFilter(e.created_at) AND {sqlvars.turn_filter(model=True)}
GROUP BY 1
ORDER BY 1
"""

HALLUCINATION_BY_CHANNEL = f"""
SELECT $__timeGroupAlias(t.started_at, $__interval),
       COALESCE(t.source, 'unknown') AS metric,
       avg(t.hallucinated::int)::double precision AS value
FROM chat_turns t
WHERE $__timeFilter(t.started_at) AND {sqlvars.turn_filter(model=True)}
GROUP BY 1, 2
ORDER BY 1
"""

WORST_TURNS = f"""
SELECT t.started_at AS "time", t.session_id AS session, COALESCE(t.source, 'unknown') AS channel,
       t.user_message AS "user message", t.bot_response AS reply, {sqlvars.flags()} AS flags,
       f.rating, j.score AS "lowest judge score", t.latency_seconds AS latency
FROM chat_turns t
LEFT JOIN feedback f ON f.turn_id = t.turn_id
LEFT JOIN LATERAL (
    SELECT least(e.accuracy, e.relevance, e.clarity, e.groundedness) AS score
    FROM evaluations e WHERE e.turn_id = t.turn_id ORDER BY e.created_at DESC LIMIT 1
) j ON true
WHERE $__timeFilter(t.started_at) AND {sqlvars.turn_filter(model=True)}
  AND (f.rating = 'down' OR j.score < 5 OR t.error OR t.fallback OR t.hallucinated)
ORDER BY (f.rating = 'down') DESC, j.score ASC NULLS LAST, t.started_at DESC
LIMIT 50
"""

# The user messages of a cluster's first three example turns (most central first), for the table.
# chat_turns_by_id finds them through the rollup's turn index: no probe of every daily partition.
CLUSTER_EXAMPLES = """SELECT string_agg(left(t.user_message, 160), ' | ' ORDER BY e.n)
        FROM unnest(c.example_turn_ids[1:3]) WITH ORDINALITY AS e(turn_id, n)
        JOIN chat_turns_by_id(c.example_turn_ids[1:3]) t ON t.turn_id = e.turn_id"""

FAILURE_CLUSTERS = f"""
SELECT c.label AS cluster, c.size AS turns, c.share, c.previous_size AS "previous window", c.trend,
       c.representative_message AS example, r.window_start AS "window start", r.window_end AS "window end",
       ({CLUSTER_EXAMPLES}) AS "example messages"
FROM failure_clusters c
JOIN failure_cluster_runs r ON r.run_id = c.run_id
WHERE r.run_id = (SELECT max(run_id) FROM failure_cluster_runs WHERE $__timeFilter(window_end))
ORDER BY c.size DESC
"""

# Cluster sizes per stored run (at the end of the run's window), a series per cluster name: k-means
# numbers clusters afresh each run, so the name (its characteristic terms) is what links runs.
FAILURE_CLUSTER_SIZES = """
SELECT r.window_end AS "time", c.label AS metric, sum(c.size) AS value
FROM failure_clusters c
JOIN failure_cluster_runs r ON r.run_id = c.run_id
WHERE $__timeFilter(r.window_end)
GROUP BY 1, 2
ORDER BY 1
"""


def build() -> Dashboard:
    score_steps = threshold_steps((None, "red"), (5, "orange"), (7, "green"))
    return Dashboard(
        "quality", "otel-chatbot / Quality",
        "What users and the LLM judge think of the answers: thumbs up/down by channel, judge scores per "
        "dimension, hallucinations, failure clusters and the worst recent turns.",
        sqlvars.variables(model=True),
        [
            [
                Panel("timeseries", "Thumbs up / down", "Ratings given per interval (feedback table).",
                      "short", [sql(THUMBS_OVER_TIME)], width=8,
                      custom={"drawStyle": "bars", "fillOpacity": 60, "stacking": {"mode": "normal"}}),
                Panel("bargauge", "Thumbs-down share by channel",
                      "Share of the ratings given in the range that are thumbs-down, per channel.",
                      "percentunit", [sql(DOWN_SHARE_BY_CHANNEL, table=True)], width=8,
                      steps=threshold_steps((None, "green"), (0.3, "red")), min=0, max=1,
                      options={"orientation": "horizontal", "displayMode": "gradient",
                               "reduceOptions": {"values": True, "calcs": [],
                                                 "fields": "/thumbs-down share/"}}),
                Panel("timeseries", "Thumbs-down share (1 h) vs alert",
                      "ChatbotThumbsDownSpike's figure (Prometheus) against its threshold.", "percentunit",
                      [prom(f"service:chatbot_feedback_down:ratio_rate1h{PROM_SVC}", "{{service}}"),
                       prom("chatbot_threshold:thumbs_down_ratio_1h", "alert threshold")],
                      width=8, overrides=[threshold_line()]),
            ],
            [
                Panel("timeseries", "Judge scores per dimension",
                      "Mean LLM-judge score (0-10) of the turns judged per interval (evaluations table).",
                      "none", [sql(JUDGE_SCORES)], width=12, min=0, max=10, steps=score_steps),
                Panel("timeseries", "Judge score median per dimension (Prometheus)",
                      "Median of the judge scores observed in the range (chatbot_evaluation_score).",
                      "none",
                      [prom("histogram_quantile(0.5, sum by (dimension, le) "
                            "(increase(chatbot_evaluation_score_bucket[$__range])))", "{{dimension}}")],
                      width=12, min=0, max=10),
            ],
            [
                Panel("timeseries", "Hallucination share by channel",
                      "Share of turns flagged hallucinated (by the app, the judge or a reviewer).",
                      "percentunit", [sql(HALLUCINATION_BY_CHANNEL)], width=12, min=0),
                Panel("timeseries", "Hallucination share (30 min) vs alert",
                      "ChatbotHallucinationSpike's figure (Prometheus) against its threshold.",
                      "percentunit",
                      [prom(f"service:chatbot_hallucinations:ratio_rate30m{PROM_SVC}", "{{service}}"),
                       prom("chatbot_threshold:hallucination_ratio_30m", "alert threshold")],
                      width=12, overrides=[threshold_line()]),
            ],
            [
                Panel("table", "Worst recent turns",
                      "Turns rated down, judged below 5, or flagged (error, fallback, hallucination); "
                      "click a session to read the whole conversation.", "short",
                      [sql(WORST_TURNS, table=True)], width=24, height=10,
                      overrides=[column("time", "dateTimeAsIso", width=170),
                                 column("session", link=SESSION_LINK, width=190),
                                 column("latency", "s"), column("lowest judge score", "none")]),
            ],
            [
                Panel("table", "Failure clusters (latest run)",
                      "Clusters of problem turns from the latest `otel-chatbot failures` run whose window "
                      "ends in the range; trend is size over the previous window's size.", "short",
                      [sql(FAILURE_CLUSTERS, table=True)], width=24,
                      overrides=[column("share", "percentunit"), column("trend", "none"),
                                 column("window start", "dateTimeAsIso"),
                                 column("window end", "dateTimeAsIso")]),
            ],
            [
                Panel("timeseries", "Failure cluster sizes across runs",
                      "Problem turns per failure cluster in each stored `otel-chatbot failures` run whose "
                      "window ends in the range, at the window's end; one series per cluster name.",
                      "short", [sql(FAILURE_CLUSTER_SIZES)], width=24,
                      custom={"drawStyle": "line", "showPoints": "always", "pointSize": 6,
                              "spanNulls": True}),
            ],
        ],
    )
