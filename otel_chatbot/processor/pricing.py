"""Model prices: USD per million input/output tokens, packaged defaults plus an optional user file.

The file format (packaged ``prices.json`` and user files alike)::

    {"models": {"gpt-4o": {"input": 2.5, "output": 10.0, "provider": "openai"}, ...}}

Keys starting with ``_`` are comments. A user file overrides or extends the packaged table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

_ENTRY_KEYS = ("input", "output", "provider")
# A dated or suffixed variant continues its family name after one of these ("gpt-4o-2024-08-06",
# "claude-3-5-sonnet@20240620"); "gpt-4" must not price "gpt-4o", hence no letters or digits.
_VARIANT_SEPARATORS = frozenset("-:@_/")
# Cloud catalogues prefix the vendor: "anthropic.claude-3-haiku-…" (Bedrock), "models/gemini-…".
_VENDOR_PREFIXES = ("anthropic.", "meta.", "mistral.", "cohere.", "amazon.", "ai21.")
_LOOKUP_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class ModelPrice:
    input_per_million: float
    output_per_million: float
    provider: str | None = None


class PriceTable:
    """Prices by model name, matched exactly, then by the longest family prefix."""

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._prices = {name.lower(): price for name, price in prices.items()}
        self._by_length = sorted(self._prices, key=len, reverse=True)
        self._cache: dict[str, ModelPrice | None] = {}

    @classmethod
    def load(cls, path: Path | None = None) -> PriceTable:
        """The packaged table, overridden/extended by ``path``. Bad file → ValueError naming the key."""
        packaged = resources.files("otel_chatbot.processor").joinpath("prices.json").read_text("utf-8")
        prices = _parse(packaged, "packaged prices.json")
        if path is not None:
            try:
                text = Path(path).read_text("utf-8")
            except OSError as exc:
                raise ValueError(f"prices file {path}: cannot read it: {exc.strerror or exc}") from None
            prices.update(_parse(text, f"prices file {path}"))
        return cls(prices)

    def __len__(self) -> int:
        return len(self._prices)

    def price(self, model: str | None) -> ModelPrice | None:
        """The price entry for ``model``, or None when no entry matches."""
        if not model:
            return None
        cached = self._cache.get(model, _MISSING)
        if cached is not _MISSING:
            return cached  # type: ignore[return-value]
        found = self._lookup(model)
        if len(self._cache) >= _LOOKUP_CACHE_MAX:
            self._cache.clear()
        self._cache[model] = found
        return found

    def cost(self, model: str | None, input_tokens: int, output_tokens: int) -> float | None:
        """USD for the tokens, or None for an unknown model."""
        price = self.price(model)
        if price is None:
            return None
        return (input_tokens * price.input_per_million + output_tokens * price.output_per_million) / 1_000_000

    def provider(self, model: str | None) -> str | None:
        price = self.price(model)
        return price.provider if price is not None else None

    def _lookup(self, model: str) -> ModelPrice | None:
        name = model.strip().lower()
        candidates = [name]
        if "/" in name:
            candidates.append(name.rsplit("/", 1)[1])
        for prefix in _VENDOR_PREFIXES:
            if name.startswith(prefix):
                candidates.append(name[len(prefix) :])
        for candidate in candidates:
            exact = self._prices.get(candidate)
            if exact is not None:
                return exact
        for candidate in candidates:
            for key in self._by_length:  # longest first, so the first match is the longest prefix
                if candidate.startswith(key) and candidate[len(key)] in _VARIANT_SEPARATORS:
                    return self._prices[key]
        return None


_MISSING = object()


def _parse(text: str, origin: str) -> dict[str, ModelPrice]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{origin}: not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError(f"{origin}: expected a JSON object with a 'models' key")
    for key in document:
        if key != "models" and not key.startswith("_"):
            raise ValueError(f"{origin}: unknown key {key!r} (expected 'models')")
    models = document.get("models")
    if not isinstance(models, dict):
        raise ValueError(f"{origin}: 'models' must be an object mapping model names to prices")
    return {name: _entry(name, entry, origin) for name, entry in models.items() if not name.startswith("_")}


def _entry(name: str, entry: Any, origin: str) -> ModelPrice:
    where = f"{origin}: models.{name}"
    if not name.strip():
        raise ValueError(f"{origin}: models: empty model name")
    if not isinstance(entry, dict):
        raise ValueError(f'{where} must be an object like {{"input": 2.5, "output": 10.0}}')
    for key in entry:
        if key not in _ENTRY_KEYS:
            raise ValueError(f"{where}: unknown key {key!r} (expected input, output, provider)")
    rates = []
    for key in ("input", "output"):
        value = entry.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value != value:
            raise ValueError(
                f"{where}.{key} must be a non-negative number of USD per million tokens, got {value!r}"
            )
        rates.append(float(value))
    provider = entry.get("provider")
    if provider is not None and not isinstance(provider, str):
        raise ValueError(f"{where}.provider must be a string, got {provider!r}")
    return ModelPrice(rates[0], rates[1], provider)
