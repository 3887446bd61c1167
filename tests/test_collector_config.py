"""The Collector configs in collector-config/: every component and key exists at the pinned Collector
version (tests/testdata/collector/components-<version>.yaml), pipelines reference defined components,
legacy GenAI names are mapped and secret redaction leaves token counts alone."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from collector_schema import check_config, load_components, load_config
from tools import ROOT

from otel_chatbot import semconv

VERSION = "0.159.0"
CONFIG_DIR = ROOT / "collector-config"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
TOKEN_KEYS = {*semconv.INPUT_TOKEN_ALIASES, *semconv.OUTPUT_TOKEN_ALIASES, *semconv.TOTAL_TOKEN_ALIASES}


@pytest.fixture(scope="module")
def components() -> dict[str, Any]:
    return load_components(VERSION)


def test_both_tiers_exist() -> None:
    assert [p.name for p in CONFIGS] == ["gateway.yaml", "loadbalancing.yaml"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_uses_only_known_components_and_keys(path: Path, components: dict[str, Any]) -> None:
    assert check_config(load_config(path), components) == []


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_header_names_the_pinned_image(path: Path) -> None:
    assert f"otel/opentelemetry-collector-contrib:{VERSION}" in path.read_text()


# --- the checker itself finds each kind of mistake (one mutation per case) -------------------------

def _mutate(config: dict[str, Any], case: str) -> None:
    exporter = config["exporters"]["otlphttp/processor"]
    pipeline = config["service"]["pipelines"]["traces"]
    if case == "misspelt_key":
        exporter["sending_que"] = exporter.pop("sending_queue")
    elif case == "nested_unknown_key":
        exporter["retry_on_failure"]["max_retries"] = 5
    elif case == "unknown_component_type":
        config["processors"]["redactor"] = {}
        pipeline["processors"].append("redactor")
    elif case == "pipeline_references_undefined":
        pipeline["processors"].append("batch/other")
    elif case == "unused_component":
        config["processors"]["batch/spare"] = {}
    elif case == "extension_not_enabled":
        config["service"]["extensions"].remove("file_storage/queue")
    elif case == "authenticator_of_wrong_kind":
        exporter["auth"]["authenticator"] = "file_storage/queue"
    elif case == "bad_pipeline_name":
        config["service"]["pipelines"]["spans"] = config["service"]["pipelines"].pop("traces")
    elif case == "unknown_top_level":
        config["recievers"] = {}
    else:  # pragma: no cover
        raise AssertionError(case)


@pytest.mark.parametrize("case, expected", [
    ("misspelt_key", "exporters.otlphttp/processor.sending_que: unknown key"),
    ("nested_unknown_key", "exporters.otlphttp/processor.retry_on_failure.max_retries: unknown key"),
    ("unknown_component_type", "processors.redactor: unknown processor type 'redactor' at 0.159.0"),
    ("pipeline_references_undefined",
     "service.pipelines.traces.processors: 'batch/other' is not defined under processors"),
    ("unused_component", "processors.batch/spare: defined but used by no pipeline"),
    ("extension_not_enabled", "storage 'file_storage/queue' is not an enabled extension"),
    ("authenticator_of_wrong_kind",
     "authenticator 'file_storage/queue' is not an extension of kind bearertokenauth"),
    ("bad_pipeline_name", "service.pipelines.spans: not a traces/metrics/logs pipeline name"),
    ("unknown_top_level", "recievers: unknown top-level section"),
])
def test_checker_reports_each_mistake(case: str, expected: str, components: dict[str, Any]) -> None:
    config = copy.deepcopy(load_config(CONFIG_DIR / "gateway.yaml"))
    _mutate(config, case)
    problems = check_config(config, components)
    assert any(p.startswith(expected) for p in problems), problems


# --- what the configs promise ----------------------------------------------------------------------

@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_processors_order_memory_limiter_first_batch_last(path: Path) -> None:
    for name, pipeline in load_config(path)["service"]["pipelines"].items():
        assert pipeline["processors"][0] == "memory_limiter", name
        assert pipeline["processors"][-1] == "batch", name
    traces = load_config(path)["service"]["pipelines"]["traces"]["processors"]
    # Legacy names are mapped before redaction looks at keys (ignored_keys then covers both spellings).
    assert traces.index("transform/genai_names") < traces.index("redaction/secrets")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_redaction_never_touches_token_counts(path: Path) -> None:
    redaction = load_config(path)["processors"]["redaction/secrets"]
    assert redaction["allow_all_keys"] is True  # an allow-list would drop every other attribute
    assert set(redaction["ignored_keys"]) >= TOKEN_KEYS, TOKEN_KEYS - set(redaction["ignored_keys"])
    # Even without ignored_keys no key pattern would hit a token count (Go regexp ~ Python re here).
    patterns = [re.compile(p) for p in redaction["blocked_key_patterns"]]
    assert [k for k in sorted(TOKEN_KEYS) for p in patterns if p.search(k)] == []
    assert [k for k in ("api_key", "openai.api_key", "access_token", "http.request.header.authorization",
                        "db.password", "x-auth-token") if not any(p.search(k) for p in patterns)] == []
    # ...and chat identities are not mistaken for secrets.
    assert [k for k in ("session.id", "user.id", "chat.turn.id", "gen_ai.conversation.id")
            if any(p.search(k) for p in patterns)] == []


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_redaction_value_patterns_mask_secrets_not_chat_text(path: Path) -> None:
    values = [re.compile(p) for p in load_config(path)["processors"]["redaction/secrets"]["blocked_values"]]
    secrets = ["sk-proj-" + "a1B2" * 8, "Authorization: Bearer abcdefghijklmnop0123",
               "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
               "AKIAIOSFODNN7EXAMPLE", "ghp_" + "x" * 36]
    assert [s for s in secrets if not any(v.search(s) for v in values)] == []
    chat = ["What are your opening hours?", "The bearer of this card may enter", "skip-this-step please",
            "gpt-4o-mini", "3f2c9a1e-0d6b-4c8e-9b1a-5e7f2d4c6a80"]
    assert [s for s in chat if any(v.search(s) for v in values)] == []


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_transform_maps_legacy_genai_names(path: Path) -> None:
    block = load_config(path)["processors"]["transform/genai_names"]
    assert block["error_mode"] == "ignore"
    statements = [s for group in block["trace_statements"] for s in group["statements"]]
    sets = {}
    for statement in statements:
        match = re.match(r'set\(attributes\["([^"]+)"\], attributes\["([^"]+)"\]\) where (.*)$', statement)
        if match:
            new, old, condition = match.groups()
            sets[old] = new
            # Never overwrite a current name that is already there.
            assert f'attributes["{new}"] == nil' in condition
    assert sets == {"gen_ai.usage.prompt_tokens": "gen_ai.usage.input_tokens",
                    "gen_ai.usage.completion_tokens": "gen_ai.usage.output_tokens",
                    "gen_ai.system": "gen_ai.provider.name"}
    deleted = {m.group(1) for s in statements if (m := re.match(r'delete_key\(attributes, "([^"]+)"\)$', s))}
    assert deleted == set(sets)
    # Each old name is deleted after it was copied.
    for old in sets:
        assert statements.index(f'delete_key(attributes, "{old}")') > next(
            i for i, s in enumerate(statements) if f'attributes["{old}"]) where' in s)
    # The processor understands both spellings, so the mapping is a convenience, not a requirement.
    assert {"gen_ai.usage.prompt_tokens"} <= set(semconv.INPUT_TOKEN_ALIASES)
    assert "gen_ai.system" in semconv.PROVIDER_ALIASES


def test_gateway_exports_to_the_processor_durably() -> None:
    config = load_config(CONFIG_DIR / "gateway.yaml")
    exporter = config["exporters"]["otlphttp/processor"]
    assert exporter["compression"] == "gzip"
    assert exporter["auth"]["authenticator"] == "bearertokenauth/processor"
    assert exporter["retry_on_failure"]["enabled"] is True
    assert exporter["sending_queue"]["storage"] == "file_storage/queue"
    assert config["extensions"]["bearertokenauth/processor"]["token"] == "${env:OTEL_CHATBOT_AUTH_TOKEN}"
    assert exporter["endpoint"].endswith("http://processor:4318}")
    assert {p["exporters"][0] for p in config["service"]["pipelines"].values()} == {"otlphttp/processor"}


def test_loadbalancing_tier_routes_by_trace_over_dns() -> None:
    config = load_config(CONFIG_DIR / "loadbalancing.yaml")
    exporter = config["exporters"]["loadbalancing/processors"]
    assert exporter["routing_key"] == "traceID"
    assert exporter["resolver"]["dns"]["hostname"] == "${env:PROCESSOR_REPLICAS:-processor-replicas}"
    assert exporter["resolver"]["dns"]["port"] == "4317"  # the processors' OTLP/gRPC port
    otlp = exporter["protocol"]["otlp"]
    assert otlp["compression"] == "gzip"
    assert otlp["auth"]["authenticator"] == "bearertokenauth/processor"
    assert otlp["sending_queue"]["storage"] == "file_storage/queue"
    # Same processing as the gateway: only the exporter differs.
    gateway = load_config(CONFIG_DIR / "gateway.yaml")
    assert config["processors"] == gateway["processors"]
    assert config["receivers"] == gateway["receivers"]
    assert config["extensions"] == gateway["extensions"]


def test_fixture_names_its_version_and_image() -> None:
    data = load_components(VERSION)
    assert data["image"] == f"otel/opentelemetry-collector-contrib:{VERSION}"
    assert {"otlp", "batch", "memory_limiter", "transform", "redaction", "otlphttp", "loadbalancing",
            "bearertokenauth", "file_storage"} <= {k for s in ("receivers", "processors", "exporters",
                                                              "extensions") for k in data[s]}
