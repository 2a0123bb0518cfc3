"""The connection settings as librdkafka properties (the relay's producer): each
SASL/SSL setting maps onto its property, and librdkafka itself accepts the result."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from consumers.kafka_config import KafkaSettings
from ledger.config import ConfigError
from relay.config import RelayConfig
from relay.producer import producer_config

# Nothing listens here: librdkafka only checks its properties on construction.
NOWHERE = "127.0.0.1:1"


def write_client_cert(directory: Path, password: str) -> tuple[str, str]:
    """A self-signed certificate and its key, encrypted with `password` (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ledger-relay")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "client.pem", directory / "client.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password.encode()),
        )
    )
    return str(cert_path), str(key_path)


def accepted_by_librdkafka(conf: dict[str, Any]) -> None:
    """Raises KafkaException when librdkafka refuses a property or cannot load a file."""
    Producer({**conf, "logger": _Silent()})


class _Silent:
    def log(self, *args: Any) -> None:
        pass


SECURITY_KEYS = ("sasl.", "ssl.")


def security_part(conf: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in conf.items() if k.startswith(SECURITY_KEYS)}


def test_plaintext_maps_bootstrap_protocol_client_id_and_timeouts() -> None:
    settings = KafkaSettings(
        bootstrap="k1:9093, [::1]:9094", client_id="relay-7", connect_timeout_s=2.5
    )
    conf = settings.librdkafka_config()
    assert conf == {
        "bootstrap.servers": "k1:9093,[::1]:9094",
        "security.protocol": "plaintext",
        "socket.connection.setup.timeout.ms": 2500,
        "reconnect.backoff.max.ms": 2000,
        "client.id": "relay-7",
    }
    accepted_by_librdkafka({**conf, "bootstrap.servers": NOWHERE})


def test_a_connect_timeout_below_a_second_is_librdkafkas_least() -> None:
    conf = KafkaSettings(connect_timeout_s=0.2).librdkafka_config()
    assert conf["socket.connection.setup.timeout.ms"] == 1000
    accepted_by_librdkafka({**conf, "bootstrap.servers": NOWHERE})


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_password_mechanisms(mechanism: str) -> None:
    settings = KafkaSettings(
        bootstrap=NOWHERE,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_username="relay",
        sasl_password="secret",
    )
    conf = settings.librdkafka_config()
    assert conf["security.protocol"] == "sasl_plaintext"
    assert security_part(conf) == {
        "sasl.mechanisms": mechanism,
        "sasl.username": "relay",
        "sasl.password": "secret",
    }
    accepted_by_librdkafka(conf)


def test_sasl_without_a_mechanism_is_plain_as_for_kafka_python() -> None:
    settings = KafkaSettings(
        bootstrap=NOWHERE,
        security_protocol="SASL_PLAINTEXT",
        sasl_username="relay",
        sasl_password="secret",
    )
    conf = settings.librdkafka_config()
    assert conf["sasl.mechanisms"] == "PLAIN" == settings.client_kwargs()["sasl_mechanism"]
    accepted_by_librdkafka(conf)


def test_gssapi_maps_the_kerberos_service_name() -> None:
    settings = KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="GSSAPI",
        sasl_kerberos_service_name="kafka-prod",
    )
    conf = settings.librdkafka_config()
    assert security_part(conf) == {
        "sasl.mechanisms": "GSSAPI",
        "sasl.kerberos.service.name": "kafka-prod",
    }
    # Not offered to librdkafka here: the PyPI wheel's build has no Kerberos
    # (Cyrus SASL); docs/kafka.md says so.


def test_aws_msk_iam_is_refused_for_the_relays_producer() -> None:
    settings = KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="AWS_MSK_IAM")
    assert settings.client_kwargs()["sasl_mechanism"] == "AWS_MSK_IAM"  # the kit keeps it
    with pytest.raises(ConfigError, match="AWS_MSK_IAM is not available to the relay's producer"):
        settings.librdkafka_config()
    with pytest.raises(ConfigError, match="AWS_MSK_IAM"):
        producer_config(settings, RelayConfig())


def test_ssl_maps_ca_client_certificate_key_and_its_password(tmp_path: Path) -> None:
    cert, key = write_client_cert(tmp_path, "key-secret")
    settings = KafkaSettings(
        bootstrap=NOWHERE,
        security_protocol="SSL",
        ssl_cafile=cert,
        ssl_certfile=cert,
        ssl_keyfile=key,
        ssl_password="key-secret",
    )
    conf = settings.librdkafka_config()
    assert conf["security.protocol"] == "ssl"
    assert security_part(conf) == {
        "ssl.ca.location": cert,
        "ssl.certificate.location": cert,
        "ssl.key.location": key,
        "ssl.key.password": "key-secret",
        "ssl.endpoint.identification.algorithm": "https",
    }
    # librdkafka loads the files on construction: the key opens with that password...
    accepted_by_librdkafka(conf)
    # ... and not with another.
    with pytest.raises(Exception, match=r"(?i)ssl|key"):
        accepted_by_librdkafka({**conf, "ssl.key.password": "wrong"})


def test_ssl_check_hostname_off_maps_to_no_endpoint_identification() -> None:
    conf = KafkaSettings(
        bootstrap=NOWHERE, security_protocol="SSL", ssl_check_hostname=False
    ).librdkafka_config()
    assert conf["ssl.endpoint.identification.algorithm"] == "none"
    # Still verifies the broker's certificate, as kafka-python does.
    assert "enable.ssl.certificate.verification" not in conf
    accepted_by_librdkafka(conf)


def test_ssl_without_a_ca_file_trusts_the_systems_cas() -> None:
    conf = KafkaSettings(bootstrap=NOWHERE, security_protocol="SSL").librdkafka_config()
    assert conf["ssl.ca.location"] == "probe"
    accepted_by_librdkafka(conf)


def test_sasl_ssl_maps_both(tmp_path: Path) -> None:
    cert, _ = write_client_cert(tmp_path, "unused")
    conf = KafkaSettings(
        bootstrap=NOWHERE,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="relay",
        sasl_password="secret",
        ssl_cafile=cert,
    ).librdkafka_config()
    assert conf["security.protocol"] == "sasl_ssl"
    assert security_part(conf) == {
        "sasl.mechanisms": "SCRAM-SHA-256",
        "sasl.username": "relay",
        "sasl.password": "secret",
        "ssl.ca.location": cert,
        "ssl.endpoint.identification.algorithm": "https",
    }
    accepted_by_librdkafka(conf)


def test_tls_files_are_ignored_without_tls_as_for_kafka_python(tmp_path: Path) -> None:
    cert, key = write_client_cert(tmp_path, "pw")
    settings = KafkaSettings(ssl_cafile=cert, ssl_certfile=cert, ssl_keyfile=key)
    assert security_part(settings.librdkafka_config()) == {}
    assert not any(k.startswith("ssl_") for k in settings.client_kwargs())


def test_extra_properties_go_to_the_client_they_belong_to() -> None:
    settings = KafkaSettings(
        extra=(("sasl.oauthbearer.method", "oidc"), ("metadata_max_age_ms", 1000))
    )
    conf, kwargs = settings.librdkafka_config(), settings.client_kwargs()
    assert conf["sasl.oauthbearer.method"] == "oidc" and "metadata_max_age_ms" not in conf
    assert kwargs["metadata_max_age_ms"] == 1000 and "sasl.oauthbearer.method" not in kwargs


def test_producer_keeps_order_and_murmur2_partitions() -> None:
    conf = producer_config(KafkaSettings(bootstrap=NOWHERE), RelayConfig(delivery_timeout_s=5))
    assert conf["acks"] == "all" and conf["enable.idempotence"] is True
    assert conf["max.in.flight.requests.per.connection"] == 5
    assert conf["partitioner"] == "murmur2_random"
    assert conf["allow.auto.create.topics"] is False
    assert (conf["delivery.timeout.ms"], conf["request.timeout.ms"]) == (5000, 4895)
    accepted_by_librdkafka(conf)


@pytest.mark.parametrize(
    ("compression", "expected"),
    [("lz4", "lz4"), ("gzip", "gzip"), ("snappy", "snappy"), ("zstd", "zstd"), (None, "none")],
)
def test_every_compression_option_is_librdkafkas(compression: str | None, expected: str) -> None:
    config = RelayConfig(compression=compression, batch_bytes=256 * 1024, linger_ms=20)
    conf = producer_config(KafkaSettings(bootstrap=NOWHERE), config)
    assert conf["compression.type"] == expected
    assert (conf["batch.size"], conf["linger.ms"]) == (256 * 1024, 20)
    assert conf["message.max.bytes"] == config.max_request_size
    accepted_by_librdkafka(conf)
