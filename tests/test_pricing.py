"""PriceTable: packaged prices, matching, user overrides and bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otel_chatbot.processor.pricing import PriceTable


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", 2.5 + 10.0),
        ("gpt-4o-2024-08-06", 2.5 + 10.0),  # dated variant → family
        ("gpt-4o-2024-05-13", 5.0 + 15.0),  # an exact entry beats the family prefix
        ("gpt-4o-mini-2024-07-18", 0.15 + 0.6),  # longest prefix, not gpt-4o
        ("GPT-4o-Mini", 0.15 + 0.6),
        ("claude-3-5-sonnet-20241022", 3.0 + 15.0),
        ("anthropic.claude-3-haiku-20240307-v1:0", 0.25 + 1.25),  # Bedrock id
        ("models/gemini-1.5-flash-002", 0.075 + 0.3),  # Google's "models/" prefix
        ("mistral-large-latest", 2.0 + 6.0),
        ("demo-small", 0.2 + 0.8),
    ],
)
def test_cost_per_million_of_each(table: PriceTable, model: str, expected: float) -> None:
    assert table.cost(model, 1_000_000, 1_000_000) == pytest.approx(expected)


@pytest.mark.parametrize("model", ["gpt-4z", "gpt-4ox", "llama-local", "", None])
def test_unknown_models_have_no_price(table: PriceTable, model: str | None) -> None:
    # "gpt-4ox" must not borrow gpt-4o's price: a family continues only after a separator.
    assert table.cost(model, 100, 100) is None


def test_cost_arithmetic(table: PriceTable) -> None:
    assert table.cost("gpt-4o-mini", 1000, 500) == pytest.approx((1000 * 0.15 + 500 * 0.6) / 1e6)
    assert table.provider("claude-3-opus-20240229") == "anthropic"


def test_user_file_overrides_and_extends(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "_comment": "ours",
                "models": {
                    "gpt-4o": {"input": 1.0, "output": 2.0},
                    "acme-llm": {"input": 3.0, "output": 4.0, "provider": "acme"},
                },
            }
        )
    )
    table = PriceTable.load(path)
    assert table.cost("gpt-4o-2024-08-06", 1_000_000, 1_000_000) == pytest.approx(3.0)
    assert (
        table.cost("acme-llm-v2", 1_000_000, 0) == pytest.approx(3.0) and table.provider("acme-llm") == "acme"
    )
    assert table.cost("gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)  # packaged entries remain
    assert len(table) == len(PriceTable.load()) + 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected a JSON object with a 'models' key"),
        ('{"modles": {}}', "unknown key 'modles' (expected 'models')"),
        ('{"models": []}', "'models' must be an object"),
        ('{"models": {"x": 3}}', "models.x must be an object"),
        ('{"models": {"x": {"input": 1, "ouput": 2}}}', "models.x: unknown key 'ouput'"),
        ('{"models": {"x": {"input": "1", "output": 2}}}', "models.x.input must be a non-negative number"),
        ('{"models": {"x": {"input": 1, "output": -2}}}', "models.x.output must be a non-negative number"),
        ('{"models": {"x": {"input": 1}}}', "models.x.output must be a non-negative number"),
        ('{"models": {"x": {"input": true, "output": 1}}}', "models.x.input must be a non-negative number"),
        ('{"models": {"x": {"input": 1, "output": 1, "provider": 5}}}', "models.x.provider must be a string"),
    ],
)
def test_bad_user_file_names_the_key(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(ValueError) as raised:
        PriceTable.load(path)
    assert message in str(raised.value) and str(path) in str(raised.value)


def test_missing_user_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read it"):
        PriceTable.load(tmp_path / "nope.json")
