-- The blocks span layout (span_storage: blocks): spans stored as compressed blocks, plus narrow rows
-- for what is queried. The `spans` table of the rows layout stays; the setting picks which one the
-- writer fills, and both can hold data at once (the readers look in both).
--
-- span_blocks: zstd-compressed JSON of up to a few hundred spans of one UTC day (store/span_blocks.py
--   describes the format), keyed by a hash of the uncompressed block. Partitioned by day like spans,
--   so retention drops whole days.
-- span_traces: the trace index. One row per (trace, block): which spans of the trace the block holds
--   (8-byte span ids, concatenated) and the end-user ids they carry. The writer reads it, under the
--   per-trace advisory locks, to store a span once however the Collector regroups its retries.
-- llm_calls: one row per LLM span (model, tokens, cost, latency): the review page, exports, SQL.
-- error_spans: one row per span with status ERROR.
CREATE TABLE span_blocks (
    block_id    bytea       NOT NULL,
    -- the earliest span start of the block (every span of a block starts on this UTC day)
    start_time  timestamptz NOT NULL,
    span_count  int         NOT NULL,
    raw_bytes   int         NOT NULL,
    body        bytea       NOT NULL,
    PRIMARY KEY (block_id, start_time)
) PARTITION BY RANGE (start_time);
-- Already compressed: out of line without a second (pglz) compression attempt.
ALTER TABLE span_blocks ALTER COLUMN body SET STORAGE EXTERNAL;

CREATE TABLE span_traces (
    trace_id    text        NOT NULL,
    start_time  timestamptz NOT NULL,  -- the block's start_time: (block_id, start_time) finds the block
    block_id    bytea       NOT NULL,
    span_ids    bytea       NOT NULL,
    user_ids    jsonb  -- a JSON array of strings, NULL when no span names a user
) PARTITION BY RANGE (start_time);
CREATE INDEX span_traces_trace_id_idx ON span_traces (trace_id);

CREATE TABLE llm_calls (
    trace_id        text             NOT NULL,
    span_id         text             NOT NULL,
    parent_span_id  text,
    turn_scope      text             NOT NULL DEFAULT '',
    name            text             NOT NULL,
    service         text             NOT NULL,
    start_time      timestamptz      NOT NULL,
    duration_ms     double precision NOT NULL,
    status_code     smallint         NOT NULL,
    model           text,
    provider        text,
    operation       text,
    input_tokens    int,
    output_tokens   int,
    cost_usd        double precision
) PARTITION BY RANGE (start_time);
CREATE INDEX llm_calls_trace_id_idx ON llm_calls (trace_id);

CREATE TABLE error_spans (
    trace_id        text             NOT NULL,
    span_id         text             NOT NULL,
    parent_span_id  text,
    name            text             NOT NULL,
    service         text             NOT NULL,
    start_time      timestamptz      NOT NULL,
    duration_ms     double precision NOT NULL,
    status_message  text             NOT NULL DEFAULT ''
) PARTITION BY RANGE (start_time);
CREATE INDEX error_spans_trace_id_idx ON error_spans (trace_id);

-- Rows of days outside the window of daily partitions (see 0013).
CREATE TABLE span_blocks_default PARTITION OF span_blocks DEFAULT;
ALTER TABLE span_blocks_default ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE TABLE span_traces_default PARTITION OF span_traces DEFAULT;
CREATE TABLE llm_calls_default PARTITION OF llm_calls DEFAULT;
CREATE TABLE error_spans_default PARTITION OF error_spans DEFAULT;

-- (trace_id, span_id) of every stored span, whichever layout stored it.
CREATE VIEW stored_span_ids AS
SELECT trace_id, span_id FROM spans
UNION ALL
SELECT t.trace_id, encode(substring(t.span_ids FROM i * 8 + 1 FOR 8), 'hex')
FROM span_traces t CROSS JOIN LATERAL generate_series(0, length(t.span_ids) / 8 - 1) AS i;
