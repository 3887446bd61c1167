"""The writer's outcome and turn-extras work (one pipelined statement each, in its last round trip).

Outcomes: a batch's outcome events are inserted into ``outcomes`` (once per event key: a retried span or
log record is not stored twice). An outcome naming a turn takes the turn's session, service and source;
one naming only a turn that is not stored yet is kept ``pending`` and attached (given those, and counted)
in the transaction that stores the turn, like pending feedback. An outcome naming a session is stored as
it comes: it needs no turn. The writer holds the advisory locks of the turn ids involved, so an outcome
and its turn committed at once by two writers meet in exactly one of them.

Turn extras: escalation and prompt / app version, written onto ``chat_turns`` after the batch's turns (and
onto turns stored by earlier batches, for spans that arrive after their turn). A flag once set stays; a
version once known is kept. Turns escalated for the first time are reported for the metrics.
"""

from __future__ import annotations

from typing import Any

import orjson
import psycopg

from otel_chatbot.records import CommitResult, OutcomeRow, TurnExtras

# A batch's outcome events: json [{k, kind, value, label, session_id, turn_id, origin, at_us, service,
# source}, …]. Rows: the inserted outcomes as they were stored (pending ones are not counted yet).
STORE_OUTCOMES = """
WITH incoming AS (
    SELECT * FROM json_to_recordset(%s::json) AS e(k text, kind text, value float8, label text,
        session_id text, turn_id text, origin text, at_us bigint, service text, source text)
), resolved AS (
    SELECT i.*, t.session_id AS turn_session, t.service AS turn_service, t.source AS turn_source,
           t.turn_id IS NOT NULL AS turn_found, s.service AS session_service, s.source AS session_source
    FROM incoming i
    LEFT JOIN LATERAL (
        SELECT c.turn_id, c.session_id, c.service, c.source FROM chat_turns c
        WHERE c.turn_id = i.turn_id ORDER BY c.auto, c.started_at LIMIT 1) t ON true
    LEFT JOIN LATERAL (
        SELECT c.service, c.source FROM chat_turns c
        WHERE c.session_id = COALESCE(i.session_id, t.session_id) ORDER BY c.started_at LIMIT 1) s ON true
)
INSERT INTO outcomes AS o (event_key, kind, value, label, session_id, turn_id, origin, service, source,
                           recorded_at, pending)
SELECT k, kind, value, label, COALESCE(session_id, turn_session), turn_id, origin,
       COALESCE(turn_service, service, session_service), COALESCE(turn_source, source, session_source),
       timestamptz 'epoch' + at_us * interval '1 microsecond',
       turn_id IS NOT NULL AND session_id IS NULL AND NOT turn_found
FROM resolved
ON CONFLICT (event_key) DO NOTHING
RETURNING o.kind, o.value, o.label, o.session_id, o.turn_id, o.origin,
          (extract(epoch FROM o.recorded_at) * 1000000)::bigint, o.service, o.source, o.pending"""

# Pending outcomes of turns stored now (text[] of the batch's turn ids): they get the turn's session,
# service and source. Rows as STORE_OUTCOMES.
ATTACH_OUTCOMES = """
WITH waiting AS (
    SELECT id, turn_id FROM outcomes WHERE pending AND turn_id = ANY(%s::text[])
), turn AS (
    SELECT DISTINCT ON (w.turn_id) w.turn_id, c.session_id, c.service, c.source
    FROM (SELECT DISTINCT turn_id FROM waiting) w JOIN chat_turns c ON c.turn_id = w.turn_id
    ORDER BY w.turn_id, c.auto, c.started_at
)
UPDATE outcomes o
SET pending = false, session_id = t.session_id, service = COALESCE(t.service, o.service),
    source = COALESCE(t.source, o.source)
FROM waiting w JOIN turn t USING (turn_id)
WHERE o.id = w.id
RETURNING o.kind, o.value, o.label, o.session_id, o.turn_id, o.origin,
          (extract(epoch FROM o.recorded_at) * 1000000)::bigint, o.service, o.source, o.pending"""

# Escalation and versions onto stored turns: json [{t: trace_id, id: turn id (whatever its trace), or
# null (every turn of the trace t), e: escalated, r: reason, p: prompt version, a: app version}, …].
# Rows: (service, source, escalation_reason) of the turns escalated for the first time that the metrics
# have counted already (one not counted yet is counted escalated when it settles).
UPDATE_TURN_EXTRAS = """
WITH x AS (
    SELECT * FROM json_to_recordset(%s::json) AS e(t text, id text, e bool, r text, p text, a text)
), target AS (
    SELECT c.turn_id, c.started_at, bool_or(c.escalated) AS was, bool_or(c.counted IS NOT NULL) AS counted,
           bool_or(x.e) AS e, min(x.r) AS r, min(x.p) AS p, min(x.a) AS a
    FROM x CROSS JOIN LATERAL (
        SELECT turn_id, started_at, escalated, counted FROM chat_turns
        WHERE x.id IS NOT NULL AND turn_id = x.id
        UNION ALL
        SELECT turn_id, started_at, escalated, counted FROM chat_turns
        WHERE x.id IS NULL AND trace_id = x.t) c
    GROUP BY c.turn_id, c.started_at
)
UPDATE chat_turns c
SET escalated = c.escalated OR g.e, escalation_reason = COALESCE(c.escalation_reason, g.r),
    prompt_version = COALESCE(c.prompt_version, g.p), app_version = COALESCE(c.app_version, g.a)
FROM target g
WHERE c.turn_id = g.turn_id AND c.started_at = g.started_at
  AND (c.escalated OR g.e, COALESCE(c.escalation_reason, g.r), COALESCE(c.prompt_version, g.p),
       COALESCE(c.app_version, g.a))
      IS DISTINCT FROM (c.escalated, c.escalation_reason, c.prompt_version, c.app_version)
RETURNING c.service, c.source, c.escalation_reason, c.escalated AND NOT g.was AND g.counted"""


def lock_ids(outcomes: list[OutcomeRow]) -> list[str]:
    """Turn ids the writer must lock for the outcomes (attaching reads and updates by turn id)."""
    return [o.turn_id for o in outcomes if o.turn_id is not None]


def outcomes_json(outcomes: list[OutcomeRow]) -> str:
    return orjson.dumps([{"k": o.key, "kind": o.kind, "value": o.value, "label": o.label,
                          "session_id": o.session_id, "turn_id": o.turn_id, "origin": o.origin,
                          "at_us": o.time_ns // 1000, "service": o.service, "source": o.source}
                         for o in outcomes]).decode()


def extras_json(extras: list[TurnExtras]) -> str:
    return orjson.dumps([{"t": x.trace_id, "id": x.turn_id, "e": x.escalated, "r": x.escalation_reason,
                          "p": x.prompt_version, "a": x.app_version} for x in extras]).decode()


class OutcomeStep:
    """``send`` queues the statements after the turns are written; ``apply`` reads their results."""

    def __init__(self) -> None:
        self._cursors: list[psycopg.Cursor[Any]] = []
        self._extras: psycopg.Cursor[Any] | None = None

    def send(self, conn: psycopg.Connection[Any], turn_ids: str | list[str], outcomes: list[OutcomeRow],
             extras: list[TurnExtras]) -> None:
        """``turn_ids``: the batch's turn ids as a text[] literal or a list."""
        if extras:
            self._extras = conn.execute(UPDATE_TURN_EXTRAS, (extras_json(extras),))
        if turn_ids and turn_ids != "{}":
            self._cursors.append(conn.execute(ATTACH_OUTCOMES, (turn_ids,)))
        if outcomes:
            self._cursors.append(conn.execute(STORE_OUTCOMES, (outcomes_json(outcomes),)))

    def apply(self, result: CommitResult) -> None:
        for cur in self._cursors:
            for kind, value, label, session, turn, origin, at_us, service, source, pending in cur.fetchall():
                if pending:
                    result.parked_outcomes += 1
                    continue
                result.new_outcomes.append(OutcomeRow(
                    str(kind), None if value is None else float(value), _opt(label), _opt(session),
                    _opt(turn), str(origin), int(at_us) * 1000, _opt(service), _opt(source)))
        if self._extras is not None:
            result.new_escalations += [(str(service), _opt(source), _opt(reason))
                                       for service, source, reason, newly in self._extras.fetchall() if newly]


def _opt(value: object) -> str | None:
    return None if value is None else str(value)
