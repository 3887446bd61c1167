-- LLM usage per trace, kept by the writer so that a turn's tokens/cost/model are one primary-key probe
-- instead of a sum over the trace's spans in every daily partition. Incremented only by spans the
-- writer has just inserted for the first time (so a retried batch adds nothing). model is the model
-- of the latest-starting LLM span that names one (model_at is that span's start); last_span_at lets
-- retention delete rows of traces whose spans it dropped (no index on it: updates stay HOT).
CREATE TABLE trace_usage (
    trace_id       text             PRIMARY KEY,
    input_tokens   bigint           NOT NULL DEFAULT 0,
    output_tokens  bigint           NOT NULL DEFAULT 0,
    cost_usd       double precision NOT NULL DEFAULT 0,
    llm_spans      int              NOT NULL DEFAULT 0,
    model          text,
    model_at       timestamptz,
    last_span_at   timestamptz      NOT NULL
);


-- Usage of the spans already stored (a database written by an earlier version).
INSERT INTO trace_usage (trace_id, input_tokens, output_tokens, cost_usd, llm_spans, model, model_at,
                         last_span_at)
SELECT trace_id, COALESCE(sum(input_tokens), 0), COALESCE(sum(output_tokens), 0), COALESCE(sum(cost_usd), 0),
       count(*), (array_agg(model ORDER BY start_time DESC) FILTER (WHERE model IS NOT NULL))[1],
       max(start_time) FILTER (WHERE model IS NOT NULL), max(start_time)
FROM spans
WHERE input_tokens IS NOT NULL OR output_tokens IS NOT NULL OR cost_usd IS NOT NULL
GROUP BY trace_id;
