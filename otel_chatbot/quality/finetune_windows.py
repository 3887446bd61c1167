"""Conversations longer than the fine-tuning token limit, split at turn boundaries into windows.

Each window is one line: the system prompt; then, as context (replies weighted 0: seen, not trained
on), the turns just before the window, newest first, while they take at most a quarter of the room
left after the system prompt (the turn just before always, if it fits beside the window's first);
then the window's own turns for as long as the line stays within the limit. So every reply is trained
on exactly once, and each window starts with what was said just before it. A turn too long for a line
on its own (with the system prompt) is skipped and counted; no window's context reaches back across
it, as the conversation would then read as if it had not happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from otel_chatbot.quality.finetune import ExportTurn, example, sessions
from otel_chatbot.quality.tokens import TOKENS_PER_EXAMPLE, TokenCounter


@dataclass(frozen=True)
class Window:
    """Turn indices of one line: ``context`` (weight 0) then ``trained``, contiguous."""

    context: range
    trained: range


@dataclass(frozen=True)
class WindowCounts:
    lines: int
    conversations_split: int   # conversations written as more than one line
    turns_too_long: int        # turns over the limit on their own: left out
    longest_line_tokens: int


def plan_windows(costs: Sequence[int], fixed: int, max_tokens: int) -> tuple[list[Window], int]:
    """Windows over turns costing ``costs`` tokens each, in lines whose fixed part (system prompt,
    priming) costs ``fixed``; and how many turns did not fit a line on their own."""
    windows: list[Window] = []
    skipped = 0
    segment_start = 0      # context never reaches back before a skipped turn
    # A quarter: enough to carry the thread, while most of each line is turns trained on.
    context_room = (max_tokens - fixed) // 4
    index = 0
    while index < len(costs):
        if fixed + costs[index] > max_tokens:
            skipped += 1
            index += 1
            segment_start = index
            continue
        used = fixed + costs[index]
        context_start, context_tokens = index, 0
        while (context_start > segment_start
               and (context_tokens + costs[context_start - 1] <= context_room or context_start == index)
               and used + context_tokens + costs[context_start - 1] <= max_tokens):
            context_start -= 1
            context_tokens += costs[context_start]
        used += context_tokens
        end = index + 1
        while end < len(costs) and used + costs[end] <= max_tokens:
            used += costs[end]
            end += 1
        windows.append(Window(range(context_start, index), range(index, end)))
        index = end
    return windows, skipped


def windowed_lines(turns: Sequence[ExportTurn], system_prompt: str | None, counter: TokenCounter,
                   max_tokens: int) -> tuple[list[dict[str, Any]], WindowCounts]:
    """Lines of every session (one per turn without a session), each within ``max_tokens``."""
    fixed = TOKENS_PER_EXAMPLE + (counter.message("system", system_prompt) if system_prompt else 0)
    lines: list[dict[str, Any]] = []
    split = skipped = longest = 0
    for group in sessions(turns):
        costs = [counter.message("user", t.user_message) + counter.message("assistant", t.reply)
                 for t in group]
        windows, too_long = plan_windows(costs, fixed, max_tokens)
        skipped += too_long
        split += len(windows) > 1
        for window in windows:
            chosen = [group[i] for i in (*window.context, *window.trained)]
            lines.append(example(((t.user_message, t.reply) for t in chosen), system_prompt,
                                 context=len(window.context)))
            longest = max(longest, fixed + sum(costs[i] for i in (*window.context, *window.trained)))
    return lines, WindowCounts(len(lines), split, skipped, longest)
