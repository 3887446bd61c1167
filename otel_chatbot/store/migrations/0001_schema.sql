-- Core schema. spans and chat_turns are partitioned by day (UTC) so that retention drops whole
-- partitions instead of running DELETEs; the writer creates the daily partitions on demand
-- (spans_pYYYYMMDD, chat_turns_pYYYYMMDD). Keys include the partition column, as Postgres requires.

CREATE TABLE spans (
    trace_id        text             NOT NULL,
    span_id         text             NOT NULL,
    parent_span_id  text,
    name            text             NOT NULL,
    kind            smallint         NOT NULL,
    start_time      timestamptz      NOT NULL,
    end_time        timestamptz      NOT NULL,
    duration_ms     double precision NOT NULL,
    status_code     smallint         NOT NULL,
    status_message  text             NOT NULL DEFAULT '',
    service         text             NOT NULL,
    model           text,
    provider        text,
    input_tokens    int,
    output_tokens   int,
    cost_usd        double precision,
    operation       text,
    attributes      jsonb            NOT NULL DEFAULT '{}',
    resource        jsonb            NOT NULL DEFAULT '{}',
    events          jsonb            NOT NULL DEFAULT '[]',
    -- (trace_id, span_id) identifies a span; start_time is here because a partitioned table's keys
    -- must contain the partition column. A retried batch carries the same start_time, so it conflicts.
    PRIMARY KEY (trace_id, span_id, start_time)
) PARTITION BY RANGE (start_time);

CREATE TABLE chat_turns (
    turn_id               text             NOT NULL,
    started_at            timestamptz      NOT NULL,
    trace_id              text             NOT NULL,
    span_id               text             NOT NULL,
    auto                  bool             NOT NULL DEFAULT false,
    session_id            text,
    user_id               text,
    source                text,
    service               text             NOT NULL,
    latency_seconds       double precision NOT NULL DEFAULT 0,
    user_message          text,
    bot_response          text,
    model                 text,
    input_tokens          bigint           NOT NULL DEFAULT 0,
    output_tokens         bigint           NOT NULL DEFAULT 0,
    cost_usd              double precision NOT NULL DEFAULT 0,
    fallback              bool             NOT NULL DEFAULT false,
    fallback_reason       text,
    hallucinated          bool             NOT NULL DEFAULT false,
    hallucination_source  text,
    prompt_injection      bool             NOT NULL DEFAULT false,
    blocked               bool             NOT NULL DEFAULT false,
    rate_limited          bool             NOT NULL DEFAULT false,
    error                 bool             NOT NULL DEFAULT false,
    PRIMARY KEY (turn_id, started_at)
) PARTITION BY RANGE (started_at);

CREATE INDEX chat_turns_trace_id_idx ON chat_turns (trace_id);
CREATE INDEX chat_turns_session_id_idx ON chat_turns (session_id);

CREATE TABLE feedback (
    turn_id   text        PRIMARY KEY,
    rating    text        NOT NULL CHECK (rating IN ('up', 'down')),
    comment   text,
    origin    text        NOT NULL CHECK (origin IN ('span', 'log', 'api')),
    given_at  timestamptz NOT NULL,
    service   text
);

CREATE TABLE evaluations (
    id            bigserial   PRIMARY KEY,
    turn_id       text        NOT NULL,
    evaluator     text,
    model         text,
    accuracy      real        CHECK (accuracy BETWEEN 0 AND 10),
    relevance     real        CHECK (relevance BETWEEN 0 AND 10),
    clarity       real        CHECK (clarity BETWEEN 0 AND 10),
    groundedness  real        CHECK (groundedness BETWEEN 0 AND 10),
    hallucinated  bool,
    rationale     text,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX evaluations_turn_id_idx ON evaluations (turn_id);

CREATE TABLE sessions (
    session_id  text        NOT NULL,
    service     text        NOT NULL,
    source      text,
    first_seen  timestamptz NOT NULL,
    PRIMARY KEY (session_id, service)
);
