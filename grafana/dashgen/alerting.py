"""Grafana-managed alert rules for what only Postgres knows, and their route to Alertmanager.

Prometheus alerts (prometheus/rules) cover the chat metrics; these cover the day-long quality
signals kept in tables: thumbs-down share per channel, judge scores per dimension, and a failure
cluster that grows fast. Each rule links to the dashboard panel that shows its figure.
"""

from __future__ import annotations

from typing import Any

from dashgen import quality
from dashgen.core import UIDS, panel_id

FOLDER = "otel-chatbot"
RUNBOOK = "https://github.com/otel-chatbot/otel-chatbot/blob/main/docs/alerts.md#"
ALERTMANAGER_URL = "http://alertmanager:9093"

# The thumbs-down share of each channel's ratings over the last day (channels with >= 10 ratings). Their
# turns are found by id through chat_turns_by_id (migration 0015), not by probing every daily partition.
THUMBS_DOWN_DAILY = """
SELECT t.service, COALESCE(t.source, 'unknown') AS channel,
       count(*) FILTER (WHERE f.rating = 'down')::double precision / count(*) AS value
FROM feedback f
JOIN chat_turns_by_id(ARRAY(SELECT turn_id FROM feedback WHERE given_at > now() - interval '1 day')) t
     ON t.turn_id = f.turn_id
WHERE f.given_at > now() - interval '1 day'
GROUP BY 1, 2
HAVING count(*) >= 10
"""

# Mean judge score per service and dimension over the last day (>= 5 scores).
JUDGE_SCORES_DAILY = """
SELECT t.service, d.dimension, avg(d.score)::double precision AS value
FROM evaluations e
JOIN chat_turns_by_id(ARRAY(SELECT turn_id FROM evaluations WHERE created_at > now() - interval '1 day')) t
     ON t.turn_id = e.turn_id
CROSS JOIN LATERAL (VALUES ('accuracy', e.accuracy), ('relevance', e.relevance),
                           ('clarity', e.clarity), ('groundedness', e.groundedness)) AS d (dimension, score)
WHERE e.created_at > now() - interval '1 day' AND d.score IS NOT NULL
GROUP BY 1, 2
HAVING count(*) >= 5
"""

# Growth of each failure cluster of the latest run of the last day: size over the previous window's
# size (a new cluster counts its size). Clusters under 5 turns are ignored.
FAILURE_CLUSTER_GROWTH = """
SELECT c.label AS cluster, COALESCE(c.trend, c.size)::double precision AS value
FROM failure_clusters c
WHERE c.run_id = (SELECT max(run_id) FROM failure_cluster_runs WHERE created_at > now() - interval '1 day')
  AND c.size >= 5
"""


# Annotation templates use .Labels/.Values rather than $labels/$values: no "$" for the provisioning
# loader's environment-variable expansion to touch.
def _rule(uid: str, title: str, query: str, evaluator: str, limit: float, for_: str, severity: str,
          summary: str, description: str, panel: str) -> dict[str, Any]:
    sql = "\n".join(line.rstrip() for line in query.strip().splitlines())
    return {
        "uid": uid, "title": title, "condition": "B",
        "data": [
            {"refId": "A", "relativeTimeRange": {"from": 86400, "to": 0}, "datasourceUid": "postgres",
             "model": {"refId": "A", "rawSql": sql, "format": "table", "rawQuery": True,
                       "editorMode": "code", "intervalMs": 60000, "maxDataPoints": 43200}},
            {"refId": "B", "datasourceUid": "__expr__",
             "model": {"refId": "B", "type": "threshold", "expression": "A",
                       "datasource": {"type": "__expr__", "uid": "__expr__"},
                       "conditions": [{"evaluator": {"type": evaluator, "params": [limit]}}]}},
        ],
        # The rule links to the panel showing its figure (Grafana adds the dashboard/panel annotations).
        "dashboardUid": UIDS["quality"], "panelId": panel_id(quality.build(), panel),
        "noDataState": "OK", "execErrState": "Error", "for": for_, "isPaused": False,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description,
                        "runbook_url": RUNBOOK + title.lower()},
    }


def rules() -> dict[str, Any]:
    return {"apiVersion": 1, "groups": [{
        "orgId": 1, "name": "otel-chatbot-quality", "folder": FOLDER, "interval": "5m",
        "rules": [
            _rule("otel-chatbot-thumbs-down-daily", "ChatbotThumbsDownDaily", THUMBS_DOWN_DAILY, "gt", 0.3,
                  "30m", "ticket", "{{ .Labels.service }} / {{ .Labels.channel }}: "
                  "{{ humanizePercentage .Values.A.Value }} of the day's ratings are thumbs-down",
                  "More than 30% of the ratings given on channel {{ .Labels.channel }} in the last 24 hours "
                  "were thumbs-down.", "Thumbs-down share by channel"),
            _rule("otel-chatbot-judge-scores-low", "ChatbotJudgeScoresLow", JUDGE_SCORES_DAILY, "lt", 6.0,
                  "30m", "ticket", "{{ .Labels.service }}: mean judge {{ .Labels.dimension }} score "
                  "{{ printf \"%.1f\" .Values.A.Value }} over the last day",
                  "The LLM judge's mean {{ .Labels.dimension }} score over the last 24 hours is under the "
                  "target of 6/10.", "Judge scores per dimension"),
            _rule("otel-chatbot-failure-cluster-spike", "ChatbotFailureClusterSpike", FAILURE_CLUSTER_GROWTH,
                  "gt", 2.0, "0s", "ticket", "failure cluster '{{ .Labels.cluster }}' grew "
                  "{{ printf \"%.1f\" .Values.A.Value }}x",
                  "One failure cluster of the latest `otel-chatbot failures` run is more than twice its size "
                  "in the previous window (or new with at least 5 turns).", "Failure clusters (latest run)"),
        ],
    }]}


def contact_points() -> dict[str, Any]:
    """Grafana-managed alerts go to the stack's Alertmanager, which routes them by severity."""
    return {
        "apiVersion": 1,
        "contactPoints": [{"orgId": 1, "name": "alertmanager", "receivers": [{
            "uid": "otel-chatbot-alertmanager", "type": "prometheus-alertmanager",
            "settings": {"url": ALERTMANAGER_URL}, "disableResolveMessage": False}]}],
        "policies": [{"orgId": 1, "receiver": "alertmanager",
                      "group_by": ["grafana_folder", "alertname", "service"]}],
    }
