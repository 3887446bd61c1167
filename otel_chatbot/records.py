"""The records that flow normalise → store → metrics (imported by both the processor and the store).

Pure data; no I/O. ``NormalisedBatch`` is what one OTLP request becomes; ``CommitResult`` is what
the writer reports as *newly* committed (a retried batch yields an empty result), and is the only
input of the chat metrics, so a span is counted once however often the Collector retries.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class SpanRow:
    """One row of the ``spans`` table. Ids are lowercase hex; times are Unix nanoseconds."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    service: str
    attributes_json: str  # JSON object text (already serialised: the writer copies it as is)
    resource_json: str
    events_json: str
    # LLM usage of this span when it is an LLM span (token counts present), else None/0.
    model: str | None = None
    provider: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    operation: str | None = None  # gen_ai.operation.name, e.g. "chat"
    # Whose usage and flags this span is: the turn id it carries (chat.turn.id, else chat.in_turn), or
    # "" for a span of the trace that no turn claims (shared by the trace's auto turn or sole SDK turn).
    turn_scope: str = ""
    # The end-user id the span or its resource carries (any accepted alias), for erasure: the blocks
    # span layout indexes it per trace, since compressed blocks cannot be searched with SQL.
    user_id: str | None = None


@dataclass(slots=True)
class TurnRow:
    """One row of ``chat_turns``. ``auto`` turns were detected without ``chat.turn.id`` and are
    keyed by their trace id: a later-arriving ancestor in the same trace replaces them, and an
    SDK turn in the same trace suppresses them. The flags are those its batch shows (the store keeps
    the flags of the batch's FlagRows, gathered per turn across batches; a batch without FlagRows for
    the turn has the turn's own flags stored)."""

    turn_id: str
    trace_id: str
    span_id: str
    auto: bool
    session_id: str | None
    user_id: str | None
    source: str | None
    service: str
    start_ns: int
    latency_s: float
    user_message: str | None
    bot_response: str | None
    model: str | None
    fallback: bool = False
    fallback_reason: str | None = None
    hallucinated: bool = False
    hallucination_source: str | None = None
    prompt_injection: bool = False
    blocked: bool = False
    rate_limited: bool = False
    error: bool = False
    # Handed to a human agent (chat.escalated on the turn or a span of it), and the prompt template /
    # app version that answered (llm.prompt_template.version, resource service.version, chat.* aliases).
    escalated: bool = False
    escalation_reason: str | None = None
    prompt_version: str | None = None
    app_version: str | None = None


@dataclass(slots=True)
class FlagRow:
    """The turn flags one span raises (chat.* flags, a failed OpenInference GUARDRAIL). Stored apart
    from its turn, per (trace, turn scope), so the flags reach the turn whichever arrives first."""

    trace_id: str
    turn_scope: str  # as SpanRow.turn_scope
    start_ns: int  # the span's start: the earliest span's reason wins
    fallback: bool = False
    fallback_reason: str | None = None
    hallucinated: bool = False
    hallucination_source: str | None = None
    prompt_injection: bool = False
    blocked: bool = False
    rate_limited: bool = False


@dataclass(slots=True)
class FeedbackRow:
    """A rating of a turn. Latest ``time_ns`` wins per turn."""

    turn_id: str
    rating: str  # "up" | "down"
    comment: str | None
    origin: str  # "span" | "log" | "api"
    time_ns: int
    service: str | None = None


@dataclass(slots=True)
class OutcomeRow:
    """A business outcome of a conversation (conversion, lead, csat, nps), by session and/or turn."""

    kind: str
    value: float | None
    label: str | None
    session_id: str | None
    turn_id: str | None
    origin: str  # "span" | "log" | "api"
    time_ns: int
    service: str | None = None
    source: str | None = None
    # Identity of the event, so a batch retried by the Collector stores it once: "span:<trace>:<span>",
    # "log:<digest>", "api:<client id>"; None (an API call without an id) is always new.
    key: str | None = None


@dataclass(slots=True)
class TurnExtras:
    """Escalation and versions a span adds to its turn (the turn id it names, or its trace's turn)."""

    trace_id: str
    turn_id: str | None  # None: the span names no turn (an unstamped span of its trace)
    escalated: bool = False
    escalation_reason: str | None = None
    prompt_version: str | None = None
    app_version: str | None = None


@dataclass(slots=True)
class NormalisedBatch:
    spans: list[SpanRow] = field(default_factory=list)
    turns: list[TurnRow] = field(default_factory=list)
    feedback: list[FeedbackRow] = field(default_factory=list)
    flags: list[FlagRow] = field(default_factory=list)
    outcomes: list[OutcomeRow] = field(default_factory=list)
    turn_extras: list[TurnExtras] = field(default_factory=list)
    # Feedback events (spans or log records) dropped because the rating is not "up"/"down" or the
    # turn id is missing: the receiver reports them (OTLP partial success) instead of failing the request.
    invalid_feedback: int = 0
    invalid_outcomes: int = 0  # outcome events dropped the same way (bad kind or value, no session/turn)

    def extend(self, other: NormalisedBatch) -> None:
        self.spans.extend(other.spans)
        self.turns.extend(other.turns)
        self.feedback.extend(other.feedback)
        self.flags.extend(other.flags)
        self.outcomes.extend(other.outcomes)
        self.turn_extras.extend(other.turn_extras)
        self.invalid_feedback += other.invalid_feedback
        self.invalid_outcomes += other.invalid_outcomes

    def __len__(self) -> int:
        return len(self.spans) + len(self.feedback) + len(self.outcomes)


@dataclass(slots=True)
class CommitResult:
    """What a write (or a settle) added for the first time; drives the Prometheus chat metrics.

    Turns are reported when they are counted (see BatchWriter's settle): ``new_turns`` once per turn,
    with its stored values; ``corrected_turns`` for turns counted before whose row has since raised a
    flag not yet counted (only those flags are set: the counters add them, nothing else is observed).
    """

    new_spans: list[SpanRow] = field(default_factory=list)  # LLM spans are the ones with tokens
    new_turns: list[TurnRow] = field(default_factory=list)  # turns counted for the first time
    corrected_turns: list[TurnRow] = field(default_factory=list)
    new_feedback: list[FeedbackRow] = field(default_factory=list)  # events that changed a rating
    # first-seen sessions as (session, service, source)
    new_sessions: list[tuple[str, str, str | None]] = field(default_factory=list)
    span_count: int = 0  # spans in the request(s), new or not
    parked_feedback: int = 0  # feedback events waiting for their turn (pending_feedback)
    expired_feedback: int = 0  # pending feedback dropped to keep the table within its count limit
    duplicate_spans: int = 0
    new_outcomes: list[OutcomeRow] = field(default_factory=list)  # stored or attached to their turn now
    parked_outcomes: int = 0  # outcomes naming a turn not stored yet (kept, attached when it comes)
    # turns whose escalation was stored for the first time: (service, source, reason)
    new_escalations: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    out_of_range_spans: int = 0  # spans of days outside the partition window (stored in the default one)
