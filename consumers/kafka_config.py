"""Kafka connection settings shared by the relay and the subscriber kit.

One place turns `--bootstrap`, the SASL/SSL options and their `LEDGER_KAFKA_*`
environment variables into kafka-python keyword arguments, validates them before
any connection is tried, and checks that the brokers answer within a deadline:
kafka-python's own bootstrap either retries for a long time or, on a TLS handshake
with a plaintext listener, never returns at all.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from ledger.config import ConfigError

DEFAULT_BOOTSTRAP = "localhost:9092"
DEFAULT_TOPIC = "ledger.events"
DEFAULT_DLQ_TOPIC = "ledger.events.dlq"
DEFAULT_CONNECT_TIMEOUT_S = 10.0

ENV_PREFIX = "LEDGER_KAFKA_"
BOOTSTRAP_ENV = "LEDGER_KAFKA_BOOTSTRAP"
TOPIC_ENV = "LEDGER_KAFKA_TOPIC"

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# Mechanisms that need only what a command line can carry. OAUTHBEARER needs a token
# provider object: use the Python API (`KafkaSettings.extra`) for it.
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "AWS_MSK_IAM")
_PASSWORD_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+)(?::(\d+))?$")


class KafkaUnavailable(RuntimeError):
    """The brokers did not answer (unreachable, refused, TLS or SASL failure)."""


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str = DEFAULT_BOOTSTRAP
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    sasl_kerberos_service_name: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = None
    ssl_check_hostname: bool = True
    client_id: str | None = None
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    # Anything else kafka-python accepts (e.g. `sasl_oauth_token_provider`), from code.
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
        kw.update(self.extra)
        return kw


def settings_from_env(**overrides: Any) -> KafkaSettings:
    """Settings from `LEDGER_KAFKA_*`, with explicit (non-None) values taking precedence."""
    env = os.environ

    def pick(key: str, default: Any = None) -> Any:
        value = overrides.get(key)
        if value is not None:
            return value
        return env.get(ENV_PREFIX + key.upper(), default) or default

    check_hostname = pick("ssl_check_hostname", True)
    if isinstance(check_hostname, str):
        check_hostname = check_hostname.strip().lower() not in ("0", "no", "false", "n")
    timeout = pick("connect_timeout", DEFAULT_CONNECT_TIMEOUT_S)
    try:
        timeout_s = float(timeout)
    except ValueError:
        raise ConfigError(f"bad {ENV_PREFIX}CONNECT_TIMEOUT {timeout!r}: not a number") from None
    return KafkaSettings(
        bootstrap=pick("bootstrap", DEFAULT_BOOTSTRAP),
        security_protocol=str(pick("security_protocol", "PLAINTEXT")).upper(),
        sasl_mechanism=_upper(pick("sasl_mechanism")),
        sasl_username=pick("sasl_username"),
        sasl_password=pick("sasl_password"),
        sasl_kerberos_service_name=pick("sasl_kerberos_service_name"),
        ssl_cafile=pick("ssl_cafile"),
        ssl_certfile=pick("ssl_certfile"),
        ssl_keyfile=pick("ssl_keyfile"),
        ssl_password=pick("ssl_password"),
        ssl_check_hostname=bool(check_hostname),
        client_id=pick("client_id"),
        connect_timeout_s=timeout_s,
    )


def _upper(value: str | None) -> str | None:
    return value.upper() if value else None


# -- fail fast -------------------------------------------------------------------------

_T = TypeVar("_T")


class _LastFailure(logging.Handler):
    """Keeps kafka-python's last connection-failure message: it knows why, its
    exceptions only say "Unable to bootstrap"."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reason: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a foreign log call with bad arguments must not break ours
            return
        if "failed:" in message and "Unable to bootstrap" not in message:
            reason = message.split("failed:", 1)[1].strip()
            reason = re.sub(r"\s*\(backoff [^)]*\)$", "", reason)
            self.reason = _explain(reason)


def _explain(reason: str) -> str:
    # kafka-python's SCRAM client raises a bare KeyError on a rejected login.
    if re.fullmatch(r"'[a-z]'", reason):
        return "SASL authentication failed (the server rejected the login)"
    return reason


@contextmanager
def _capturing_kafka_failures() -> Iterator[_LastFailure]:
    """While connecting, kafka-python's log lines (one per retry) go only to us: the
    user gets one line with the reason, not the retry chatter."""
    handler = _LastFailure()
    kafka_logger = logging.getLogger("kafka")
    saved = (kafka_logger.level, kafka_logger.propagate)
    kafka_logger.addHandler(handler)
    kafka_logger.setLevel(logging.WARNING)
    kafka_logger.propagate = False
    try:
        yield handler
    finally:
        kafka_logger.removeHandler(handler)
        kafka_logger.setLevel(saved[0])
        kafka_logger.propagate = saved[1]


def connect_or_fail(
    settings: KafkaSettings,
    make: Callable[[], _T],
    what: str = "Kafka",
    cancel: threading.Event | None = None,
) -> _T:
    """Build a kafka-python client within `settings.connect_timeout_s`, or raise
    `KafkaUnavailable` with one line saying where, how and why.

    The client is built on a daemon thread: a TLS handshake against a plaintext
    listener blocks kafka-python past its own bootstrap timeout, and a stuck daemon
    thread does not keep the process from exiting."""
    result: list[_T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(make())
        except BaseException as exc:
            error.append(exc)

    with _capturing_kafka_failures() as failures:
        thread = threading.Thread(target=target, name="kafka-connect", daemon=True)
        thread.start()
        # kafka-python's own bootstrap deadline normally fires first; the slack only
        # matters when it hangs past it.
        deadline = time.monotonic() + settings.connect_timeout_s + 2.0
        while thread.is_alive() and time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                raise KafkaUnavailable(f"{what}: connection attempt cancelled")
            thread.join(0.1)
    if result:
        return result[0]
    reason = failures.reason
    if error and reason is None:
        reason = f"{type(error[0]).__name__}: {error[0]}"
    if reason is None:
        reason = "no answer (a TLS client at a plaintext listener, or packets dropped on the way)"
    if error and not _is_kafka_error(error[0]):
        raise error[0]
    raise KafkaUnavailable(
        f"{what} at {settings.describe()} not reachable within "
        f"{settings.connect_timeout_s:g}s: {reason}"
    )


def _is_kafka_error(exc: BaseException) -> bool:
    from kafka.errors import KafkaError

    return isinstance(exc, KafkaError | OSError)


# -- command-line options --------------------------------------------------------------


def kafka_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The Kafka connection options, each with its `LEDGER_KAFKA_*` variable."""
    options = [
        click.option(
            "--bootstrap",
            envvar=BOOTSTRAP_ENV,
            default=DEFAULT_BOOTSTRAP,
            show_default=True,
            metavar="HOST:PORT[,...]",
            help=f"Kafka bootstrap servers [env {BOOTSTRAP_ENV}].",
        ),
        click.option(
            "--security-protocol",
            envvar="LEDGER_KAFKA_SECURITY_PROTOCOL",
            type=click.Choice(SECURITY_PROTOCOLS, case_sensitive=False),
            default="PLAINTEXT",
            show_default=True,
            help="[env LEDGER_KAFKA_SECURITY_PROTOCOL]",
        ),
        click.option(
            "--sasl-mechanism",
            envvar="LEDGER_KAFKA_SASL_MECHANISM",
            type=click.Choice(SASL_MECHANISMS, case_sensitive=False),
            help="Default PLAIN when the protocol is SASL_* [env LEDGER_KAFKA_SASL_MECHANISM].",
        ),
        click.option(
            "--sasl-username",
            envvar="LEDGER_KAFKA_SASL_USERNAME",
            help="[env LEDGER_KAFKA_SASL_USERNAME]",
        ),
        click.option(
            "--sasl-password",
            envvar="LEDGER_KAFKA_SASL_PASSWORD",
            help="Prefer the variable: command lines are visible to other users "
            "[env LEDGER_KAFKA_SASL_PASSWORD].",
        ),
        click.option(
            "--sasl-kerberos-service-name",
            envvar="LEDGER_KAFKA_SASL_KERBEROS_SERVICE_NAME",
            help="GSSAPI only [env LEDGER_KAFKA_SASL_KERBEROS_SERVICE_NAME].",
        ),
        click.option(
            "--ssl-cafile",
            envvar="LEDGER_KAFKA_SSL_CAFILE",
            help="CA bundle to verify the brokers [env LEDGER_KAFKA_SSL_CAFILE].",
        ),
        click.option(
            "--ssl-certfile",
            envvar="LEDGER_KAFKA_SSL_CERTFILE",
            help="Client certificate (mutual TLS) [env LEDGER_KAFKA_SSL_CERTFILE].",
        ),
        click.option(
            "--ssl-keyfile",
            envvar="LEDGER_KAFKA_SSL_KEYFILE",
            help="Client key (mutual TLS) [env LEDGER_KAFKA_SSL_KEYFILE].",
        ),
        click.option(
            "--ssl-password",
            envvar="LEDGER_KAFKA_SSL_PASSWORD",
            help="Password of the client key [env LEDGER_KAFKA_SSL_PASSWORD].",
        ),
        click.option(
            "--ssl-check-hostname/--no-ssl-check-hostname",
            envvar="LEDGER_KAFKA_SSL_CHECK_HOSTNAME",
            default=True,
            show_default=True,
            help="[env LEDGER_KAFKA_SSL_CHECK_HOSTNAME]",
        ),
        click.option(
            "--connect-timeout",
            envvar="LEDGER_KAFKA_CONNECT_TIMEOUT",
            type=click.FloatRange(min=0.1),
            default=DEFAULT_CONNECT_TIMEOUT_S,
            show_default=True,
            metavar="SECONDS",
            help="How long to wait for the brokers at start-up before giving up "
            "[env LEDGER_KAFKA_CONNECT_TIMEOUT].",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


KAFKA_OPTION_NAMES = (
    "bootstrap",
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "sasl_kerberos_service_name",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "ssl_check_hostname",
    "connect_timeout",
)


def settings_from_options(options: dict[str, Any]) -> KafkaSettings:
    """Settings from the values of `kafka_options` (click already applied the env)."""
    return KafkaSettings(
        bootstrap=options["bootstrap"],
        security_protocol=str(options["security_protocol"]).upper(),
        sasl_mechanism=_upper(options.get("sasl_mechanism")),
        sasl_username=options.get("sasl_username"),
        sasl_password=options.get("sasl_password"),
        sasl_kerberos_service_name=options.get("sasl_kerberos_service_name"),
        ssl_cafile=options.get("ssl_cafile"),
        ssl_certfile=options.get("ssl_certfile"),
        ssl_keyfile=options.get("ssl_keyfile"),
        ssl_password=options.get("ssl_password"),
        ssl_check_hostname=bool(options.get("ssl_check_hostname", True)),
        connect_timeout_s=float(options.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT_S)),
    )


def pop_kafka_options(options: dict[str, Any]) -> KafkaSettings:
    """Take the Kafka options out of a command's keyword arguments."""
    taken = {name: options.pop(name) for name in KAFKA_OPTION_NAMES if name in options}
    return settings_from_options(taken)


# -- topics ----------------------------------------------------------------------------

_topic_log = logging.getLogger("ledger.kafka")


def ensure_topic(
    settings: KafkaSettings, topic: str, partitions: int, replication_factor: int = -1
) -> bool:
    """Create `topic` if missing; True when this call created it.

    Explicit creation, because a broker's auto-creation picks its own partition
    count. A principal without the right to create topics is fine as long as the
    topic exists: producing to it then says so."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import AuthorizationError, TopicAlreadyExistsError

    admin = KafkaAdminClient(
        **settings.client_kwargs(), request_timeout_ms=int(settings.connect_timeout_s * 1000)
    )
    try:
        if topic in admin.list_topics():
            _warn_partitions(admin, topic, partitions)
            return False
        try:
            admin.create_topics([NewTopic(topic, partitions, replication_factor)])
        except TopicAlreadyExistsError:
            return False
        except AuthorizationError as exc:
            _topic_log.warning("cannot create Kafka topic %s (%s); assuming it exists", topic, exc)
            return False
        _topic_log.info(
            "created Kafka topic %s with %d partition%s", topic, partitions, "s"[: partitions - 1]
        )
        return True
    finally:
        admin.close()


def _warn_partitions(admin: Any, topic: str, wanted: int) -> None:
    # Someone else made it: an operator, or a broker that auto-creates topics on any
    # client's request (Tansu does, even when asked not to) after coming back empty.
    try:
        [described] = admin.describe_topics([topic])
        count = len(described["partitions"])
    except Exception:  # describing is only for this warning; never fail over it
        return
    if count != wanted:
        _topic_log.info(
            "Kafka topic %s exists with %d partitions (%d applies only when creating it)",
            topic,
            count,
            wanted,
        )
