"""TLS on OTLP/HTTP, OTLP/gRPC and /metrics, with a certificate made for the test (a private CA and a
server certificate for 127.0.0.1), checked by the real OTLP exporters given the CA file."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from export_support import ExportFailed, exporting, grpc_exporter, http_exporter
from server_support import fetch, running

from otel_chatbot.processor.app import Processor
from otel_chatbot.processor.config import ConfigError, load_config

TOKEN = "tls-token-0123456789"


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
                 issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ca.pem (what clients trust), server.pem and server.key (what the processor serves)."""
    directory = tmp_path_factory.mktemp("pki")
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "otel-chatbot test CA")])
    ca = _certificate("otel-chatbot test CA", ca_key, ca_name, ca_key, ca=True)
    server = _certificate("127.0.0.1", server_key, ca_name, ca_key, ca=False)
    paths = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(server_key.private_bytes(serialization.Encoding.PEM,
                                                      serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    return paths


@pytest.fixture
def processor(database_url: str, pki: dict[str, Path]) -> Iterator[Processor]:
    with running(database_url, tls_cert_file=str(pki["cert"]), tls_key_file=str(pki["key"]),
                 auth_token=TOKEN, metrics_auth=True) as proc:
        yield proc


def _send_turn(exporter: object, turn_id: str) -> None:
    with exporting(exporter) as tracer, tracer.start_as_current_span(  # type: ignore[arg-type]
            "chat.turn", attributes={"chat.turn.id": turn_id, "session.id": "s-tls",
                                     "input.value": "hello", "output.value": "hi"}):
        pass


def test_the_real_exporters_send_over_tls(processor: Processor, pki: dict[str, Path], database_url: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # requests prefers these variables over the exporter's session-level CA file (its trust_env rule).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    (host, http_port), (_, grpc_port) = processor.http_address, processor.grpc_address
    auth = {"authorization": f"Bearer {TOKEN}"}
    _send_turn(http_exporter(f"https://{host}:{http_port}/v1/traces", certificate_file=str(pki["ca"]),
                             headers=auth), "turn-https")
    # The gRPC exporter takes the CA as channel credentials (or OTEL_EXPORTER_OTLP_CERTIFICATE).
    credentials = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
    _send_turn(grpc_exporter(f"https://{host}:{grpc_port}", credentials=credentials, headers=auth,
                             insecure=False), "turn-grpcs")
    assert sorted(fetch(database_url, "SELECT turn_id FROM chat_turns")) == [("turn-grpcs",), ("turn-https",)]

    metrics = "https://{}:{}/metrics".format(*processor.metrics_address)
    scraped = httpx.get(metrics, verify=ssl.create_default_context(cafile=str(pki["ca"])),
                        headers={"Authorization": f"Bearer {TOKEN}"})
    assert 'otel_chatbot_spans_accepted_total{transport="grpc"} 1.0' in scraped.text
    assert 'otel_chatbot_spans_accepted_total{transport="http"} 1.0' in scraped.text


def test_clients_that_do_not_trust_the_certificate_or_speak_plain_text_get_nothing(
        processor: Processor, database_url: str) -> None:
    (host, http_port), (_, grpc_port) = processor.http_address, processor.grpc_address
    auth = {"authorization": f"Bearer {TOKEN}"}
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://{host}:{http_port}/healthz")  # the system CAs do not know ours
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{host}:{http_port}/healthz")  # plain text to a TLS port
    with pytest.raises(httpx.HTTPError):
        httpx.get("http://{}:{}/metrics".format(*processor.metrics_address))
    with pytest.raises(ExportFailed):
        _send_turn(grpc_exporter(f"http://{host}:{grpc_port}", insecure=True, headers=auth, timeout=5),
                   "turn-plain")
    assert fetch(database_url, "SELECT count(*) FROM chat_turns") == [(0,)]
    # The processor is still up and serving TLS clients.
    assert httpx.get(f"https://{host}:{http_port}/healthz", verify=False).text == "ok\n"


def test_tls_settings_are_checked(pki: dict[str, Path], tmp_path: Path) -> None:
    base: dict[str, object] = {"database_url": "postgresql://x@/y"}
    with pytest.raises(ConfigError, match="tls_key_file: TLS needs both tls_cert_file and tls_key_file"):
        load_config({**base, "tls_cert_file": str(pki["cert"])}, {}, None)
    with pytest.raises(ConfigError, match="tls_cert_file: TLS needs both"):
        load_config({**base, "tls_key_file": str(pki["key"])}, {}, None)
    with pytest.raises(ConfigError, match="tls_cert_file: no such file"):
        load_config({**base, "tls_cert_file": str(tmp_path / "none.pem"), "tls_key_file": str(pki["key"])},
                    {}, None)


def test_a_key_that_does_not_match_the_certificate_stops_the_start(database_url: str, pki: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    other.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(ConfigError, match="tls_cert_file: cannot load"), running(
            database_url, tls_cert_file=str(pki["cert"]), tls_key_file=str(other)):
        pass
