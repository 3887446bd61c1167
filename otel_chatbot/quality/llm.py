"""Calls to the judge model: any OpenAI-compatible endpoint through the ``openai`` client.

Retries are ours, not the client's (it is built with ``max_retries=0``): 429, 408 and 5xx answers,
timeouts and refused connections are retried with exponential backoff and jitter, and a
``Retry-After`` (or ``retry-after-ms``) header, when present, is the wait. A wait can be cut short by
``stop`` (the online judge shutting down). Answers are JSON validated against a schema; an invalid
answer gets one repair request carrying the validation error, a second invalid answer fails the item.
"""

from __future__ import annotations

import email.utils
import os
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import openai

from otel_chatbot.quality.rubric import VerdictInvalid, parse_verdict, repair_message

API_KEY_VARIABLES = ("OTEL_CHATBOT_JUDGE_API_KEY", "OPENAI_API_KEY")
# Local servers (vLLM, Ollama, llama.cpp) ignore the key but the client insists on one.
_NO_KEY_PLACEHOLDER = "unused"


class JudgeCallFailed(Exception):
    """One item could not be judged (bad answers, a refused request). ``usage`` is what it cost anyway."""

    def __init__(self, message: str, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.usage = usage or Usage()


class JudgeUnavailable(Exception):
    """The endpoint cannot serve any item (unreachable after retries, wrong key, unknown model)."""


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    # A Retry-After beyond this is not waited for: the item fails instead of stalling the run.
    max_retry_after_s: float = 120.0

    def backoff(self, attempt: int) -> float:
        """Exponential with full jitter in the upper half: 0.5 s, 1 s, 2 s … capped."""
        ceiling = min(self.base_delay_s * 2.0**attempt, self.max_delay_s)
        return ceiling * (0.5 + random.random() / 2)


def api_key(env: Mapping[str, str], base_url: str | None) -> str:
    """The key from the environment; a placeholder for a custom endpoint; else an error naming both."""
    for name in API_KEY_VARIABLES:
        if env.get(name):
            return env[name]
    if base_url:
        return _NO_KEY_PLACEHOLDER
    raise JudgeUnavailable(f"no API key for the judge: set {' or '.join(API_KEY_VARIABLES)}, or give "
                           "--base-url for an endpoint that needs none")


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date), None if absent."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in lowered:
        try:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True, slots=True)
class Completion:
    content: str | None
    usage: Usage
    model: str


class JudgeClient:
    """``ask(messages, schema, name) -> (verdict dict, usage, model)``; thread-safe (one HTTP pool)."""

    def __init__(self, model: str, *, base_url: str | None = None, key: str | None = None,
                 timeout_s: float = 60.0, retry: RetryPolicy | None = None,
                 response_format: str = "json_schema", stop: threading.Event | None = None) -> None:
        if response_format not in ("json_schema", "json_object"):
            raise ValueError(f"response_format: expected json_schema or json_object, got {response_format!r}")
        self.model = model
        self.base_url = base_url
        self._client = openai.OpenAI(api_key=key if key is not None else api_key(os.environ, base_url),
                                     base_url=base_url, timeout=timeout_s, max_retries=0)
        self._retry = retry or RetryPolicy()
        self._format = response_format
        self._stop = stop or threading.Event()

    def close(self) -> None:
        self._client.close()

    def ask(self, messages: Sequence[dict[str, str]], schema: dict[str, Any],
            name: str) -> tuple[dict[str, Any], Usage, str]:
        """A validated verdict; one repair round on an invalid answer, then JudgeCallFailed."""
        first = self._complete(messages, schema, name, Usage())
        try:
            return parse_verdict(first.content, schema), first.usage, first.model
        except VerdictInvalid as exc:
            problem = str(exc)
        retry_messages = [*messages, {"role": "assistant", "content": first.content or ""},
                          repair_message(problem)]
        second = self._complete(retry_messages, schema, name, first.usage)
        usage = first.usage + second.usage
        try:
            return parse_verdict(second.content, schema), usage, second.model
        except VerdictInvalid as exc:
            raise JudgeCallFailed(f"invalid answer after a repair request: {exc} "
                                  f"(first answer: {problem})", usage) from None

    def _complete(self, messages: Sequence[dict[str, str]], schema: dict[str, Any], name: str,
                  spent: Usage) -> Completion:
        response_format: Any = (
            {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
            if self._format == "json_schema" else {"type": "json_object"})
        attempt = 0
        while True:
            try:
                response = self._client.chat.completions.create(
                    model=self.model, messages=list(messages),  # type: ignore[arg-type]
                    response_format=response_format, temperature=0)
            except openai.APIStatusError as exc:
                wait = self._retryable_status(exc, attempt, spent)
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                if attempt >= self._retry.max_retries:
                    if isinstance(exc, openai.APITimeoutError):
                        raise JudgeCallFailed("the judge did not answer in time", spent) from None
                    raise JudgeUnavailable(f"cannot reach the judge endpoint "
                                           f"{self.base_url or 'api.openai.com'}: {exc}") from None
                wait = self._retry.backoff(attempt)
            else:
                usage = response.usage
                spent_now = (Usage(usage.prompt_tokens, usage.completion_tokens) if usage is not None
                             else Usage())
                content = response.choices[0].message.content if response.choices else None
                return Completion(content, spent_now, response.model or self.model)
            attempt += 1
            if self._stop.wait(wait):
                raise JudgeCallFailed("stopped while waiting to retry", spent)

    def _retryable_status(self, exc: openai.APIStatusError, attempt: int, spent: Usage) -> float:
        """The wait before retrying ``exc``; raises when it is not worth (or allowed) a retry."""
        status = exc.status_code
        message = _error_message(exc)
        if status in (401, 403):
            raise JudgeUnavailable(f"the judge endpoint refused the API key (HTTP {status}): {message}")
        if status == 404:
            raise JudgeUnavailable(f"the judge endpoint has no model {self.model!r} or no chat "
                                   f"completions route (HTTP 404): {message}")
        if status not in (408, 429) and status < 500:
            raise JudgeCallFailed(f"the judge refused the request (HTTP {status}): {message}", spent)
        if attempt >= self._retry.max_retries:
            raise JudgeCallFailed(f"the judge kept failing (HTTP {status} after {attempt + 1} attempts): "
                                  f"{message}", spent)
        hinted = retry_after_seconds(dict(exc.response.headers))
        if hinted is None:
            return self._retry.backoff(attempt)
        if hinted > self._retry.max_retry_after_s:
            raise JudgeCallFailed(f"the judge asked to wait {hinted:.0f} s (HTTP {status}), more than "
                                  f"{self._retry.max_retry_after_s:.0f} s", spent)
        return hinted


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(body.get("message"), str):
            return str(body["message"])
    return str(exc.message)
