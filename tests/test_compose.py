"""docker-compose.yml: valid for the Compose specification and the real Compose v2 binary, every mounted
path present, processor settings that exist and agree with the ports the other services use, a
health-checked start order, named volumes, no secret in the repository, and Prometheus/Alertmanager
configs as mounted passing promtool/amtool."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_support import COMPOSE_FILE, ENV_EXAMPLE, compose, resolved_model
from tools import ROOT, amtool, promtool, run

from otel_chatbot.processor.config import ENV_PREFIX, FIELDS, load_config, split_address

COLLECTOR_VERSION = "0.159.0"
PROCESSOR_SERVICES = ("processor", "processor-replica")
# Services that run the project's image and so read OTEL_CHATBOT_* settings.
OWN_IMAGE_SERVICES = ("processor", "processor-replica", "migrate", "demo")


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    return resolved_model()


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def _services(model: dict[str, Any]) -> dict[str, Any]:
    services: dict[str, Any] = model["services"]
    return services


# --- validity --------------------------------------------------------------------------------------

def test_compose_file_matches_the_compose_specification_schema() -> None:
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                           "vendor.compose-spec", str(COMPOSE_FILE)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("profiles", [(), ("demo",), ("scale",), ("demo", "scale")], ids=str)
def test_compose_v2_accepts_every_profile(profiles: tuple[str, ...]) -> None:
    done = compose("config", "--quiet", profiles=profiles)
    assert (done.returncode, done.stderr) == (0, "")


def test_compose_v2_binary_rejects_what_is_wrong(tmp_path: Path) -> None:
    """The checks above can fail: the binary (not its always-0 wrapper) exits non-zero on a bad file."""
    broken = tmp_path / "docker-compose.yml"
    text = COMPOSE_FILE.read_text()
    good = "    depends_on:\n      postgres:\n"
    broken.write_text(text.replace(good, good.replace("depends_on", "depends_onn"), 1))
    done = compose("config", "--quiet", compose_file=broken)
    assert done.returncode != 0
    assert "depends_onn" in done.stderr


def test_missing_env_file_names_the_variable() -> None:
    done = compose("config", "--quiet", env_file=None)
    assert done.returncode != 0
    assert "is missing a value: copy .env.example to .env" in done.stderr


def test_profiles_gate_the_optional_services(model: dict[str, Any]) -> None:
    base = set(_services(resolved_model(profiles=())))
    assert base == {"postgres", "migrate", "processor", "otel-collector", "collector-queue-owner",
                    "prometheus", "alertmanager", "grafana"}
    assert set(_services(model)) - base == {"demo", "processor-replica", "otel-collector-lb"}


# --- mounts, volumes, images -----------------------------------------------------------------------

def test_every_bind_mounted_path_exists(model: dict[str, Any]) -> None:
    missing = [(name, v["source"]) for name, s in _services(model).items() for v in s.get("volumes", [])
               if v["type"] == "bind" and not Path(v["source"]).exists()]
    assert missing == []
    binds = {v["source"] for s in _services(model).values() for v in s.get("volumes", [])
             if v["type"] == "bind"}
    assert {str(ROOT / p) for p in ("grafana/provisioning", "grafana/dashboards", "collector-config",
                                    "prometheus", "postgres/initdb")} <= binds


def test_grafana_mounts_what_grafana_provisioning_expects(model: dict[str, Any]) -> None:
    grafana = _services(model)["grafana"]
    mounts = {v["target"]: v["source"] for v in grafana["volumes"] if v["type"] == "bind"}
    assert mounts == {"/etc/grafana/provisioning": str(ROOT / "grafana/provisioning"),
                      "/var/lib/grafana/dashboards": str(ROOT / "grafana/dashboards")}
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == _env_example()["GRAFANA_ADMIN_PASSWORD"]
    assert env["OTEL_CHATBOT_READER_PASSWORD"] == _env_example()["OTEL_CHATBOT_READER_PASSWORD"]


def test_stateful_services_use_named_volumes(model: dict[str, Any]) -> None:
    declared = set(model["volumes"])
    used = {(name, v["target"]): v["source"] for name, s in _services(model).items()
            for v in s.get("volumes", []) if v["type"] == "volume"}
    assert set(used.values()) == declared  # every named volume used, no anonymous volume
    assert used[("postgres", "/var/lib/postgresql/data")] == "postgres-data"
    assert used[("otel-collector", "/var/lib/otelcol/queue")] == "collector-queue"
    assert used[("otel-collector-lb", "/var/lib/otelcol/queue")] == "collector-lb-queue"
    assert used[("prometheus", "/prometheus")] == "prometheus-data"
    assert used[("alertmanager", "/alertmanager")] == "alertmanager-data"
    assert used[("grafana", "/var/lib/grafana")] == "grafana-data"


def test_images_are_pinned(model: dict[str, Any]) -> None:
    for name, service in _services(model).items():
        image = service["image"]
        tag = image.rpartition(":")[2]
        assert ":" in image and tag not in ("latest", ""), (name, image)
    collectors = {_services(model)[s]["image"] for s in ("otel-collector", "otel-collector-lb")}
    assert collectors == {f"otel/opentelemetry-collector-contrib:{COLLECTOR_VERSION}"}


# --- processor settings and ports ------------------------------------------------------------------

def _processor_config(service: dict[str, Any]) -> Any:
    env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
    return load_config({}, env, None)


@pytest.mark.parametrize("name", OWN_IMAGE_SERVICES)
def test_own_image_services_set_only_real_settings(name: str, model: dict[str, Any]) -> None:
    env = _services(model)[name].get("environment") or {}
    unknown = [k for k in env if k.startswith(ENV_PREFIX) and k[len(ENV_PREFIX):].lower() not in FIELDS]
    assert unknown == []
    _processor_config(_services(model)[name])  # every value valid (raises ConfigError naming the key)


@pytest.mark.parametrize("name", PROCESSOR_SERVICES)
def test_processors_listen_on_all_interfaces_at_ports_others_use(name: str, model: dict[str, Any]) -> None:
    services = _services(model)
    config = _processor_config(services[name])
    addresses = {key: split_address(key, getattr(config, key))
                 for key in ("otlp_grpc", "otlp_http", "metrics")}
    assert {host for host, _ in addresses.values()} == {"0.0.0.0"}
    ports = {key: port for key, (_, port) in addresses.items()}
    assert ports == {"otlp_grpc": 4317, "otlp_http": 4318, "metrics": 9464}
    assert config.migrate is False and config.auth_token == _env_example()["OTEL_CHATBOT_AUTH_TOKEN"]
    assert config.database_url == ("postgresql://otel_chatbot:" + _env_example()["POSTGRES_PASSWORD"]
                                   + "@postgres:5432/otel_chatbot")
    # The gateway posts to the processor's OTLP/HTTP port, the load-balancing tier to its gRPC port.
    gateway = services["otel-collector"]["environment"]["PROCESSOR_ENDPOINT"]
    assert gateway == f"http://processor:{ports['otlp_http']}"
    lb = yaml.safe_load((ROOT / "collector-config/loadbalancing.yaml").read_text())
    assert lb["exporters"]["loadbalancing/processors"]["resolver"]["dns"]["port"] == str(ports["otlp_grpc"])
    assert services["otel-collector-lb"]["environment"]["PROCESSOR_REPLICAS"] == "processor-replicas"
    assert services["processor-replica"]["networks"]["default"]["aliases"] == ["processor-replicas"]
    # Prometheus scrapes the metrics port of the processor and of the replicas.
    scrape = yaml.safe_load((ROOT / "prometheus/prometheus.yml").read_text())["scrape_configs"]
    job = next(j for j in scrape if j["job_name"] == "otel-chatbot")
    assert job["static_configs"][0]["targets"] == [f"processor:{ports['metrics']}"]
    assert job["dns_sd_configs"][0] == {"names": ["processor-replicas"], "type": "A",
                                        "port": ports["metrics"], "refresh_interval": "30s"}
    # The published API port maps to the processor's HTTP port; the healthcheck asks that port.
    published = services["processor"]["ports"]
    assert [(p["target"], p["published"]) for p in published] == [(ports["otlp_http"], "8318")]
    # The healthcheck is the image's (tests/test_dockerfile.py runs it against a real processor).
    from test_dockerfile import healthcheck_command
    assert services[name]["healthcheck"]["test"] == ["CMD", *healthcheck_command()]


def test_only_servers_keep_the_images_readyz_healthcheck(model: dict[str, Any]) -> None:
    """The image's HEALTHCHECK asks /readyz; a container of it that serves nothing would turn unhealthy
    and fail `docker compose up --wait`."""
    services = _services(model)
    for name in ("migrate", "demo"):
        assert services[name]["healthcheck"] == {"disable": True}, name
    for name in PROCESSOR_SERVICES:
        assert services[name]["command"] == ["serve"] and "healthcheck" in services[name], name


def test_migrate_runs_the_real_command_once(model: dict[str, Any]) -> None:
    migrate = _services(model)["migrate"]
    assert migrate["command"] == ["migrate"] and migrate["restart"] == "no"
    processor = _processor_config(_services(model)["processor"])
    assert _processor_config(migrate).database_url == processor.database_url


def test_demo_sends_through_the_collector(model: dict[str, Any]) -> None:
    demo = _services(model)["demo"]
    assert demo["command"][:3] == ["demo", "--send-to", "http://otel-collector:4318"]
    collector_ports = {p["target"] for p in _services(model)["otel-collector"]["ports"]}
    assert collector_ports == {4317, 4318}
    gateway = yaml.safe_load((ROOT / "collector-config/gateway.yaml").read_text())
    assert gateway["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "0.0.0.0:4318"


def test_services_without_auth_publish_on_loopback_only(model: dict[str, Any]) -> None:
    services = _services(model)
    for name in ("prometheus", "alertmanager"):
        assert {p.get("host_ip") for p in services[name]["ports"]} == {"127.0.0.1"}, name
    # Grafana (login), the processor API (bearer token) and the Collector's OTLP intake are for other hosts.
    for name in ("grafana", "processor", "otel-collector"):
        assert {p.get("host_ip") for p in services[name]["ports"]} == {None}, name


def test_dockerfile_exposes_the_ports_compose_uses(model: dict[str, Any]) -> None:
    exposed = re.search(r"^EXPOSE (.+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert exposed is not None
    assert {int(p) for p in exposed.group(1).split()} == {4317, 4318, 9464}


# --- start order -----------------------------------------------------------------------------------

def test_start_order_is_health_checked(model: dict[str, Any]) -> None:
    services = _services(model)
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            condition = rule["condition"]
            target = services[dependency]
            if condition == "service_healthy":
                assert target.get("healthcheck", {}).get("test"), f"{name} waits on {dependency}'s health"
            elif condition == "service_completed_successfully":
                assert target.get("restart") == "no", f"{dependency} is a one-shot job"
            else:
                # Only the Collector (no shell in its image, so no healthcheck) is waited on by start.
                assert (condition, dependency) == ("service_started", "otel-collector"), (name, dependency)
    chain = {name: set(s.get("depends_on") or {}) for name, s in services.items()}
    assert chain["migrate"] == {"postgres"}
    assert chain["processor"] == chain["processor-replica"] == {"postgres", "migrate"}
    assert chain["otel-collector"] == {"processor", "collector-queue-owner"}
    assert chain["otel-collector-lb"] == {"processor-replica", "collector-queue-owner"}
    assert {"postgres", "prometheus"} <= chain["grafana"]


# --- secrets ---------------------------------------------------------------------------------------

def _env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
             if line and not line.startswith("#"))
    return {k: v for k, v in pairs}


def test_no_secret_in_the_repository(raw: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text()
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    assert required == {"POSTGRES_PASSWORD", "OTEL_CHATBOT_AUTH_TOKEN", "OTEL_CHATBOT_READER_PASSWORD",
                        "GRAFANA_ADMIN_PASSWORD"}
    # Every secret-looking value is an interpolation, never a literal.
    secret_key = re.compile(r"(PASSWORD|TOKEN|SECRET|API_KEY|DATABASE_URL)")
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if secret_key.search(key):
                assert "${" in str(value), (name, key)
    example = _env_example()
    referenced = set(re.findall(r"\$\{([A-Z_]+)", text)) | {s["environment"] for s in raw["secrets"].values()}
    assert {v for v in referenced if not re.search(r"_PORT$", v)} <= set(example)
    assert all(value.startswith(("change-me", "https://")) and "CHANGE" in value.upper()
               for key, value in example.items())
    ignored = subprocess.run(["git", "check-ignore", "-q", str(ROOT / ".env")], cwd=ROOT, check=False)
    assert ignored.returncode == 0, ".env must be git-ignored"


def test_alertmanager_secret_files_come_from_compose_secrets(model: dict[str, Any]) -> None:
    config = (ROOT / "prometheus/alertmanager.yml").read_text()
    wanted = set(re.findall(r"_file: (/etc/alertmanager/secrets/\S+)", config))
    mounted = {s["target"] for s in _services(model)["alertmanager"]["secrets"]}
    assert wanted == mounted
    assert len(wanted) == 4


# --- Prometheus and Alertmanager as mounted --------------------------------------------------------

def _host_path(service: dict[str, Any], container_path: str) -> Path:
    """The host file behind ``container_path`` through the service's bind mounts."""
    for mount in service["volumes"]:
        if mount["type"] != "bind":
            continue
        target = mount["target"].rstrip("/")
        if container_path == target or container_path.startswith(target + "/"):
            return Path(mount["source"]) / container_path[len(target):].lstrip("/")
    raise AssertionError(f"{container_path} is not mounted")


def _flag(service: dict[str, Any], name: str) -> str:
    return next(a.split("=", 1)[1] for a in service["command"] if a.startswith(f"--{name}="))


def test_prometheus_config_as_mounted_passes_promtool(model: dict[str, Any]) -> None:
    prometheus = _services(model)["prometheus"]
    config = _host_path(prometheus, _flag(prometheus, "config.file"))
    assert config == ROOT / "prometheus/prometheus.yml"
    done = run([promtool(), "check", "config", str(config)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 4 rule files found" in done.stdout
    alertmanagers = yaml.safe_load(config.read_text())["alerting"]["alertmanagers"][0]["static_configs"][0]
    port = int(alertmanagers["targets"][0].rpartition(":")[2])
    assert {p["target"] for p in _services(model)["alertmanager"]["ports"]} == {port}


def test_alertmanager_config_as_mounted_passes_amtool(model: dict[str, Any], tmp_path: Path) -> None:
    alertmanager = _services(model)["alertmanager"]
    config = _host_path(alertmanager, _flag(alertmanager, "config.file"))
    templates = yaml.safe_load(config.read_text())["templates"]
    # Templates resolve against the config's directory inside the container: rebuild that layout.
    layout = tmp_path / "etc-alertmanager"
    layout.mkdir()
    (layout / "alertmanager.yml").write_text(config.read_text())
    (layout / "templates").symlink_to(_host_path(alertmanager, "/etc/alertmanager/templates"))
    done = run([amtool(), "check-config", str(layout / "alertmanager.yml")])
    assert done.returncode == 0, done.stdout + done.stderr
    assert templates == ["templates/*.tmpl"] and " - 1 templates" in done.stdout
