-- What the spans of a trace contribute to its turns, per turn scope, so that a turn's usage and flags
-- do not depend on which batch or replica brought which span. scope is the turn id a span carries
-- (chat.turn.id, else chat.in_turn) or '' for the spans of the trace that no turn claims (they count
-- for the trace's auto turn, or for its SDK turn when it has exactly one). Usage is raised only by
-- spans stored for the first time (like trace_usage); flags are OR-ed; a reason is the one of the
-- earliest-starting span that names one (ties: the smaller text); model is the one the latest-starting
-- span naming a model says (ties: the greater name). last_span_at lets retention delete the rows of
-- dropped days.
CREATE TABLE turn_parts (
    trace_id                 text             NOT NULL,
    scope                    text             NOT NULL,
    input_tokens             bigint           NOT NULL DEFAULT 0,
    output_tokens            bigint           NOT NULL DEFAULT 0,
    cost_usd                 double precision NOT NULL DEFAULT 0,
    llm_spans                int              NOT NULL DEFAULT 0,
    model                    text,
    model_at                 timestamptz,
    fallback                 bool             NOT NULL DEFAULT false,
    fallback_reason          text,
    fallback_reason_at       timestamptz,
    hallucinated             bool             NOT NULL DEFAULT false,
    hallucination_source     text,
    hallucination_source_at  timestamptz,
    prompt_injection         bool             NOT NULL DEFAULT false,
    blocked                  bool             NOT NULL DEFAULT false,
    rate_limited             bool             NOT NULL DEFAULT false,
    last_span_at             timestamptz      NOT NULL,
    PRIMARY KEY (trace_id, scope)
);

-- Chat metrics count a turn once it is final: settle_at is when it will be (no span of its trace for
-- the writer's settle period), NULL when nothing is pending; counted is the bit set of what the
-- metrics have counted for it (1 turn, 2 error, 4 fallback, 8 hallucinated, 16 prompt injection,
-- 32 blocked, 64 rate limited), NULL before its first count. Turns stored before this migration were
-- counted by the process that stored them: the constant default marks them (no table rewrite), and
-- dropping it makes new rows start uncounted.
ALTER TABLE chat_turns ADD COLUMN counted smallint DEFAULT 127, ADD COLUMN settle_at timestamptz;
ALTER TABLE chat_turns ALTER COLUMN counted DROP DEFAULT;
CREATE INDEX chat_turns_settle_at_idx ON chat_turns (settle_at) WHERE settle_at IS NOT NULL;

-- Parts of the data already stored: usage by trace (as one unclaimed scope) and each turn's flags.
INSERT INTO turn_parts (trace_id, scope, input_tokens, output_tokens, cost_usd, llm_spans, model, model_at,
                        last_span_at)
SELECT trace_id, '', input_tokens, output_tokens, cost_usd, llm_spans, model, model_at, last_span_at
FROM trace_usage;

INSERT INTO turn_parts AS p (trace_id, scope, fallback, fallback_reason, fallback_reason_at, hallucinated,
                             hallucination_source, hallucination_source_at, prompt_injection, blocked,
                             rate_limited, last_span_at)
SELECT DISTINCT ON (trace_id, scope) trace_id, scope, fallback, fallback_reason, started_at, hallucinated,
       hallucination_source, started_at, prompt_injection, blocked, rate_limited, started_at
FROM (SELECT *, CASE WHEN auto THEN '' ELSE turn_id END AS scope FROM chat_turns
      WHERE fallback OR hallucinated OR prompt_injection OR blocked OR rate_limited) t
ORDER BY trace_id, scope, started_at
ON CONFLICT (trace_id, scope) DO UPDATE
SET fallback = excluded.fallback, fallback_reason = excluded.fallback_reason,
    fallback_reason_at = excluded.fallback_reason_at, hallucinated = excluded.hallucinated,
    hallucination_source = excluded.hallucination_source,
    hallucination_source_at = excluded.hallucination_source_at, prompt_injection = excluded.prompt_injection,
    blocked = excluded.blocked, rate_limited = excluded.rate_limited;

-- trace_usage becomes a view over turn_parts: one upsert per batch instead of two. Its columns keep
-- their meaning (the traces with LLM spans, their sums, the latest model named in the trace).
DROP TABLE trace_usage;
CREATE VIEW trace_usage AS
SELECT trace_id, sum(input_tokens)::bigint AS input_tokens, sum(output_tokens)::bigint AS output_tokens,
       sum(cost_usd) AS cost_usd, sum(llm_spans)::int AS llm_spans,
       (array_agg(model ORDER BY model_at DESC, model DESC) FILTER (WHERE model IS NOT NULL))[1] AS model,
       max(model_at) AS model_at, max(last_span_at) AS last_span_at
FROM turn_parts
GROUP BY trace_id
HAVING sum(llm_spans) > 0;
