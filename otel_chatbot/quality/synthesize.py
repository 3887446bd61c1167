"""New training examples per failure cluster, written by an OpenAI-compatible model from the
reviewers' corrections of that cluster's turns.

The model answers a JSON object ``{"examples": [{"user": ..., "assistant": ...}, ...]}``; an answer
that is not that (bad JSON, wrong shape, too few examples, empty text) gets one repair request
quoting the problem, and a second bad answer is an error naming the cluster.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg

from otel_chatbot.privacy import redact
from otel_chatbot.quality.cluster_store import StoredCluster
from otel_chatbot.quality.embed import Progress
from otel_chatbot.quality.failures import clip
from otel_chatbot.quality.finetune import example

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

MAX_VARIATIONS = 20
# Corrections quoted to the model per cluster: enough to ground it, small enough for any context.
_MAX_SEEDS = 8

_INSTRUCTIONS = """You write training data for a customer-support chatbot.
Users keep asking questions like the ones below, and the bot answered them badly; reviewers wrote
the correct answers. Write {n} new, realistic user messages on the same problem, each phrased
differently (vary wording, length, tone and detail), and for each the answer the bot should give.
Ground every answer in the reviewers' answers: state no fact, price, time or policy they do not
state. Reply with only a JSON object: {{"examples": [{{"user": "...", "assistant": "..."}}]}} with
exactly {n} items."""


class SynthesisError(RuntimeError):
    """The model's answer for a cluster was still invalid after one repair request, or the call failed."""


@dataclass(frozen=True)
class ClusterSeeds:
    cluster: StoredCluster
    corrections: tuple[tuple[str, str], ...]   # (user message, corrected reply), redacted
    turn_ids: tuple[str, ...]


def cluster_seeds(conn: psycopg.Connection[Any], clusters: Sequence[StoredCluster]) -> list[ClusterSeeds]:
    """For each cluster, its member turns that a reviewer corrected (oldest review first)."""
    seeds = []
    for cluster in clusters:
        rows = conn.execute(
            "SELECT DISTINCT ON (r.reviewed_at, r.turn_id) r.turn_id, t.user_message, r.corrected_reply "
            "FROM turn_reviews r JOIN chat_turns t ON t.turn_id = r.turn_id "
            "WHERE r.turn_id = ANY(%s) AND btrim(coalesce(r.corrected_reply, '')) <> '' "
            "AND btrim(coalesce(t.user_message, '')) <> '' ORDER BY r.reviewed_at, r.turn_id",
            (list(cluster.member_turn_ids),)).fetchall()
        seeds.append(ClusterSeeds(cluster, tuple((redact(r[1]), redact(r[2])) for r in rows),
                                  tuple(r[0] for r in rows)))
    return seeds


def parse_examples(content: str | None, n: int) -> list[tuple[str, str]]:
    """The first ``n`` (user, assistant) pairs of a model answer; ValueError saying what is wrong."""
    try:
        data = json.loads(content or "")
    except json.JSONDecodeError as exc:
        raise ValueError(f"the answer is not valid JSON ({exc.msg} at character {exc.pos})") from None
    items = data.get("examples") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ValueError('the answer has no "examples" list')
    if len(items) < n:
        raise ValueError(f'"examples" has {len(items)} items, {n} were asked for')
    pairs = []
    for index, item in enumerate(items[:n]):
        user = item.get("user") if isinstance(item, dict) else None
        assistant = item.get("assistant") if isinstance(item, dict) else None
        if not isinstance(user, str) or not user.strip() or not isinstance(assistant, str) \
                or not assistant.strip():
            raise ValueError(f'examples[{index}] needs non-empty "user" and "assistant" strings')
        pairs.append((user.strip(), assistant.strip()))
    return pairs


class Synthesizer:
    def __init__(self, base_url: str | None, model: str, api_key: str | None, *, timeout: float = 120.0
                 ) -> None:
        import openai

        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or "unset", timeout=timeout,
                                     max_retries=2)
        self._model = model

    def variations(self, seeds: ClusterSeeds, n: int) -> list[tuple[str, str]]:
        """``n`` new (user, assistant) pairs for one cluster, redacted; one repair request at most."""
        import openai

        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": _INSTRUCTIONS.format(n=n)},
            {"role": "user", "content": _prompt(seeds)}]
        error = ""
        for attempt in range(2):
            try:
                answer = self._client.chat.completions.create(
                    model=self._model, messages=messages,
                    response_format={"type": "json_object"}, temperature=0.9)
            except openai.OpenAIError as exc:
                raise SynthesisError(
                    f"cluster {seeds.cluster.cluster_id}: {type(exc).__name__}: {exc}") from exc
            content = answer.choices[0].message.content if answer.choices else None
            try:
                return [(redact(u), redact(a)) for u, a in parse_examples(content, n)]
            except ValueError as exc:
                error = str(exc)
            if attempt == 0:
                messages += [{"role": "assistant", "content": content or ""},
                             {"role": "user", "content": f"That answer is invalid: {error}. Reply again with "
                                                         f"only the JSON object, exactly {n} examples."}]
        raise SynthesisError(f"cluster {seeds.cluster.cluster_id}: the model's answer was invalid after "
                             f"one repair request: {error}")


def _prompt(seeds: ClusterSeeds) -> str:
    cluster = seeds.cluster
    lines = [f"Problem: {cluster.label}"]
    if cluster.representative_message:
        lines.append(f"Typical user message: {cluster.representative_message}")
    lines.append("Reviewed conversations:")
    for user, corrected in seeds.corrections[:_MAX_SEEDS]:
        lines.append(json.dumps({"user": clip(user), "correct_answer": clip(corrected)}, ensure_ascii=False))
    return "\n".join(lines)


def synthesize(synthesizer: Synthesizer, seeds: Sequence[ClusterSeeds], n: int, system_prompt: str | None,
               progress: Progress) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Fine-tuning lines for every cluster with corrections, and one provenance record per line."""
    lines: list[dict[str, Any]] = []
    provenance: list[dict[str, Any]] = []
    usable = [s for s in seeds if s.corrections]
    for s in seeds:
        if not s.corrections:
            progress(f"cluster {s.cluster.cluster_id} ({s.cluster.label}): skipped, no reviewer corrections")
    for number, s in enumerate(usable, 1):
        pairs = synthesizer.variations(s, n)
        for user, assistant in pairs:
            lines.append(example([(user, assistant)], system_prompt))
            provenance.append({"line": len(lines), "synthetic": True, "run_id": s.cluster.run_id,
                               "cluster_id": s.cluster.cluster_id, "cluster_label": s.cluster.label,
                               "seed_turn_ids": list(s.turn_ids)})
        progress(f"cluster {s.cluster.cluster_id} ({number}/{len(usable)}): {len(pairs)} synthetic examples")
    return lines, provenance
