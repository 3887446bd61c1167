-- Tables and columns of the quality loop (judge, failure clusters, reviews, outcomes, versions).
-- Created in one migration so that the evaluate, failures, export, review-page and outcomes parts
-- can be built and tested independently against the same schema.

-- LLM judge: which rubric version produced a score, and what the judge call itself cost. A turn is
-- judged at most once per (evaluator, judge_version): re-running `evaluate` skips it.
ALTER TABLE evaluations
    ADD COLUMN judge_version  text,
    ADD COLUMN input_tokens   int,
    ADD COLUMN output_tokens  int,
    ADD COLUMN cost_usd       double precision;
CREATE UNIQUE INDEX evaluations_turn_judge_uq ON evaluations (turn_id, evaluator, judge_version);
CREATE INDEX evaluations_created_at_idx ON evaluations (created_at);

-- Conversation-level judge scores (goal completion, coherence across turns, frustration), 0-10.
CREATE TABLE session_evaluations (
    id               bigserial        PRIMARY KEY,
    session_id       text             NOT NULL,
    evaluator        text             NOT NULL,
    judge_version    text             NOT NULL,
    model            text,
    goal_completion  real             CHECK (goal_completion BETWEEN 0 AND 10),
    coherence        real             CHECK (coherence BETWEEN 0 AND 10),
    frustration      real             CHECK (frustration BETWEEN 0 AND 10),
    goal_completed   bool,
    rationale        text,
    turns            int              NOT NULL DEFAULT 0,
    input_tokens     int,
    output_tokens    int,
    cost_usd         double precision,
    created_at       timestamptz      NOT NULL DEFAULT now(),
    UNIQUE (session_id, evaluator, judge_version)
);

-- Failure clusters of one `otel-chatbot failures` run (latest run per window is what dashboards list).
CREATE TABLE failure_cluster_runs (
    run_id          bigserial   PRIMARY KEY,
    window_start    timestamptz NOT NULL,
    window_end      timestamptz NOT NULL,
    embedder        text        NOT NULL,
    problem_turns   int         NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE failure_clusters (
    run_id                  bigint      NOT NULL REFERENCES failure_cluster_runs (run_id) ON DELETE CASCADE,
    cluster_id              int         NOT NULL,
    label                   text        NOT NULL,   -- characteristic terms
    representative_turn_id  text,
    representative_message  text,
    size                    int         NOT NULL,
    share                   double precision NOT NULL,  -- of the window's problem turns
    previous_size           int,                        -- same cluster's size in the previous window
    trend                   double precision,            -- size / previous_size (NULL: new)
    example_turn_ids        text[]      NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, cluster_id)
);

CREATE TABLE failure_cluster_members (
    run_id      bigint NOT NULL,
    cluster_id  int    NOT NULL,
    turn_id     text   NOT NULL,
    PRIMARY KEY (run_id, turn_id),
    FOREIGN KEY (run_id, cluster_id) REFERENCES failure_clusters (run_id, cluster_id) ON DELETE CASCADE
);

-- A reviewer's verdict on a turn from the review page: rating, corrected reply (used by `export`).
CREATE TABLE turn_reviews (
    turn_id          text        PRIMARY KEY,
    reviewer         text        NOT NULL,
    rating           text        CHECK (rating IN ('up', 'down')),
    corrected_reply  text,
    note             text,
    reviewed_at      timestamptz NOT NULL DEFAULT now()
);

-- Business outcomes: conversion, lead, CSAT, NPS; per session or per turn.
CREATE TABLE outcomes (
    id           bigserial        PRIMARY KEY,
    session_id   text,
    turn_id      text,
    kind         text             NOT NULL CHECK (kind IN ('conversion', 'lead', 'csat', 'nps')),
    value        double precision,
    label        text,
    origin       text             NOT NULL CHECK (origin IN ('span', 'log', 'api')),
    service      text,
    source       text,
    recorded_at  timestamptz      NOT NULL,
    CHECK (session_id IS NOT NULL OR turn_id IS NOT NULL)
);
CREATE INDEX outcomes_session_id_idx ON outcomes (session_id);
CREATE INDEX outcomes_recorded_at_idx ON outcomes (recorded_at);

-- Per-turn escalation to a human agent, and the prompt template / app version that answered.
ALTER TABLE chat_turns
    ADD COLUMN escalated          bool NOT NULL DEFAULT false,
    ADD COLUMN escalation_reason  text,
    ADD COLUMN prompt_version     text,
    ADD COLUMN app_version        text;
