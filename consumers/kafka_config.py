"""Kafka connection settings shared by the relay and the subscriber kit.

`KafkaSettings` is the one table of settings: each field's metadata names its
command-line option and `LEDGER_KAFKA_*` variable, so the environment reader here
and the click options in `cli/kafka_options.py` are both generated from it and
cannot drift apart. Settings are validated before any connection is tried.
Connecting lives in `consumers/kafka_connect.py`, topic creation in
`consumers/kafka_topics.py`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ledger.config import ConfigError
from ledger.environment import KAFKA_ENV_PREFIX

DEFAULT_BOOTSTRAP = "localhost:9092"
DEFAULT_TOPIC = "ledger.events"
DEFAULT_DLQ_TOPIC = "ledger.events.dlq"
DEFAULT_CONNECT_TIMEOUT_S = 10.0

ENV_PREFIX = KAFKA_ENV_PREFIX
TOPIC_ENV = KAFKA_ENV_PREFIX + "TOPIC"

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# Mechanisms that need only what a command line can carry. OAUTHBEARER needs a token
# provider object: use the Python API (`KafkaSettings.extra`) for it.
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "AWS_MSK_IAM")
_PASSWORD_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# What librdkafka (the relay's producer) speaks of those: AWS_MSK_IAM is kafka-python's.
_LIBRDKAFKA_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI")
_LIBRDKAFKA_SSL_FILES = (
    ("ssl_certfile", "ssl.certificate.location"),
    ("ssl_keyfile", "ssl.key.location"),
    ("ssl_password", "ssl.key.password"),
)

_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+)(?::(\d+))?$")


@dataclass(frozen=True)
class Setting:
    """How one `KafkaSettings` field is given from outside: its option and variable."""

    attribute: str
    # The option's name without dashes and the variable's suffix, e.g. "connect_timeout"
    # for `--connect-timeout` and LEDGER_KAFKA_CONNECT_TIMEOUT.
    key: str
    kind: type
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    minimum: float | None = None

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.upper()

    @property
    def option(self) -> str:
        return "--" + self.key.replace("_", "-")

    def convert(self, value: Any) -> Any:
        """A given value (an option's, or a variable's text) as the field's type."""
        if value is None:
            return None
        if self.kind is bool:
            if isinstance(value, str):
                return value.strip().lower() not in ("0", "no", "false", "n")
            return bool(value)
        if self.kind is float:
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"bad {self.env} {value!r}: not a number") from None
        # Choices are case-insensitive on the way in and upper case inside.
        return str(value).upper() if self.choices else value


def _setting(
    default: Any,
    help: str = "",
    *,
    key: str | None = None,
    choices: tuple[str, ...] = (),
    metavar: str | None = None,
    minimum: float | None = None,
) -> Any:
    spec = {"key": key, "help": help, "choices": choices, "metavar": metavar, "minimum": minimum}
    return field(default=default, metadata={"setting": spec})


@dataclass(frozen=True)
class KafkaSettings:
    """Where the brokers are and how to authenticate to them, for the relay and
    subscribers alike; validated on construction (ConfigError), before any connection
    is tried."""

    bootstrap: str = _setting(
        DEFAULT_BOOTSTRAP, "Kafka bootstrap servers.", metavar="HOST:PORT[,...]"
    )
    security_protocol: str = _setting("PLAINTEXT", choices=SECURITY_PROTOCOLS)
    sasl_mechanism: str | None = _setting(
        None, "Default PLAIN when the protocol is SASL_*.", choices=SASL_MECHANISMS
    )
    sasl_username: str | None = _setting(None)
    sasl_password: str | None = _setting(
        None, "Prefer the variable: command lines are visible to other users."
    )
    sasl_kerberos_service_name: str | None = _setting(None, "GSSAPI only.")
    ssl_cafile: str | None = _setting(None, "CA bundle to verify the brokers.")
    ssl_certfile: str | None = _setting(None, "Client certificate (mutual TLS).")
    ssl_keyfile: str | None = _setting(None, "Client key (mutual TLS).")
    ssl_password: str | None = _setting(None, "Password of the client key.")
    ssl_check_hostname: bool = _setting(True)
    client_id: str | None = _setting(None, "Client name the brokers log and quota by.")
    connect_timeout_s: float = _setting(
        DEFAULT_CONNECT_TIMEOUT_S,
        "How long to wait for the brokers at start-up before giving up.",
        key="connect_timeout",
        metavar="SECONDS",
        minimum=0.1,
    )
    # Anything else, from code: kafka-python keyword arguments (e.g.
    # `sasl_oauth_token_provider`) for the admin client and the subscriber kit, and
    # librdkafka properties (dotted names, e.g. "sasl.oauthbearer.method") for the
    # relay's producer.
    extra: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        servers = [s.strip() for s in self.bootstrap.split(",")]
        if not self.bootstrap.strip() or any(not s for s in servers):
            raise ConfigError(f"bad Kafka bootstrap {self.bootstrap!r}: expected HOST:PORT[,...]")
        for server in servers:
            m = _HOST_PORT.match(server)
            if not m or (m.group(2) is not None and not 0 < int(m.group(2)) < 65536):
                raise ConfigError(
                    f"bad Kafka bootstrap {self.bootstrap!r}: {server!r} is not HOST:PORT"
                )
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"bad Kafka security protocol {self.security_protocol!r}: "
                f"expected one of {', '.join(SECURITY_PROTOCOLS)}"
            )
        sasl = self.security_protocol.startswith("SASL_")
        if self.sasl_mechanism is not None and not sasl:
            raise ConfigError(
                f"SASL mechanism {self.sasl_mechanism} needs --security-protocol SASL_SSL "
                f"or SASL_PLAINTEXT (got {self.security_protocol})"
            )
        if sasl:
            mechanism = self.sasl_mechanism or "PLAIN"
            if mechanism not in SASL_MECHANISMS:
                expected = ", ".join(SASL_MECHANISMS)
                raise ConfigError(f"bad SASL mechanism {mechanism!r}: expected one of {expected}")
            if mechanism in _PASSWORD_MECHANISMS and not (
                self.sasl_username and self.sasl_password is not None
            ):
                raise ConfigError(
                    f"SASL {mechanism} needs a username and a password "
                    "(--sasl-username and LEDGER_KAFKA_SASL_PASSWORD)"
                )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not os.path.isfile(path):
                raise ConfigError(f"Kafka {name.replace('_', ' ')} {path!r} is not a readable file")
        if self.connect_timeout_s <= 0:
            raise ConfigError("Kafka connect timeout must be positive")

    @property
    def servers(self) -> list[str]:
        return [s.strip() for s in self.bootstrap.split(",")]

    def describe(self) -> str:
        """Where and how we connect, for messages (never the password)."""
        how = self.security_protocol
        if self.security_protocol.startswith("SASL_"):
            how += f", SASL {self.sasl_mechanism or 'PLAIN'}"
            if self.sasl_username:
                how += f" as {self.sasl_username}"
        return f"{self.bootstrap} ({how})"

    def client_kwargs(self) -> dict[str, Any]:
        """Connection keyword arguments for any kafka-python client."""
        kw: dict[str, Any] = {
            "bootstrap_servers": self.servers,
            "security_protocol": self.security_protocol,
            "bootstrap_timeout_ms": int(self.connect_timeout_s * 1000),
            # A dead broker is retried quickly and often, not after a 30 s pause.
            "reconnect_backoff_max_ms": 2000,
        }
        if self.client_id:
            kw["client_id"] = self.client_id
        if self.security_protocol.startswith("SASL_"):
            kw["sasl_mechanism"] = self.sasl_mechanism or "PLAIN"
            if self.sasl_username is not None:
                kw["sasl_plain_username"] = self.sasl_username
            if self.sasl_password is not None:
                kw["sasl_plain_password"] = self.sasl_password
            if self.sasl_kerberos_service_name:
                kw["sasl_kerberos_service_name"] = self.sasl_kerberos_service_name
        if self.security_protocol in ("SSL", "SASL_SSL"):
            kw["ssl_check_hostname"] = self.ssl_check_hostname
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password"):
                value = getattr(self, name)
                if value is not None:
                    kw[name] = value
        kw.update((k, v) for k, v in self.extra if "." not in k)
        return kw

    def librdkafka_config(self) -> dict[str, Any]:
        """The same connection as librdkafka properties (the relay's confluent-kafka
        producer). `extra` entries with a dot in their name are librdkafka properties
        and go only here; the others are kafka-python's and go only to
        `client_kwargs`."""
        conf: dict[str, Any] = {
            "bootstrap.servers": ",".join(self.servers),
            "security.protocol": self.security_protocol.lower(),
            # librdkafka has no bootstrap deadline; this bounds each connection's
            # TCP, TLS and SASL set-up instead (1 s is its least).
            "socket.connection.setup.timeout.ms": max(1000, int(self.connect_timeout_s * 1000)),
            "reconnect.backoff.max.ms": 2000,
        }
        if self.client_id:
            conf["client.id"] = self.client_id
        if self.security_protocol.startswith("SASL_"):
            mechanism = self.sasl_mechanism or "PLAIN"
            if mechanism not in _LIBRDKAFKA_MECHANISMS:
                raise ConfigError(
                    f"SASL {mechanism} is not available to the relay's producer (librdkafka); "
                    "use OAUTHBEARER through librdkafka properties in KafkaSettings.extra"
                )
            conf["sasl.mechanisms"] = mechanism
            if self.sasl_username is not None:
                conf["sasl.username"] = self.sasl_username
            if self.sasl_password is not None:
                conf["sasl.password"] = self.sasl_password
            if self.sasl_kerberos_service_name:
                conf["sasl.kerberos.service.name"] = self.sasl_kerberos_service_name
        if self.security_protocol in ("SSL", "SASL_SSL"):
            # kafka-python always verifies the certificate and checks the host name
            # only when asked; librdkafka verifies by default too.
            conf["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_check_hostname else "none"
            )
            # Without a CA file kafka-python trusts the system's CAs; "probe" makes
            # librdkafka look for them where the distributions keep them.
            conf["ssl.ca.location"] = self.ssl_cafile or "probe"
            for name, prop in _LIBRDKAFKA_SSL_FILES:
                value = getattr(self, name)
                if value is not None:
                    conf[prop] = value
        conf.update((k, v) for k, v in self.extra if "." in k)
        return conf


def settings_table() -> Iterator[Setting]:
    """Every field of `KafkaSettings` that has an option and a variable, in order."""
    for f in fields(KafkaSettings):
        spec = f.metadata.get("setting")
        if spec is None:
            continue
        # Every optional setting is text; the others are typed by their default.
        kind = str if f.default is None else type(f.default)
        yield Setting(
            attribute=f.name,
            key=spec["key"] or f.name,
            kind=kind,
            default=f.default,
            help=spec["help"],
            choices=spec["choices"],
            metavar=spec["metavar"],
            minimum=spec["minimum"],
        )


SETTINGS: tuple[Setting, ...] = tuple(settings_table())
# The keyword names the settings take as options (a command's **kwargs).
OPTION_NAMES: tuple[str, ...] = tuple(s.key for s in SETTINGS)


def settings_from_options(options: Mapping[str, Any]) -> KafkaSettings:
    """Settings from values keyed by `Setting.key`; a missing or None value means the
    default (click has already applied the environment to its options)."""
    given: dict[str, Any] = {}
    for s in SETTINGS:
        value = s.convert(options.get(s.key))
        if value is not None:
            given[s.attribute] = value
    return KafkaSettings(**given)


def settings_from_env(**overrides: Any) -> KafkaSettings:
    """Settings from `LEDGER_KAFKA_*`, with explicit (non-None) values taking precedence.
    Overrides are keyed like the options (`connect_timeout`, not `connect_timeout_s`)."""
    values = {s.key: os.environ.get(s.env) or None for s in SETTINGS}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return settings_from_options(values)
