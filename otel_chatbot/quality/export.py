"""``otel-chatbot export``: fine-tuning data from rated and reviewed turns, or problem turns for review.

Everything leaves redacted (otel_chatbot.privacy). A reviewer's corrected reply (``turn_reviews``)
replaces the bot's reply and makes the turn a good example: it counts as rated up and not a problem.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

import psycopg
from psycopg import sql

from otel_chatbot.privacy import redact
from otel_chatbot.quality.finetune import ExportTurn
from otel_chatbot.quality.finetune_windows import windowed_lines
from otel_chatbot.quality.select import (
    DEFAULT_SCORE_THRESHOLD,
    JUDGE_AND_FEEDBACK,
    PROBLEM,
    REASONS,
    ProblemTurn,
    select_problem_turns,
)
from otel_chatbot.quality.tokens import DEFAULT_MAX_TOKENS, TokenCounter, openai_counter
from otel_chatbot.quality.window import TurnWindow

FORMATS = ("openai-finetune", "jsonl", "csv")
# A line's limit: room for a short system prompt and a turn at least; at most any model's context.
MIN_MAX_TOKENS, MAX_MAX_TOKENS = 64, 10_000_000
RATINGS = ("any", "up")
PROBLEM_COLUMNS = ("turn_id", "started_at", "session_id", "service", "source", "reasons", "lowest_score",
                   "user_message", "bot_response", "feedback_comment", "review_rating", "corrected_reply",
                   "cluster_id", "cluster_label")


@dataclass(frozen=True)
class FinetuneSelection:
    window: TurnWindow
    rating: str = "any"
    exclude_problems: bool = False
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    max_tokens: int = DEFAULT_MAX_TOKENS

    def __post_init__(self) -> None:
        if self.rating not in RATINGS:
            raise ValueError(f"--rating: expected one of {', '.join(RATINGS)}, got {self.rating!r}")
        if not MIN_MAX_TOKENS <= self.max_tokens <= MAX_MAX_TOKENS:
            raise ValueError(f"--max-tokens: expected {MIN_MAX_TOKENS} to {MAX_MAX_TOKENS}, "
                             f"got {self.max_tokens}")


@dataclass(frozen=True)
class FinetuneCounts:
    turns_seen: int
    turns_exported: int
    corrected: int
    skipped_empty: int
    lines: int
    conversations_split: int
    turns_too_long: int
    longest_line_tokens: int
    counter: str


_EXPORT_TURNS = """
SELECT t.turn_id, t.session_id, t.started_at, t.user_message, t.bot_response, r.corrected_reply,
       coalesce(r.rating, f.rating), """ + PROBLEM + """ OR coalesce(r.rating = 'down', false)
FROM chat_turns t
LEFT JOIN turn_reviews r ON r.turn_id = t.turn_id
""" + JUDGE_AND_FEEDBACK + """
WHERE {window}
ORDER BY t.started_at, t.turn_id
"""


def finetune_lines(conn: psycopg.Connection[Any], selection: FinetuneSelection, system_prompt: str | None,
                   counter: TokenCounter | None = None) -> tuple[list[dict[str, Any]], FinetuneCounts]:
    """Validated fine-tuning lines for the selected turns, each within ``selection.max_tokens``
    (long conversations split into windows), and what was counted on the way."""
    condition, params = selection.window.where("t")
    params["threshold"] = selection.score_threshold
    rows = conn.execute(sql.SQL(_EXPORT_TURNS).format(window=condition), params).fetchall()
    chosen: list[ExportTurn] = []
    corrected = skipped = 0
    for turn_id, session_id, started_at, user_message, bot_response, correction, rating, problem in rows:
        is_corrected = correction is not None and bool(correction.strip())
        reply = correction if is_corrected else bot_response
        if is_corrected:
            rating, problem = "up", False
        if selection.rating == "up" and rating != "up":
            continue
        if selection.exclude_problems and problem:
            continue
        if not (user_message or "").strip() or not (reply or "").strip():
            skipped += 1
            continue
        corrected += is_corrected
        chosen.append(ExportTurn(turn_id, session_id, started_at, redact(user_message).strip(),
                                 redact(reply).strip()))
    counter = counter or openai_counter()
    lines, windows = windowed_lines(chosen, system_prompt, counter, selection.max_tokens)
    return lines, FinetuneCounts(len(rows), len(chosen), corrected, skipped, len(lines),
                                 windows.conversations_split, windows.turns_too_long,
                                 windows.longest_line_tokens, counter.name)


def write_jsonl(lines: Iterable[dict[str, Any]], out: IO[str]) -> int:
    count = 0
    for line in lines:
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
        count += 1
    return count


def problem_rows(conn: psycopg.Connection[Any], window: TurnWindow,
                 score_threshold: float = DEFAULT_SCORE_THRESHOLD, reasons: tuple[str, ...] = REASONS
                 ) -> list[dict[str, Any]]:
    """The window's problem turns for review, redacted, with any review and their cluster in the
    latest stored clustering run."""
    turns = select_problem_turns(conn, window, score_threshold=score_threshold, reasons=reasons)
    ids = [t.turn_id for t in turns]
    reviews = {r[0]: (r[1], r[2]) for r in conn.execute(
        "SELECT turn_id, rating, corrected_reply FROM turn_reviews WHERE turn_id = ANY(%s)", (ids,))}
    clusters = {r[0]: (r[1], r[2]) for r in conn.execute(
        "SELECT m.turn_id, c.cluster_id, c.label FROM failure_cluster_members m "
        "JOIN failure_clusters c USING (run_id, cluster_id) "
        "WHERE m.run_id = (SELECT max(run_id) FROM failure_cluster_runs) AND m.turn_id = ANY(%s)", (ids,))}
    return [_problem_row(t, reviews.get(t.turn_id), clusters.get(t.turn_id)) for t in turns]


def _problem_row(turn: ProblemTurn, review: tuple[str | None, str | None] | None,
                 cluster: tuple[int, str] | None) -> dict[str, Any]:
    def clean(text: str | None) -> str | None:
        return None if text is None else redact(text)

    return {
        "turn_id": turn.turn_id, "started_at": turn.started_at.isoformat(), "session_id": turn.session_id,
        "service": turn.service, "source": turn.source, "reasons": list(turn.reasons),
        "lowest_score": turn.lowest_score, "user_message": clean(turn.user_message),
        "bot_response": clean(turn.bot_response), "feedback_comment": clean(turn.feedback_comment),
        "review_rating": review[0] if review else None,
        "corrected_reply": clean(review[1]) if review else None,
        "cluster_id": cluster[0] if cluster else None, "cluster_label": cluster[1] if cluster else None,
    }


def write_csv(rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """CSV with a header; reasons joined by ';', empty cells for missing values."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PROBLEM_COLUMNS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow({**row, "reasons": ";".join(row["reasons"])})
        count += 1
    out.write(buffer.getvalue())
    return count
